"""Forward-mode tangents == central finite differences (float64), through an MLP and a tiny diffusers Sana model."""

import pytest
import torch
from diffusers import SanaTransformer2DModel

from distillation.jvp import jvp
from pipelines.parameterization import SIGMA_D, FlowAsTrigFlow
from pipelines.sana.flow import SanaFlow


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def central_difference(fn, primals, tangents, h=1e-6):
    plus = fn(*(p + h * v for p, v in zip(primals, tangents, strict=True)))
    minus = fn(*(p - h * v for p, v in zip(primals, tangents, strict=True)))
    return (plus - minus) / (2 * h)


def tiny_sana():
    """The engine's Sana flow (dense time, embedded guidance) over a Sana transformer with 8-channel heads and 8-wide
    captions, in float64. Not pipelines.sana.config's "tiny": there central differences stay ~1e-3 off at every h
    (diffusers' float32 attention and ReLU kernels), while the JVP matches double-backward to 1e-9."""
    torch.manual_seed(0)
    transformer = SanaTransformer2DModel(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=2,
        num_cross_attention_heads=2,
        cross_attention_head_dim=8,
        cross_attention_dim=16,
        caption_channels=8,
        sample_size=8,
        patch_size=1,
        qk_norm="rms_norm_across_heads",
        guidance_embeds=True,
        interpolation_scale=None,
    )
    return SanaFlow(transformer, None, dense_time=True).double()


def test_jvp_matches_finite_difference_through_an_mlp():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.SiLU(), torch.nn.Linear(32, 2)).double()
    wrapped = FlowAsTrigFlow(_Cat(net))
    x, t = torch.randn(5, 2, dtype=torch.float64), torch.rand(5, dtype=torch.float64) + 0.2
    tangents = (torch.randn_like(x), torch.cos(t) * torch.sin(t))
    fn = lambda x, t: wrapped(x, t)  # noqa: E731
    with torch.no_grad():
        value, forward = jvp(fn, (x, t), tangents)
        reference = central_difference(fn, (x, t), tangents)
        _, fd = jvp(fn, (x, t), tangents, mode="fd", fd_step=1e-5)
    torch.testing.assert_close(value, fn(x, t), rtol=0, atol=0)
    assert rel_err(forward, reference) < 1e-4
    assert rel_err(fd, forward) < 1e-4


class _Cat(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x_s, s, cond=None):
        return self.net(torch.cat([x_s, s[:, None]], dim=1))


def test_jvp_matches_finite_difference_through_tiny_sana():
    """Stock SDPA has no forward AD on CPU (flash kernel); `jvp` routes attention to the math kernel.

    diffusers computes Sana's linear attention and timestep sinusoids in float32 even for a float64 model, so the
    central difference uses h = 1e-3 (float32 round-off ~1e-7 / h) per tangent direction, and the combined tangent
    is checked by linearity."""
    model = FlowAsTrigFlow(tiny_sana())
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 8, 8, generator=g, dtype=torch.float64) / SIGMA_D
    t = torch.tensor([0.4, 1.2], dtype=torch.float64)
    cond = {"text": torch.randn(2, 5, 8, generator=g, dtype=torch.float64)}
    along_x = (torch.randn(x.shape, generator=g, dtype=torch.float64), torch.zeros_like(t))
    along_t = (torch.zeros_like(x), torch.cos(t) * torch.sin(t))
    fn = lambda x, t: model(x, t, cond)  # noqa: E731
    with torch.no_grad():
        for tangents in (along_x, along_t):
            _, forward = jvp(fn, (x, t), tangents)
            assert rel_err(forward, central_difference(fn, (x, t), tangents, h=1e-3)) < 1e-4
        _, both = jvp(fn, (x, t), (along_x[0], along_t[1]))
        _, jx = jvp(fn, (x, t), along_x)
        _, jt = jvp(fn, (x, t), along_t)
    torch.testing.assert_close(both, jx + jt, rtol=1e-5, atol=1e-6)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown JVP mode"):
        jvp(lambda x: x, (torch.zeros(1),), (torch.ones(1),), mode="reverse")
