"""The "sana" teacher family: the engine's own Sana flow (pipelines.sana.flow.SanaFlow: transformer, control branch,
caption mask) in TrigFlow form, random or loaded, so a student is trained the way the Sana engine serves it."""

# b batch, c latent channels, h w latent height width, n caption tokens, d caption width

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import AutoencoderDC, SanaTransformer2DModel
from torch import Tensor, nn

from distillation.teachers.base import (
    Teacher,
    TeacherError,
    from_pretrained,
    latent_to_images,
    pixels_to_images,
    spread_blocks,
)
from pipelines.parameterization import FlowAsTrigFlow
from pipelines.sana.config import controlnet_config, transformer_config
from pipelines.sana.controlnet import SprintControlNet
from pipelines.sana.flow import SanaFlow
from pipelines.sana.load import load_controlnet
from pipelines.spec import ModelError
from pipelines.testing import random_branch

SANA_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
RANDOM_SIZES = {"tiny": "tiny", "full": "0.6b"}  # teacher.random -> pipelines.sana.config size


def random_sana(size: str, *, controlnet: bool, seed: int) -> tuple[SanaTransformer2DModel, SprintControlNet | None]:
    """Seeded random Sprint transformer (+ its control branch), the engine's random components: "tiny" or "full"
    (SANA-Sprint 0.6B). The branch's zero-initialised projections get random weights (pipelines.testing), so that a
    random control branch changes the output."""
    torch.manual_seed(seed)
    transformer = SanaTransformer2DModel(**transformer_config(RANDOM_SIZES[size]))
    branch = random_branch(transformer, controlnet_config(RANDOM_SIZES[size])) if controlnet else None
    return transformer, branch


def _load_branch(path: str) -> SprintControlNet:
    """The engine's loader: a SprintControlNet or SanaControlNetModel folder, or an NVlabs checkpoint."""
    try:
        return load_controlnet(path, torch.float32)
    except ModelError as error:
        raise TeacherError(f"teacher.controlnet_path: {error}") from error


def _save_sana(student: nn.Module, folder: Path) -> dict[str, str]:
    flow = student.flow_model
    flow.transformer.save_pretrained(folder / "transformer", safe_serialization=True)
    components = {"transformer": "transformer"}
    if flow.controlnet is not None:
        flow.controlnet.save_pretrained(folder / "controlnet", safe_serialization=True)
        components["controlnet"] = "controlnet"
    return components


def _dc_ae_decoder(path: str, device: torch.device) -> Callable[[Tensor], Tensor]:
    vae = from_pretrained(AutoencoderDC, path, "vae", "teacher.vae", torch.float32).to(device).eval()

    @torch.no_grad()
    def decode(latents: Tensor) -> Tensor:
        return pixels_to_images(vae.decode(latents.float() / vae.config.scaling_factor).sample)

    return decode


def build_sana(
    *,
    path: str,
    random: str,
    random_seed: int,
    controlnet: bool,
    controlnet_path: str,
    dense_time: bool,
    conditioning_scale: float,
    default_guidance: float,
    text_tokens: int,
    vae: str,
    device: torch.device,
) -> Teacher:
    """A Sana teacher from a diffusers folder (model root with transformer/ or the transformer folder) and a control
    branch as the engine loads one, or random. cond: "text" (b, n, d), optionally "text_mask" (b, n) (1 keep, 0 pad),
    "control" (b, c, h, w) with a branch, "guidance" (b,) for guidance-embedding students (pipelines.sana.flow)."""
    if random:
        transformer, branch = random_sana(random, controlnet=controlnet, seed=random_seed)
    else:
        transformer = from_pretrained(SanaTransformer2DModel, path, "transformer", "teacher.path", torch.float32)
        branch = _load_branch(controlnet_path) if controlnet else None
    flow = SanaFlow(
        transformer,
        branch,
        dense_time=dense_time,
        default_guidance=default_guidance,
        conditioning_scale=conditioning_scale,
    )
    config = transformer.config
    latent = (config.in_channels, config.sample_size, config.sample_size)
    cond_shapes = {"text": (text_tokens, config.caption_channels)}
    if branch is not None:
        cond_shapes["control"] = latent
    width = config.num_attention_heads * config.attention_head_dim
    layers = {f"flow_model.transformer.transformer_blocks.{i}": width for i in range(config.num_layers)}
    return Teacher(
        kind="sana",
        model=FlowAsTrigFlow(flow),
        sample_shape=latent,
        cond_shapes=cond_shapes,
        uncond_keys=("text",),
        backend="sana",
        resolution=32 * config.sample_size,  # DC-AE f32
        lora_targets=SANA_LORA_TARGETS,
        layers=layers,
        default_blocks=spread_blocks(config.num_layers),
        decode=_dc_ae_decoder(vae, device) if vae else latent_to_images,
        save=_save_sana,
    )
