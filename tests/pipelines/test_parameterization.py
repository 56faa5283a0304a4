"""Flow matching <-> TrigFlow identities (float64) and the consistency boundary condition."""

import math

import pytest
import torch

from pipelines.parameterization import (
    HALF_PI,
    SIGMA_D,
    FlowAsTrigFlow,
    eps_from_flow,
    flow_input_from_trigflow,
    flow_time_from_trigflow,
    flow_velocity_from_trigflow,
    lcm_boundary_scalings,
    trigflow_denoise,
    trigflow_from_flow_velocity,
    trigflow_input_from_flow,
    trigflow_noise,
    trigflow_step,
    trigflow_target,
    trigflow_time_from_flow,
    x0_from_flow,
)

B = 7


@pytest.fixture
def pair():
    """Unit-scale data x0 and noise eps, and TrigFlow times strictly inside (0, pi/2)."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(B, 3, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(B, 3, 4, 4, generator=g, dtype=torch.float64)
    t = torch.rand(B, generator=g, dtype=torch.float64) * (HALF_PI - 0.02) + 0.01
    return x0, eps, t


def _col(t, x):
    return t.reshape(-1, *([1] * (x.dim() - 1)))


def test_time_round_trip(pair):
    _, _, t = pair
    s = flow_time_from_trigflow(t)
    assert torch.all((s > 0) & (s < 1))
    torch.testing.assert_close(trigflow_time_from_flow(s), t, rtol=0, atol=1e-14)
    assert flow_time_from_trigflow(torch.tensor(0.0)).item() == 0.0
    assert flow_time_from_trigflow(torch.tensor(HALF_PI, dtype=torch.float64)).item() == pytest.approx(1.0, abs=1e-15)


def test_flow_and_trigflow_describe_the_same_point(pair):
    """x_t / sigma_d = (sin t + cos t) x_s and F = cos t eps - sin t x0 when v = eps - x0 (sana_sprint.md sec. 2.2)."""
    x0, eps, t = pair
    s = flow_time_from_trigflow(t)
    x_s = (1 - _col(s, x0)) * x0 + _col(s, x0) * eps
    x_t = torch.cos(_col(t, x0)) * SIGMA_D * x0 + torch.sin(_col(t, x0)) * SIGMA_D * eps
    torch.testing.assert_close(flow_input_from_trigflow(x_t / SIGMA_D, t), x_s, rtol=0, atol=1e-12)
    torch.testing.assert_close(trigflow_input_from_flow(x_s, s), x_t / SIGMA_D, rtol=0, atol=1e-12)
    F = trigflow_from_flow_velocity(x_s, eps - x0, s)
    torch.testing.assert_close(F, torch.cos(_col(t, x0)) * eps - torch.sin(_col(t, x0)) * x0, rtol=0, atol=1e-12)
    torch.testing.assert_close(F, trigflow_target(SIGMA_D * x0, SIGMA_D * eps, t), rtol=0, atol=1e-12)


def test_velocity_round_trip(pair):
    x0, eps, t = pair
    s = flow_time_from_trigflow(t)
    v = torch.randn_like(x0)
    F = trigflow_from_flow_velocity(x0, v, s)
    torch.testing.assert_close(flow_velocity_from_trigflow(x0, F, s), v, rtol=0, atol=1e-12)


def test_denoise_and_noise_invert_the_forward_process(pair):
    x0, eps, t = pair
    x0, z = SIGMA_D * x0, SIGMA_D * eps
    x_t = torch.cos(_col(t, x0)) * x0 + torch.sin(_col(t, x0)) * z
    F = trigflow_target(x0, z, t)
    torch.testing.assert_close(trigflow_denoise(x_t, F, t), x0, rtol=0, atol=1e-12)
    torch.testing.assert_close(trigflow_noise(x_t, F, t), z, rtol=0, atol=1e-12)


def test_flow_x0_eps_from_velocity(pair):
    x0, eps, t = pair
    s = flow_time_from_trigflow(t)
    x_s = (1 - _col(s, x0)) * x0 + _col(s, x0) * eps
    torch.testing.assert_close(x0_from_flow(x_s, eps - x0, s), x0, rtol=0, atol=1e-12)
    torch.testing.assert_close(eps_from_flow(x_s, eps - x0, s), eps, rtol=0, atol=1e-12)


def test_trigflow_ddim_step_is_the_flow_euler_step(pair):
    x0, _, t = pair
    F = torch.randn_like(x0)
    t_next = t * 0.4
    x_next = trigflow_step(x0, F, t, t_next)
    s, s_next = flow_time_from_trigflow(t), flow_time_from_trigflow(t_next)
    x_s = flow_input_from_trigflow(x0 / SIGMA_D, t)
    v = flow_velocity_from_trigflow(x_s, F, s)
    euler = x_s + _col(s_next - s, x0) * v
    torch.testing.assert_close(flow_input_from_trigflow(x_next / SIGMA_D, t_next), euler, rtol=0, atol=1e-12)


def test_consistency_function_is_identity_at_t0():
    """f(x, 0) = x for any network output, directly and through the flow -> TrigFlow wrapper."""
    torch.manual_seed(0)
    x = torch.randn(B, 2, dtype=torch.float64)
    zero = torch.zeros(B, dtype=torch.float64)
    torch.testing.assert_close(trigflow_denoise(x, torch.randn_like(x) * 100, zero), x, rtol=0, atol=0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.SiLU(), torch.nn.Linear(16, 2)).double()
    wrapped = FlowAsTrigFlow(_Velocity(net))
    F = wrapped(x / SIGMA_D, zero)
    torch.testing.assert_close(trigflow_denoise(x, F, zero), x, rtol=0, atol=0)


class _Velocity(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x_s, s, cond=None):
        return self.net(torch.cat([x_s, s[:, None]], dim=1))


def test_wrapper_passes_the_sign_of_t_to_the_flow_model():
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x_s, s, cond=None):
            seen.append(s)
            return torch.zeros_like(x_s)

    t = torch.tensor([0.3, 0.3], dtype=torch.float64)
    wrapped = FlowAsTrigFlow(Spy())
    F_pos = wrapped(torch.ones(2, 2, dtype=torch.float64), t)
    F_neg = wrapped(torch.ones(2, 2, dtype=torch.float64), -t)
    torch.testing.assert_close(seen[1], -seen[0])
    torch.testing.assert_close(F_pos, F_neg)


def test_lcm_boundary_scalings():
    c_skip, c_out = lcm_boundary_scalings(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert c_skip[0].item() == 1.0 and c_out[0].item() == 0.0
    assert c_skip[1].item() == pytest.approx(0.25 / 100.25) and c_out[1].item() == pytest.approx(
        10 / math.sqrt(100.25)
    )
