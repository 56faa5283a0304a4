"""A teacher-sample split: the prepared training sketches and captions with the teacher's own pictures as images.

    python -m distillation.data teacher-pool --teacher assets/models/sketch-tiny-teacher --n 2000 --steps 8

LADD's "real" side is then the teacher's output distribution (as in SD3-Turbo's LADD and the 2-D toy's sample pool),
a target the student, initialised from the teacher, can reach; against real images the discriminator latches onto
what the small teacher cannot draw and pushes the student off it. The split is read like any other
(`data.split = "teacher_pool"` in a preset).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from distillation.data.errors import DataError
from distillation.data.pairs import SketchPairs

POOL_SPLIT = "teacher_pool"


def pick_items(count: int, n: int, seed: int) -> np.ndarray:
    """n distinct training indices (all of them when n >= count), seeded, in ascending order."""
    if n >= count:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=n, replace=False))


@torch.no_grad()
def build_teacher_pool(
    root: Path | str,
    teacher: Path | str,
    *,
    n: int = 2000,
    steps: int = 8,
    seed: int = 0,
    batch: int = 32,
    device: str = "cpu",
    progress: bool = True,
) -> dict:
    """Write `<root>/teacher_pool.npz` (sketch, image, caption_index; the training split's layout): the teacher's
    Euler samples (its own CFG scale) for n seeded training items, noise seeded per item (drawn on the CPU for any
    `device`, so a GPU pool differs from a CPU one only by float rounding). Returns a summary."""
    from pipelines.registry import ModelError
    from pipelines.tiny import load_tiny, sample_images

    root = Path(root)
    train = SketchPairs(root, "train")  # the prepared split and captions, or a DataError naming the command
    try:
        model = load_tiny(teacher, device=device)
    except ModelError as error:
        raise DataError(f"teacher: {error}") from error
    if model.config.kind == "trigflow":
        raise DataError(f"{teacher} is a distilled student, not a flow-matching teacher")
    items = pick_items(len(train), n, seed)
    sketches, caption_index = train.sketches[items], train.caption_index[items]
    size = model.config.resolution
    if sketches.shape[-1] != size:
        raise DataError(f"{root} holds {sketches.shape[-1]} px sketches; the teacher draws {size} px")
    text = train.embeddings[torch.from_numpy(caption_index.astype(np.int64))]
    seeds = [seed * 1_000_003 + int(i) for i in items]  # per item, so a pool does not depend on the batch size
    images = sample_images(
        model, sketches, text, steps=steps, seeds=seeds, batch=batch, progress="teacher pool" if progress else None
    )
    target = root / f"{POOL_SPLIT}.npz"
    partial = target.with_suffix(".partial.npz")
    np.savez(partial, sketch=sketches, image=images, caption_index=caption_index, train_index=items)
    partial.replace(target)  # never a half-written split
    return {
        "out": str(target),
        "n": len(items),
        "steps": steps,
        "seed": seed,
        "teacher": str(teacher),
        "device": device,
    }
