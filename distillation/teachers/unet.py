"""The "unet" teacher family: an SD 1.5 / 2.1-style DDPM UNet (+ ControlNet), epsilon or v prediction, read as a
TrigFlow model without retraining (VP with alpha = cos t, sigma = sin t is TrigFlow on unit-scale data)."""

# b batch, c channels, h w latent height width, n caption tokens, d caption width

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from distillation.teachers.base import Teacher, TeacherError, from_pretrained
from pipelines.parameterization import append_dims

UNET_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


class VPAsTrigFlow(nn.Module):
    """F(x_t / sigma_d, t, cond) from a DDPM-trained UNet (epsilon or v prediction) without retraining.

    x_t / sigma_d = cos t x0 + sin t eps on unit-scale latents is the VP path with alpha = cos t, sigma = sin t, so
    F = cos t eps - sin t x0 = v (v prediction), or (eps - sin t x) / cos t from epsilon. The discrete timestep is
    the one with the same log-SNR, log cot^2 t, interpolated on the training schedule; times beyond the schedule's
    last step are clamped to it (cos t >= sqrt(alphas_cumprod[-1])), the same pure-noise stand-in SD-Turbo uses.
    cond: "text" (b, n, d) encoder states, "control" (b, 3, 8h, 8w) ControlNet image in [0, 1] (with a ControlNet).
    t in [0, pi/2] (no TwinFlow sign branch: a DDPM UNet has no negative time).
    """

    def __init__(
        self,
        unet: nn.Module,
        alphas_cumprod: Tensor,
        prediction_type: str,
        controlnet: nn.Module | None = None,
        *,
        conditioning_scale: float = 1.0,
    ):
        super().__init__()
        if prediction_type not in ("epsilon", "v_prediction"):
            raise TeacherError(f"teacher: UNet prediction_type {prediction_type!r} is not epsilon or v_prediction")
        self.unet, self.controlnet = unet, controlnet
        self.prediction_type = prediction_type
        self.conditioning_scale = conditioning_scale
        log_snr = torch.log(alphas_cumprod.double() / (1 - alphas_cumprod.double()))
        self.register_buffer("log_snr_ascending", log_snr.flip(0).contiguous(), persistent=False)  # falls with n
        self.t_max = math.atan(math.exp(-0.5 * log_snr[-1].item()))  # TrigFlow time of the schedule's last step

    def timestep(self, t: Tensor) -> Tensor:
        """Continuous DDPM timestep n with log-SNR_n = log cot^2 t, clamped to the schedule's range."""
        ascending = self.log_snr_ascending
        log_snr = (2 * torch.log(torch.cos(t.double()) / torch.sin(t.double()).clamp_min(1e-12))).clamp(
            ascending[0], ascending[-1]
        )
        hi = torch.searchsorted(ascending, log_snr).clamp(1, len(ascending) - 1)
        frac = (log_snr - ascending[hi - 1]) / (ascending[hi] - ascending[hi - 1])
        return (len(ascending) - 1 - (hi - 1 + frac)).to(t.dtype)

    def forward(self, x: Tensor, t: Tensor, cond: Mapping[str, Tensor]) -> Tensor:
        t_c = t.clamp(max=self.t_max)
        cos_c, sin_c = torch.cos(append_dims(t_c, x)), torch.sin(append_dims(t_c, x))
        dtype = self.unet.dtype
        timestep = self.timestep(t_c)
        text = cond["text"].to(dtype)
        kwargs: dict[str, Any] = {}
        if self.controlnet is not None:
            down, mid = self.controlnet(
                x.to(dtype),
                timestep,
                encoder_hidden_states=text,
                controlnet_cond=cond["control"].to(dtype),
                conditioning_scale=self.conditioning_scale,
                return_dict=False,
            )
            kwargs = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        out = self.unet(x.to(dtype), timestep, encoder_hidden_states=text, return_dict=False, **kwargs)[0].to(x.dtype)
        # (x0, eps) estimates read at t_c, then F = cos t eps - sin t x0 at the asked t (= v when t = t_c)
        if self.prediction_type == "v_prediction":
            x0, eps = cos_c * x - sin_c * out, sin_c * x + cos_c * out
        else:
            x0, eps = (x - sin_c * out) / cos_c, out
        return torch.cos(append_dims(t, x)) * eps - torch.sin(append_dims(t, x)) * x0


def _save_unet(student: nn.Module, folder: Path) -> dict[str, str]:
    student.unet.save_pretrained(folder / "unet", safe_serialization=True)
    components = {"unet": "unet"}
    if student.controlnet is not None:
        student.controlnet.save_pretrained(folder / "controlnet", safe_serialization=True)
        components["controlnet"] = "controlnet"
    return components


def build_unet(
    *, path: str, random: str, random_seed: int, controlnet: bool, controlnet_path: str, conditioning_scale: float
) -> Teacher:
    """An SD 1.5 / 2.1-style teacher: a pipeline folder (unet/, scheduler/) or seeded random SD 2.1 components."""
    from diffusers import ControlNetModel, DDPMScheduler, UNet2DConditionModel

    if random:
        from pipelines.testing import build_random_sd

        parts = build_random_sd("sd", random, random_seed)
        unet, branch, scheduler = parts["unet"], parts["controlnet"] if controlnet else None, parts["scheduler"]
        scheduler_config = dict(scheduler.config)
    else:
        unet = from_pretrained(UNet2DConditionModel, path, "unet", "teacher.path", torch.float32)
        branch = None
        if controlnet:
            branch = from_pretrained(
                ControlNetModel, controlnet_path, "controlnet", "teacher.controlnet_path", torch.float32
            )
        try:
            scheduler_config = DDPMScheduler.load_config(path, subfolder="scheduler")
        except Exception as error:  # no scheduler/ folder: the VP schedule is unknown
            raise TeacherError(f"teacher.path: cannot read {path}/scheduler ({error})") from error
    if unet.config.addition_embed_type is not None:
        raise TeacherError("teacher.kind 'unet': SDXL-style added conditions are not supported yet")
    scheduler = DDPMScheduler.from_config(scheduler_config)
    model = VPAsTrigFlow(
        unet,
        scheduler.alphas_cumprod,
        scheduler.config.prediction_type,
        branch,
        conditioning_scale=conditioning_scale,
    )
    side = unet.config.sample_size
    cond_shapes = {"text": (8, unet.config.cross_attention_dim)}
    if branch is not None:
        cond_shapes["control"] = (3, 8 * side, 8 * side)
    return Teacher(
        kind="unet",
        model=model,
        sample_shape=(unet.config.in_channels, side, side),
        cond_shapes=cond_shapes,
        uncond_keys=("text",),
        backend="sd",
        resolution=8 * side,
        lora_targets=UNET_LORA_TARGETS,
        save=_save_unet,
    )
