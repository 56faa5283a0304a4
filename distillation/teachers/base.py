"""What every teacher family gives the trainer: the Teacher record, its error, synthetic data of its shapes, latent
and pixel previews, and loading a diffusers model from a model root or its own folder."""

# b batch, c channels, h w latent height width, n caption tokens, d caption width

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pipelines.parameterization import SIGMA_D
from pipelines.registry import hub_offline, is_local

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class TeacherError(ValueError):
    """A teacher cannot be built; the message names what is missing and is meant for the person running the job."""


class SyntheticPairs(torch.utils.data.Dataset):
    """Random samples and conditions of fixed shapes, drawn once from `seed` (pipeline checks, benchmarks).

    Items: "x0" (TrigFlow scale, sigma_d * N(0, I)) and one N(0, I) tensor per condition key."""

    def __init__(self, sample_shape: Sequence[int], cond_shapes: Mapping[str, Sequence[int]], *, size: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.tensors = {"x0": SIGMA_D * torch.randn(size, *sample_shape, generator=g)}
        for key, shape in cond_shapes.items():
            self.tensors[key] = torch.randn(size, *shape, generator=g)

    def __len__(self) -> int:
        return self.tensors["x0"].shape[0]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {key: value[index] for key, value in self.tensors.items()}


def latent_to_images(x: Tensor) -> Tensor:
    """Latents seen without a decoder: channels 0-2 (or 0 thrice), min-max per image -> uint8 (b, h, w, 3)."""
    x = x.float()
    rgb = x[:, :3] if x.shape[1] >= 3 else x[:, :1].expand(-1, 3, -1, -1)
    low = rgb.amin(dim=(1, 2, 3), keepdim=True)
    high = rgb.amax(dim=(1, 2, 3), keepdim=True)
    return ((rgb - low) / (high - low).clamp_min(1e-8) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)


def pixels_to_images(x: Tensor) -> Tensor:
    """Images in [-1, 1] (b, 3, h, w) -> uint8 (b, h, w, 3)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)


def spread_blocks(num_layers: int, count: int = 4) -> tuple[int, ...]:
    """LADD's hooked blocks: SANA-Sprint's [2, 8, 14, 19] when the model is that deep, else `count` spread evenly."""
    if num_layers >= 20:
        return (2, 8, 14, 19)
    return tuple(sorted({round(i * (num_layers - 1) / max(count - 1, 1)) for i in range(count)}))


@dataclass
class Teacher:
    """A built frozen teacher.

    model: F(x, t, cond) in TrigFlow form (frozen, eval); trainable roles initialised from the teacher copy it.
    sample_shape / cond_shapes: per-sample shapes of x0 and of the condition tensors (synthetic data).
    uncond_keys: condition keys replaced by zeros for the CFG branch (the null caption).
    backend: the pipelines.registry backend that loads this family's students.
    """

    kind: str
    model: nn.Module
    sample_shape: tuple[int, ...]
    cond_shapes: dict[str, tuple[int, ...]]
    uncond_keys: tuple[str, ...]
    backend: str
    resolution: int
    lora_targets: tuple[str, ...]
    layers: dict[str, int] = field(default_factory=dict)  # hookable feature layer (in `model`) -> channels
    default_blocks: tuple[int, ...] = ()
    decode: Callable[[Tensor], Tensor] = latent_to_images
    save: Callable[..., dict[str, str]] | None = None
    samplers: tuple[str, ...] = ("trigflow",)  # what `export` can write (the backend's sampling modes)

    def features(self, blocks: Sequence[int] = ()) -> tuple[list[str], list[int]]:
        """LADD feature layers (names in `model`) and their channel counts; `blocks` index `layers` (() = default)."""
        names = list(self.layers)
        if not names:
            raise TeacherError(f"teacher kind {self.kind!r} exposes no token features for a LADD discriminator")
        blocks = tuple(blocks) or self.default_blocks or tuple(range(len(names)))
        bad = [b for b in blocks if not 0 <= b < len(names)]
        if bad:
            raise TeacherError(f"teacher.feature_blocks: {bad} out of range; the teacher has {len(names)} blocks")
        return [names[b] for b in blocks], [self.layers[names[b]] for b in blocks]

    def synthetic(self, *, size: int, seed: int) -> SyntheticPairs:
        """Random x0 and conditions of this teacher's shapes."""
        return SyntheticPairs(self.sample_shape, self.cond_shapes, size=size, seed=seed)

    def to_images(self, x0: Tensor) -> Tensor:
        """TrigFlow-scale samples (b, ...) -> uint8 RGB (b, h, w, 3) for previews."""
        return self.decode(x0 / SIGMA_D)

    def export(self, student: nn.Module, folder: Path, sampler: str = "trigflow") -> dict[str, str]:
        """Write a student (a module shaped like `model`) under `folder`; returns manifest components -> subfolders.
        sampler: how the backend must sample it, "trigflow" (consistency steps) or "flow" (a multi-step flow model,
        which only registered teachers that declare `samplers` including it can export)."""
        if self.save is None:
            raise TeacherError(f"teacher kind {self.kind!r} has no export format")
        if sampler not in self.samplers:
            known = " or ".join(self.samplers)
            raise TeacherError(f"teacher kind {self.kind!r} exports {known} models, not {sampler!r}")
        return self.save(student, folder, sampler) if sampler != "trigflow" else self.save(student, folder)


def from_pretrained(cls: Any, path: str, subfolder: str, role: str, dtype: torch.dtype) -> nn.Module:
    """`cls.from_pretrained` on a model root holding `subfolder/` (hub ids too) or on the model's own folder.

    Local folders are written ./x, ../x, /x or ~/x (pipelines.registry.is_local); failures become TeacherError."""
    kwargs: dict[str, Any] = {"torch_dtype": dtype, "local_files_only": hub_offline(), "subfolder": subfolder}
    if is_local(path):
        root = Path(path).expanduser()
        if not root.exists():
            raise TeacherError(f"{role}: {path} does not exist")
        path = str(root)
        if not (root / subfolder).is_dir():
            kwargs.pop("subfolder")
    try:
        return cls.from_pretrained(path, **kwargs)
    except Exception as error:  # missing files, offline hub, wrong config all mean "cannot load this teacher"
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TeacherError(f"{role}: cannot load {path} as {cls.__name__}: {first}") from error
