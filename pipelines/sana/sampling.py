"""Sampling: the Sprint TrigFlow times, the SCM sampler in 1-4 steps, and classifier-free guidance on a flow."""

# b batch, c latent channels (32), h w pixel height width, hl wl latent height width (h // 32), n text tokens (300),
# d transformer width, s flow time in [0, 1], t TrigFlow time in [0, pi/2], N sampling steps

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from pipelines.parameterization import SIGMA_D, append_dims, trigflow_denoise
from pipelines.sana.config import T_INTERMEDIATE, T_MAX
from pipelines.sana.flow import SanaFlow
from pipelines.schedules import get_trigflow_timesteps


def sprint_timesteps(steps: int, *, t_max: float = T_MAX, intermediate: float = T_INTERMEDIATE) -> Tensor:
    """SCMScheduler's evaluation times in float32: [t_max], [t_max, 1.3], else linspace(t_max, 0, N + 1)[:-1]."""
    return get_trigflow_timesteps(steps, t_max=t_max, intermediate=intermediate).float()


def sample_scm(
    model: Callable[[Tensor, Tensor], Tensor], noise: Tensor, ts: Tensor, sigma_d: float = SIGMA_D
) -> Tensor:
    """sCM consistency sampling (Lu & Song 2024, Alg. 1; diffusers SCMScheduler) with the noise drawn up front.

    noise: (N, b, c, hl, wl) unit normals: x_T = sigma_d eps_0, and before step i > 0
    x_t = cos t_i x_hat0 + sin t_i sigma_d eps_i. Each step x_hat0 = cos t x_t - sin t sigma_d F(x_t / sigma_d, t)
    (sCM eq. 9). ts: (N,) TrigFlow times on the device. Returns x_hat0 on the TrigFlow scale (sigma_d x the unit
    latent). The same draws give schedules.sample_trigflow's result; here no RNG and no host value is touched, so the
    loop can be captured in a CUDA graph."""
    x = sigma_d * noise[0]
    x0 = x
    for i in range(ts.shape[0]):
        t = ts[i].expand(x.shape[0])
        if i > 0:
            tt = append_dims(t, x)
            x = torch.cos(tt) * x0 + torch.sin(tt) * sigma_d * noise[i]
        x0 = trigflow_denoise(x, model(x / sigma_d, t), t, sigma_d)
    return x0


def cfg_flow(
    flow: SanaFlow, cond: dict[str, Tensor], uncond_text: Tensor, uncond_bias: Tensor, guidance: float
) -> Callable[[Tensor, Tensor], Tensor]:
    """v = v_u + w (v_c - v_u) from one batch of two (classifier-free guidance, as SanaControlNetPipeline)."""
    pair = {
        **cond,
        "text": torch.cat([uncond_text, cond["text"]]),
        "text_bias": torch.cat([uncond_bias, cond["text_bias"]]),
    }
    if "control" in cond:
        pair["control"] = torch.cat([cond["control"]] * 2)

    def v(x: Tensor, s: Tensor) -> Tensor:
        v_u, v_c = flow(torch.cat([x, x]), torch.cat([s, s]), pair).chunk(2)
        return v_u + guidance * (v_c - v_u)

    return v
