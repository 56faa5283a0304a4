"""Loading SD-family components from the hub or from folders laid out like hub repos (LCM-LoRA fused on load)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderTiny,
    ControlNetModel,
    LCMScheduler,
    SchedulerMixin,
    StableDiffusionControlNetPipeline,
    StableDiffusionXLControlNetPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from pipelines.spec import ModelError, ModelSpec, guarded, hub_offline, is_local


def _load_part(role: str, path: str, cls: Any, *, subfolder: str = "", dtype: torch.dtype | None = None) -> Any:
    """`cls.from_pretrained` for a hub id or a folder; in float16 the repo's fp16 variant first, then the full one."""
    where = f"{path}/{subfolder}" if subfolder else path
    if is_local(path) and not Path(where).is_dir():
        raise ModelError(f"the {role} component is missing: no folder {where}")
    kwargs: dict[str, Any] = {"local_files_only": hub_offline()}
    if subfolder:
        kwargs["subfolder"] = subfolder
    attempts: list[dict[str, Any]] = [{}]
    if dtype is not None:
        kwargs["dtype"] = dtype
        if dtype == torch.float16:
            attempts = [{"variant": "fp16"}, {}]

    def make() -> Any:
        for extra in attempts[:-1]:
            try:
                return cls.from_pretrained(path, **kwargs, **extra)
            except (OSError, ValueError):  # no fp16 variant in this repo: fall back to the full-precision files
                continue
        return cls.from_pretrained(path, **kwargs, **attempts[-1])

    return guarded(role, where, cls.__name__, make)


def _load_scheduler(path: str) -> SchedulerMixin:
    """The scheduler class and config named in `<base>/scheduler/scheduler_config.json`."""

    def make() -> SchedulerMixin:
        config = LCMScheduler.load_config(path, subfolder="scheduler", local_files_only=hub_offline())
        return getattr(diffusers, config["_class_name"]).from_config(config)

    where = f"{path}/scheduler"
    if is_local(path) and not Path(where).is_dir():
        raise ModelError(f"the base component is missing: no folder {where}")
    return guarded("base", where, "a diffusers scheduler", make)


def _loader_pipeline(components: dict[str, Any]) -> Any:
    """A diffusers pipeline over our components, used only for its LoRA loader (same key mapping as diffusers)."""
    if "text_encoder_2" in components:
        return StableDiffusionXLControlNetPipeline(
            vae=components["vae"],
            text_encoder=components["text_encoder"],
            text_encoder_2=components["text_encoder_2"],
            tokenizer=components["tokenizer"],
            tokenizer_2=components["tokenizer_2"],
            unet=components["unet"],
            controlnet=components["controlnet"],
            scheduler=components["scheduler"],
            add_watermarker=False,
        )
    return StableDiffusionControlNetPipeline(
        vae=components["vae"],
        text_encoder=components["text_encoder"],
        tokenizer=components["tokenizer"],
        unet=components["unet"],
        controlnet=components["controlnet"],
        scheduler=components["scheduler"],
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def fuse_lora(components: dict[str, Any], path: str) -> None:
    """Load a diffusers-format LoRA (e.g. LCM-LoRA) into the UNet / text encoders and fuse it into their weights."""
    if is_local(path) and not Path(path).exists():
        raise ModelError(f"the lora component is missing: nothing at {path}")

    def make() -> None:
        pipe = _loader_pipeline(components)
        pipe.load_lora_weights(path, adapter_name="fused", local_files_only=hub_offline())
        pipe.fuse_lora()
        pipe.unload_lora_weights()  # the fused weights stay; the adapter layers go

    guarded("lora", path, "a diffusers LoRA", make)


def load_components(spec: ModelSpec, dtype: torch.dtype) -> dict[str, Any]:
    """Every component a manifest names, from hub ids or local folders (roles: base, controlnet, vae, taesd, lora)."""
    for role in ("base", "controlnet"):
        if role not in spec.components:
            raise ModelError(f"{spec.name}: the manifest names no {role!r} component")
    base = spec.component_path("base")
    components: dict[str, Any] = {
        "tokenizer": _load_part("base", base, CLIPTokenizer, subfolder="tokenizer"),
        "text_encoder": _load_part("base", base, CLIPTextModel, subfolder="text_encoder", dtype=dtype),
    }
    if spec.backend == "sdxl":
        components["tokenizer_2"] = _load_part("base", base, CLIPTokenizer, subfolder="tokenizer_2")
        components["text_encoder_2"] = _load_part(
            "base", base, CLIPTextModelWithProjection, subfolder="text_encoder_2", dtype=dtype
        )
    components["unet"] = _load_part("base", base, UNet2DConditionModel, subfolder="unet", dtype=dtype)
    if "vae" in spec.components:
        components["vae"] = _load_part("vae", spec.component_path("vae"), AutoencoderKL, dtype=dtype)
    else:
        components["vae"] = _load_part("base", base, AutoencoderKL, subfolder="vae", dtype=dtype)
    components["scheduler"] = _load_scheduler(base)
    components["controlnet"] = _load_part(
        "controlnet", spec.component_path("controlnet"), ControlNetModel, dtype=dtype
    )
    if "taesd" in spec.components:
        components["taesd"] = _load_part("taesd", spec.component_path("taesd"), AutoencoderTiny, dtype=dtype)
    if "lora" in spec.components:
        fuse_lora(components, spec.component_path("lora"))
    return components
