"""A tiny network on disk: config.json (with its "arch") + fp16 safetensors, and back."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from pipelines.spec import ModelError
from pipelines.tiny.jit import JiTConfig, SketchJiT
from pipelines.tiny.unet import SketchTinyNet, TinyConfig

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

TinyNet = SketchTinyNet | SketchJiT
ARCHS: dict[str, tuple[type, type]] = {"unet": (TinyConfig, SketchTinyNet), "jit": (JiTConfig, SketchJiT)}


def build_tiny(config: TinyConfig | JiTConfig) -> TinyNet:
    """The network a config describes (random weights)."""
    return SketchJiT(config) if isinstance(config, JiTConfig) else SketchTinyNet(config)


def save_tiny(model: TinyNet, folder: Path | str, *, extra: dict | None = None) -> Path:
    """Weights (safetensors, fp16 to halve the repo size) + config.json (with the architecture's name)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_NAME))
    config = {"arch": model.arch, **asdict(model.config), **(extra or {})}
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2))
    return folder


def load_tiny(folder: Path | str, device: str = "cpu", dtype: torch.dtype = torch.float32) -> TinyNet:
    """Inverse of `save_tiny`; a missing or partial folder, or an unknown architecture, is a ModelError."""
    from safetensors.torch import load_file

    folder = Path(folder)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / name).is_file():
            raise ModelError(f"{folder}: {name} is missing")
    raw = json.loads((folder / CONFIG_NAME).read_text())
    arch = raw.get("arch", "unet")  # written before the 256 px model: the U-Net
    if arch not in ARCHS:
        raise ModelError(f"{folder}: unknown architecture {arch!r} in {CONFIG_NAME} (known: {', '.join(ARCHS)})")
    config_cls, net_cls = ARCHS[arch]
    model = net_cls(config_cls.from_dict({k: v for k, v in raw.items() if k in config_cls.__dataclass_fields__}))
    model.load_state_dict({k: v.float() for k, v in load_file(str(folder / WEIGHTS_NAME)).items()})
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)
