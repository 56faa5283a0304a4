"""The "sketch_tiny" teacher family: the project's small pixel-space model (pipelines/tiny/), registered like any
module factory; its students and teachers are the tiny backend's models."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from distillation.teachers.base import spread_blocks
from distillation.teachers.registered import register_teacher
from pipelines.text import PROMPT_DIM


def _sketch_tiny(path: str | None) -> nn.Module:
    """SketchTinyNet from a save_tiny folder, or random at test size (16 px, two levels, no attention)."""
    from pipelines.tiny import SketchTinyNet, TinyConfig, load_tiny

    if path is None:
        return SketchTinyNet(TinyConfig(resolution=16, channels=(8, 16), blocks=1, attention=False, emb_dim=32))
    return load_tiny(Path(path).expanduser())


def full_config():
    """The architecture the offline presets train (issue #20): SketchTinyNet at 256 px, 8 px space-to-depth, channels
    (64, 128, 256), 13.3 M parameters, reading the prompt's colour words and the sketch's silhouette. (SketchJiT at
    JiTConfig's defaults drew patchy mosaics with its 16 px token grid in view after 3000 steps; the U-Net draws no
    grid.)"""
    from pipelines.tiny import TinyConfig

    return TinyConfig(resolution=256, patch=8, channels=(64, 128, 256), colour_words=True, silhouette=True)


def _random_sketch_tiny(size: str) -> nn.Module:
    """random = "tiny": the 16 px test network; "full": the architecture the presets train (`full_config`)."""
    from pipelines.tiny import SketchTinyNet

    return _sketch_tiny(None) if size == "tiny" else SketchTinyNet(full_config())


def _save_sketch_tiny(flow: nn.Module, folder: Path, sampler: str = "trigflow") -> dict[str, str]:
    """save_tiny with the config's kind = sampler: "trigflow" (a distilled student, consistency steps) or "flow"
    (a teacher, Euler steps with CFG); TinyEngine reads it."""
    from pipelines.tiny import save_tiny

    save_tiny(flow, folder, extra={"kind": sampler})
    return {"weights": "."}


def _tiny_side(flow: nn.Module) -> int:
    return flow.config.resolution


def _tiny_features(flow: nn.Module) -> tuple[tuple[str, int], ...]:
    """LADD's discriminator taps. SketchJiT: three transformer blocks spread over its depth (tokens (b, n, d)).
    U-Net: the last encoder level, the middle, the first decoder level above it (conv maps, read as raster-order
    tokens by DiscHeads)."""
    if flow.arch == "jit":
        return tuple((f"blocks.{block}", flow.config.width) for block in spread_blocks(flow.config.depth, 3))
    chans, last = flow.config.channels, len(flow.config.channels) - 1
    return ((f"down.{last}.0", chans[last]), ("mid.1", chans[last]), (f"up.{last - 1}.0", chans[1]))


register_teacher(
    "sketch_tiny",
    _sketch_tiny,
    sample_shape=lambda flow: (3, _tiny_side(flow), _tiny_side(flow)),
    cond_shapes=lambda flow: {"sketch": (1, _tiny_side(flow), _tiny_side(flow)), "text": (PROMPT_DIM,)},
    uncond_keys=("text",),
    features=_tiny_features,
    backend="tiny",
    save=_save_sketch_tiny,
    samplers=("trigflow", "flow"),
    random_factory=_random_sketch_tiny,
)
