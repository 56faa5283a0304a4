"""Timestep grids, log-normal-tan sampling and the sample_* samplers."""

import math

import torch

from pipelines.parameterization import HALF_PI, SIGMA_D, trigflow_denoise
from pipelines.schedules import (
    get_flow_timesteps,
    get_lcm_timesteps,
    get_lognormal_tan_timesteps,
    get_trigflow_timesteps,
    sample_euler,
    sample_lcm,
    sample_trigflow,
)

MU = torch.tensor([1.5, -0.5], dtype=torch.float64)  # a point-mass data distribution in unit (flow) scale


def point_mass_velocity(x_s, s):
    """Exact flow velocity for data = delta(MU): v = (x_s - MU) / s."""
    return (x_s - MU) / s[:, None]


def point_mass_F(x, t):
    """Exact TrigFlow F for the same data: F = (cos t z - sin t x0) / sigma_d with z = (x_t - cos t x0) / sin t."""
    x_t, x0 = x * SIGMA_D, SIGMA_D * MU
    c, s = torch.cos(t)[:, None], torch.sin(t)[:, None]
    return (c * (x_t - c * x0) / s - s * x0) / SIGMA_D


def test_grids():
    torch.testing.assert_close(get_flow_timesteps(4), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64))
    shifted = get_flow_timesteps(8, shift=3.0)
    assert shifted[0] == 1 and shifted[-1] == 0 and torch.all(shifted[1:] < shifted[:-1])
    assert torch.all(shifted[1:-1] > get_flow_timesteps(8)[1:-1])
    assert get_trigflow_timesteps(1).tolist() == [HALF_PI]
    assert get_trigflow_timesteps(2).tolist() == [HALF_PI, 1.3]
    torch.testing.assert_close(
        get_trigflow_timesteps(4), torch.tensor([4, 3, 2, 1], dtype=torch.float64) * HALF_PI / 4
    )
    assert get_lcm_timesteps(1).tolist() == [1.0]
    assert get_lcm_timesteps(2).tolist() == [1.0, 0.5]
    assert len(get_lcm_timesteps(4)) == 4


def test_lognormal_tan_timesteps_median():
    g = torch.Generator().manual_seed(0)
    t = get_lognormal_tan_timesteps(200_000, p_mean=0.2, p_std=1.6, generator=g, dtype=torch.float64)
    assert torch.all((t > 0) & (t < HALF_PI))
    sigma = SIGMA_D * torch.tan(t)
    assert abs(math.log(sigma.median().item()) - 0.2) < 0.02
    assert abs(torch.log(sigma).std().item() - 1.6) < 0.02


def test_one_step_trigflow_sampler_is_the_denoiser_call():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2).double()

    def model(x, t):
        return net(torch.cat([x, t[:, None]], dim=1))

    x = SIGMA_D * torch.randn(5, 2, dtype=torch.float64)
    t = torch.full((5,), HALF_PI, dtype=torch.float64)
    direct = trigflow_denoise(x, model(x / SIGMA_D, t), t)
    torch.testing.assert_close(sample_trigflow(model, x, get_trigflow_timesteps(1)), direct, rtol=0, atol=0)


def test_one_step_lcm_sampler_is_the_model_call():
    x = torch.randn(5, 2, dtype=torch.float64)

    def model(x, s):
        return 3 * x + s[:, None]

    torch.testing.assert_close(sample_lcm(model, x, get_lcm_timesteps(1)), model(x, torch.ones(5, dtype=x.dtype)))


def test_exact_models_reach_a_point_mass_in_one_step():
    x1 = torch.randn(6, 2, dtype=torch.float64)
    torch.testing.assert_close(sample_euler(point_mass_velocity, x1, get_flow_timesteps(1)), MU.expand(6, 2))
    x_T = SIGMA_D * x1
    out = sample_trigflow(point_mass_F, x_T, torch.tensor([1.2], dtype=torch.float64))
    torch.testing.assert_close(out, SIGMA_D * MU.expand(6, 2))


def test_multistep_samplers_are_seeded_and_batch_independent():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()

    def model(x, t):
        return net(torch.cat([x, t[:, None]], dim=1))

    x = torch.randn(4, 2, dtype=torch.float64)
    for sampler, ts in ((sample_trigflow, get_trigflow_timesteps(2)), (sample_lcm, get_lcm_timesteps(4))):
        a = sampler(model, x, ts, generator=torch.Generator().manual_seed(3))
        b = sampler(model, x, ts, generator=torch.Generator().manual_seed(3))
        c = sampler(model, x, ts, generator=torch.Generator().manual_seed(4))
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert not torch.allclose(a, c)
    euler = sample_euler(model, x, get_flow_timesteps(8))
    single = torch.cat([sample_euler(model, x[i : i + 1], get_flow_timesteps(8)) for i in range(4)])
    torch.testing.assert_close(euler, single, rtol=0, atol=1e-12)
