"""Timesteps (flow matching, TrigFlow, LCM, log-normal-tan) and samplers `sample_*(model, x, ts, *, generator)`.

Every sampler has the k-diffusion signature. `ts` holds the times at which the model is evaluated, in the model's
own clock: the Euler flow sampler also needs the end point (ts = [1, ..., 0], n + 1 entries for n steps); the
consistency samplers (TrigFlow, LCM) return the last denoised estimate, so n steps are n entries and a one-step
sampler is the one-element schedule [pi/2] (TrigFlow) or [1] (LCM).
The model is a callable of (x, t_batch) with the condition already bound; t_batch has shape (b,).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from pipelines.parameterization import HALF_PI, SIGMA_D, trigflow_denoise

Model = Callable[[Tensor, Tensor], Tensor]


def get_flow_timesteps(num_steps: int, *, shift: float = 1.0) -> Tensor:
    """Flow-matching times 1 -> 0 (n + 1 entries), optionally shifted: s' = shift s / (1 + (shift - 1) s) (SD3)."""
    s = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)
    return shift * s / (1 + (shift - 1) * s)


def get_trigflow_timesteps(num_steps: int, *, t_max: float = HALF_PI, intermediate: float = 1.3) -> Tensor:
    """Consistency evaluation times: [t_max], [t_max, 1.3] (diffusers SCMScheduler 2-step default), else linspace."""
    if num_steps == 2:
        return torch.tensor([t_max, intermediate], dtype=torch.float64)
    return torch.linspace(t_max, 0.0, num_steps + 1, dtype=torch.float64)[:-1]


def get_lcm_timesteps(num_steps: int, *, num_ddim_timesteps: int = 50) -> Tensor:
    """LCM times in flow units: every (N // n)-th point of the N-point skipping-step grid, from s = 1 downwards."""
    grid = torch.arange(num_ddim_timesteps, 0, -1, dtype=torch.float64) / num_ddim_timesteps
    return grid[:: num_ddim_timesteps // num_steps][:num_steps]


def get_lognormal_tan_timesteps(
    batch_size: int,
    *,
    p_mean: float,
    p_std: float,
    sigma_d: float = SIGMA_D,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """t = arctan(e^tau / sigma_d), tau ~ N(p_mean, p_std^2): log-normal in sigma_d tan t (sCM's proposal)."""
    tau = p_mean + p_std * torch.randn(batch_size, generator=generator, device=device, dtype=dtype)
    return torch.atan(torch.exp(tau) / sigma_d)


def _noise_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _batch_time(t: Tensor, x: Tensor) -> Tensor:
    return torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device)


@torch.no_grad()
def sample_euler(model: Model, x: Tensor, ts: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """Euler on the flow ODE dx_s/ds = v(x_s, s); x is x_1 ~ N(0, I), returns x at ts[-1]. Deterministic."""
    for s, s_next in zip(ts[:-1], ts[1:], strict=True):
        x = x + (s_next - s).item() * model(x, _batch_time(s, x))
    return x


@torch.no_grad()
def sample_trigflow(
    model: Model, x: Tensor, ts: Tensor, *, generator: torch.Generator | None = None, sigma_d: float = SIGMA_D
) -> Tensor:
    """TrigFlow consistency sampling (diffusers SCMScheduler); x is x_T = sigma_d eps, returns x_hat0.

    x_hat0 = cos t x_t - sin t sigma_d F(x_t / sigma_d, t), then x_t' = cos t' x_hat0 + sin t' sigma_d eps.
    """
    for i, t in enumerate(ts):
        t_batch = _batch_time(t, x)
        x0 = trigflow_denoise(x, model(x / sigma_d, t_batch), t_batch, sigma_d)
        if i + 1 < len(ts):
            t_next = ts[i + 1].item()
            x = math.cos(t_next) * x0 + math.sin(t_next) * sigma_d * _noise_like(x, generator)
    return x0


@torch.no_grad()
def sample_lcm(model: Model, x: Tensor, ts: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """LCM multistep sampling in flow units: x_hat0 = f(x_s, s), then x_s' = (1 - s') x_hat0 + s' eps. x is x_1."""
    for i, s in enumerate(ts):
        x0 = model(x, _batch_time(s, x))
        if i + 1 < len(ts):
            s_next = ts[i + 1].item()
            x = (1 - s_next) * x0 + s_next * _noise_like(x, generator)
    return x0
