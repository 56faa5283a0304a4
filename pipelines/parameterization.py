"""Flow matching <-> TrigFlow <-> x0 / eps / v conversions, shared by the pipelines and by distillation.

Conventions (notes/sana_sprint.md sec. 2.2-3; TrigFlow from sCM, Lu & Song 2024):
- Flow matching (rectified flow) on unit-scale latents: x_s = (1 - s) x0 + s eps, eps ~ N(0, I), s in [0, 1],
  velocity v = eps - x0.
- TrigFlow: x_t = cos t x0 + sin t z, z ~ N(0, sigma_d^2 I), t in [0, pi/2], x0 = sigma_d * (unit-scale latent).
  The network sees x_t / sigma_d and returns F; the PF-ODE is dx_t/dt = sigma_d F.
Time arguments are Python floats or tensors of shape (b,), broadcast over the trailing dimensions of x.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

SIGMA_D = 0.5  # TrigFlow data standard deviation (sCM; SANA-Sprint)
HALF_PI = math.pi / 2  # TrigFlow's pure-noise time


def append_dims(t: Tensor | float, x: Tensor) -> Tensor:
    """Shape (b,) or scalar time -> a (b, 1, ..., 1) tensor with x's rank, dtype and device (k-diffusion name)."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return t.reshape(t.shape + (1,) * (x.dim() - t.dim()))


def flow_time_from_trigflow(t: Tensor) -> Tensor:
    """s = sin t / (sin t + cos t) (SANA-Sprint, training-free transform)."""
    return torch.sin(t) / (torch.sin(t) + torch.cos(t))


def trigflow_time_from_flow(s: Tensor) -> Tensor:
    """Inverse of `flow_time_from_trigflow`: t = atan2(s, 1 - s)."""
    return torch.atan2(s, 1 - s)


def flow_input_from_trigflow(x: Tensor, t: Tensor | float) -> Tensor:
    """x_s = (x_t / sigma_d) / (cos t + sin t) = (x_t / sigma_d) sqrt(s^2 + (1 - s)^2); x is x_t / sigma_d."""
    t = append_dims(t, x)
    return x / (torch.cos(t) + torch.sin(t))


def trigflow_input_from_flow(x_s: Tensor, s: Tensor | float) -> Tensor:
    """Inverse of `flow_input_from_trigflow`: returns x_t / sigma_d."""
    s = append_dims(s, x_s)
    return x_s / torch.sqrt(s**2 + (1 - s) ** 2)


def trigflow_from_flow_velocity(x_s: Tensor, v: Tensor, s: Tensor | float) -> Tensor:
    """F = [(1 - 2s) x_s + (1 - 2s + 2s^2) v] / sqrt(s^2 + (1 - s)^2) (SanaMSCM / SanaTrigFlow)."""
    s = append_dims(s, x_s)
    return ((1 - 2 * s) * x_s + (1 - 2 * s + 2 * s**2) * v) / torch.sqrt(s**2 + (1 - s) ** 2)


def flow_velocity_from_trigflow(x_s: Tensor, F: Tensor, s: Tensor | float) -> Tensor:
    """Inverse of `trigflow_from_flow_velocity`: v from F at the same (x_s, s)."""
    s = append_dims(s, x_s)
    return (F * torch.sqrt(s**2 + (1 - s) ** 2) - (1 - 2 * s) * x_s) / (1 - 2 * s + 2 * s**2)


def x0_from_flow(x_s: Tensor, v: Tensor, s: Tensor | float) -> Tensor:
    """x0 = x_s - s v."""
    return x_s - append_dims(s, x_s) * v


def eps_from_flow(x_s: Tensor, v: Tensor, s: Tensor | float) -> Tensor:
    """eps = x_s + (1 - s) v."""
    return x_s + (1 - append_dims(s, x_s)) * v


def trigflow_denoise(x_t: Tensor, F: Tensor, t: Tensor | float, sigma_d: float = SIGMA_D) -> Tensor:
    """Consistency function = denoiser, f(x_t, t) = cos t x_t - sin t sigma_d F (sCM's TrigFlow CM); f(x, 0) = x."""
    t = append_dims(t, x_t)
    return torch.cos(t) * x_t - torch.sin(t) * sigma_d * F


def trigflow_noise(x_t: Tensor, F: Tensor, t: Tensor | float, sigma_d: float = SIGMA_D) -> Tensor:
    """The noise z implied by F: z = sin t x_t + cos t sigma_d F."""
    t = append_dims(t, x_t)
    return torch.sin(t) * x_t + torch.cos(t) * sigma_d * F


def trigflow_target(x0: Tensor, z: Tensor, t: Tensor | float, sigma_d: float = SIGMA_D) -> Tensor:
    """The TrigFlow regression target F* = (cos t z - sin t x0) / sigma_d, i.e. (dx_t/dt) / sigma_d."""
    t = append_dims(t, x0)
    return (torch.cos(t) * z - torch.sin(t) * x0) / sigma_d


def trigflow_step(
    x_t: Tensor, F: Tensor, t: Tensor | float, t_next: Tensor | float, sigma_d: float = SIGMA_D
) -> Tensor:
    """DDIM step t -> t_next: cos(t - t') x_t - sin(t - t') sigma_d F (= an Euler step of the flow ODE in s)."""
    dt = append_dims(t, x_t) - append_dims(t_next, x_t)
    return torch.cos(dt) * x_t - torch.sin(dt) * sigma_d * F


def lcm_boundary_scalings(
    timestep: Tensor, sigma_d: float = SIGMA_D, timestep_scaling: float = 10.0
) -> tuple[Tensor, Tensor]:
    """LCM boundary scalings for a timestep n on the 0-1000 training clock, as (c_skip, c_out).

    c_skip = sigma_d^2 / ((10 n)^2 + sigma_d^2), c_out = 10 n / sqrt((10 n)^2 + sigma_d^2), so that
    f = c_skip x + c_out x_hat0 meets f(x, 0) = x (diffusers `scalings_for_boundary_conditions`).
    """
    scaled = timestep_scaling * timestep
    return sigma_d**2 / (scaled**2 + sigma_d**2), scaled / torch.sqrt(scaled**2 + sigma_d**2)


class FlowAsTrigFlow(nn.Module):
    """F(x_t / sigma_d, t, cond) from a flow velocity model v(x_s, s, cond), without retraining (SanaMSCM).

    A negative t (TwinFlow's twin branch) is passed to the flow model as -s, so the sign reaches its time embedding.
    """

    def __init__(self, flow_model: nn.Module):
        super().__init__()
        self.flow_model = flow_model

    def forward(self, x: Tensor, t: Tensor, cond=None) -> Tensor:
        t_abs = t.abs()
        s = flow_time_from_trigflow(t_abs)
        x_s = flow_input_from_trigflow(x, t_abs)
        v = self.flow_model(x_s, torch.sign(t) * s, cond)
        return trigflow_from_flow_velocity(x_s, v, s)
