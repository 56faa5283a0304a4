"""What the trainer trains on: the dataset a job's data table names, a resumable index stream over it, and the
Method batch (x0, cond, CFG's uncond and guidance) one step draws from it."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor

from distillation.config import ConfigError, DataConfig
from distillation.teachers.base import Teacher
from pipelines.parameterization import SIGMA_D


class BatchSampler:
    """Index stream over `size` items: a permutation per epoch from (seed, epoch). `position` counts the samples
    drawn by all processes, so it alone fixes every later batch (exact resume); process `rank` takes its slice."""

    def __init__(self, size: int, *, seed: int, batch_size: int, rank: int = 0, world: int = 1):
        self.size, self.seed, self.batch_size, self.rank, self.world = size, seed, batch_size, rank, world
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def permutation(self, epoch: int) -> Tensor:
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.size, generator=generator)
        return self._perm

    def indices(self, position: int) -> list[int]:
        """This process's dataset indices for the global batch starting at `position`."""
        start = position + self.rank * self.batch_size
        out = []
        for k in range(start, start + self.batch_size):
            epoch, offset = divmod(k, self.size)
            out.append(int(self.permutation(epoch)[offset]))
        return out


class PairsAsItems(torch.utils.data.Dataset):
    """distillation.data.SketchPairs as trainer items: x0 = sigma_d * image, conditions "sketch" and "text"."""

    def __init__(self, pairs: torch.utils.data.Dataset):
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        item = self.pairs[index]
        return {"x0": SIGMA_D * item["image"], "sketch": item["sketch"], "text": item["text_embedding"]}


def make_batch(
    items: Sequence[Mapping[str, Tensor]],
    *,
    guidance: Sequence[float],
    uncond_keys: Sequence[str],
    device: torch.device,
) -> dict[str, Any]:
    """The Method batch (methods/base.py): x0, cond and, with CFG scales, uncond (uncond_keys zeroed), guidance
    (b,) drawn from `guidance` with torch's RNG, and student_cond = cond + guidance."""
    stacked = {key: torch.stack([item[key] for item in items]).to(device) for key in items[0]}
    x0 = stacked.pop("x0")
    batch: dict[str, Any] = {"x0": x0, "cond": stacked}
    if guidance:
        scales = torch.tensor(guidance, dtype=x0.dtype)[torch.randint(len(guidance), (x0.shape[0],))].to(device)
        batch["uncond"] = {**stacked, **{key: torch.zeros_like(stacked[key]) for key in uncond_keys}}
        batch["guidance"] = scales
        batch["student_cond"] = {**stacked, "guidance": scales}
    return batch


def middle_guidance(guidance: Sequence[float]) -> tuple[float, ...]:
    """The one CFG scale previews and validation sample with: the middle of the job's scales (none without CFG)."""
    return (sorted(guidance)[len(guidance) // 2],) if guidance else ()


def build_dataset(
    dc: DataConfig,
    teacher: Teacher,
    *,
    main_process_first: Callable[[], AbstractContextManager],
    is_main: bool,
    emit: Callable[[dict[str, Any]], None],
) -> tuple[torch.utils.data.Dataset, str]:
    """The job's items and the prepared pairs' folder ("" for synthetic data): synthetic draws of the teacher's shapes,
    prepared sketch pairs, or an image folder prepared once (main process first) at the teacher's sample size."""
    if dc.kind == "synthetic":
        return teacher.synthetic(size=dc.size, seed=dc.seed), ""
    from distillation.data import DataError, SketchPairs, folder_summary, prepare_folder

    wanted = {"sketch", "text"}
    if set(teacher.cond_shapes) != wanted or teacher.sample_shape[0] != 3:
        takes = f"{teacher.sample_shape} samples with {sorted(teacher.cond_shapes)}"
        raise ConfigError(
            f"data.kind {dc.kind!r} gives images with 'sketch' and 'text' conditions; teacher kind "
            f"{teacher.kind!r} takes {takes}. In plain words: pictures with sketches train only a teacher "
            "that draws pictures from a sketch and a caption (the bundled sketch-tiny-teacher); this teacher "
            "draws latents from other conditions: choose the synthetic data for it, or the bundled teacher"
        )
    try:
        path = dc.path
        if dc.kind == "image_folder":  # prepared once at the teacher's sample size, then read like sketch pairs
            options = dict(sketch=dc.sketch, cache=dc.cache or None, progress=is_main, name_captions=dc.name_captions)
            with main_process_first():
                root, manifest = prepare_folder(dc.path, resolution=teacher.sample_shape[-1], **options)
            path = root
            if is_main:
                print(
                    f"data: {folder_summary(manifest)}; {'reused' if manifest['reused'] else 'prepared'} {root}",
                    file=sys.stderr,
                    flush=True,
                )
            emit(
                {
                    "event": "data",
                    "kind": dc.kind,
                    "path": str(root),
                    "reused": manifest["reused"],
                    "counts": manifest["counts"],
                }
            )
        split = dc.split if dc.kind == "sketch_pairs" else "train"
        return PairsAsItems(SketchPairs(path, split, augment=dc.augment)), str(path)
    except DataError as error:
        raise ConfigError(f"data.path: {error}") from error
