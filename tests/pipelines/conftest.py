"""Tiny seeded SD, SD1.5+LCM-LoRA and SDXL checkpoints saved like hub repos, with manifests (diffusers backend)."""

from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionPipeline, UNet2DConditionModel
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from pipelines.registry import Registry
from pipelines.testing import save_random_sd

MANIFEST = """name = "{name}"
title = "{name}"
backend = "{backend}"
resolution = 256
steps = {steps}
allowed_steps = [1, 2, 3, 4]
dtype = "float32"
guidance = {guidance}

[components]
{components}
"""


def save_random_lcm_lora(unet_folder: Path, folder: Path, seed: int = 0) -> Path:
    """A random rank-4 LoRA on the UNet's attention projections, written in diffusers' LoRA format (as LCM-LoRA)."""
    unet = UNet2DConditionModel.from_pretrained(unet_folder)
    torch.manual_seed(seed)
    config = LoraConfig(
        r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False
    )
    unet.add_adapter(config)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=layers)
    return folder


def write_manifest(
    folder: Path, name: str, backend: str, components: dict[str, str], steps: int = 1, guidance: float = 0.0
) -> Path:
    lines = "\n".join(f'{role} = "{value}"' for role, value in components.items())
    path = folder / f"{name}.toml"
    path.write_text(MANIFEST.format(name=name, backend=backend, steps=steps, guidance=guidance, components=lines))
    return path


@pytest.fixture(scope="session")
def sd_models_dir(tmp_path_factory) -> Path:
    """tiny-sd (Euler trailing, as SD-Turbo), tiny-sdxl (Euler ancestral, as SDXL-Turbo) and tiny-sd15-lcm (PNDM base
    + LCM-LoRA, as SD 1.5) saved with save_pretrained, each with a manifest that points at its folders."""
    root = tmp_path_factory.mktemp("models")
    for kind, backend in (("sd", "sd"), ("sdxl", "sdxl"), ("sd15", "sd")):
        save_random_sd(kind, "tiny", root / kind, seed=0)
        parts = {"base": f"./{kind}/base", "controlnet": f"./{kind}/controlnet", "taesd": f"./{kind}/taesd"}
        if kind == "sd15":
            save_random_lcm_lora(root / kind / "base" / "unet", root / kind / "lora", seed=1)
            write_manifest(root, "tiny-sd15-lcm", backend, {**parts, "lora": f"./{kind}/lora"}, steps=4, guidance=1.0)
        else:
            write_manifest(root, f"tiny-{kind}", backend, parts)
    return root


@pytest.fixture(scope="session")
def sd_registry(sd_models_dir) -> Registry:
    return Registry(models_dir=sd_models_dir, allowed_roots=(sd_models_dir,))


@pytest.fixture(scope="session")
def sd_engines(sd_registry) -> dict:
    """Each tiny model loaded through the registry (the same manifest path as real checkpoints), fp32 CPU."""
    return {name: sd_registry.load(name, "cpu", "float32") for name in ("tiny-sd", "tiny-sdxl", "tiny-sd15-lcm")}
