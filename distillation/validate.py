"""Checkpoint selection: score the EMA student on a validation split while it trains and export the best one.

SANA-Sprint's adversarial half oscillates, so the last step is a lottery: the offline model's student (sCM + LADD,
560 steps) went from held-out FD 268 at step 400 to 305 at step 560 in one run. The validation pairs are a seeded
pick of the prepared *training* split (the held-out split stays unseen, so bench.quality still measures the
exported student honestly), outside the teacher pool when LADD trains on one; the score is FD-EffNetLite0
(distillation.metrics) between the student's pictures and those pairs' real images. Lower is better.

FD alone is nearly colour-blind: the 256 px student's FD improved while its pictures darkened into the same mottle for
every colour word. `fd_colour` also reads colour: each picture and its pair's real image are named with the captions'
own colour words (distillation.data.colours, on the pixels that are not paper) and the score is the FD inflated by
the share of the real image's colour words the picture misses: FD x (2 - colour recall).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from distillation.batching import PairsAsItems, make_batch
from distillation.teachers.base import Teacher

BEST_FOLDER = "best"  # <run>/best/: ema.safetensors + best.json, the selected EMA student
PAPER_DELTA_E = 12.0  # a pixel further than this (CIE76) from white paper is drawing, for colour naming


def validation_indices(count: int, n: int, *, seed: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """n distinct indices of range(count) outside `exclude` (all of them when fewer remain), seeded, ascending."""
    pool = np.setdiff1d(np.arange(count), exclude if exclude is not None else np.array([], np.int64))
    if n >= len(pool):
        return pool
    return np.sort(np.random.default_rng(seed).choice(pool, size=n, replace=False))


def item_seed(seed: int, index: int) -> int:
    """The noise seed of validation item `index` (per item, so scores do not depend on the batch size)."""
    return seed * 1_000_003 + int(index)


@dataclass
class Best:
    """The best validated EMA student so far."""

    step: int
    score: float
    ema: dict[str, Tensor]

    def save(self, folder: Path, metric: str) -> None:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.ema.items()}, str(folder / "ema.partial.safetensors"))
        (folder / "ema.partial.safetensors").replace(folder / "ema.safetensors")
        (folder / "best.json").write_text(json.dumps({"step": self.step, "metric": metric, "score": self.score}))

    @classmethod
    def load(cls, folder: Path, *, up_to: int) -> Best | None:
        """The saved best, if any and not from beyond step `up_to` (a resumed run rewinds to its checkpoint)."""
        from safetensors.torch import load_file

        try:
            record = json.loads((folder / "best.json").read_text())
            if record["step"] > up_to:
                return None
            return cls(
                step=int(record["step"]), score=float(record["score"]), ema=load_file(str(folder / "ema.safetensors"))
            )
        except (OSError, ValueError, KeyError):
            return None


def drawing_alpha(rgb: np.ndarray) -> np.ndarray:
    """255 where an RGB uint8 picture (h, w, 3) is not white paper (CIE76 distance > PAPER_DELTA_E), else 0."""
    from distillation.data.colours import to_lab

    lab = to_lab(rgb)
    distance = np.sqrt((lab[..., 0] - 100.0) ** 2 + lab[..., 1] ** 2 + lab[..., 2] ** 2)
    return np.where(distance > PAPER_DELTA_E, 255, 0).astype(np.uint8)


def picture_colours(rgb: np.ndarray) -> list[str]:
    """The basic colour words of a picture's drawing (its pixels that are not paper), as captions name them."""
    from distillation.data.colours import colour_words

    return colour_words(rgb, drawing_alpha(rgb))[0]


def colour_recall(images: np.ndarray, real: np.ndarray) -> float:
    """Mean share of each real image's colour words that the picture made from its pair also shows (pairs whose real
    image names no colour are skipped; 1.0 when none names one)."""
    shares = []
    for image, reference in zip(images, real, strict=True):
        wanted = set(picture_colours(reference))
        if wanted:
            shares.append(len(wanted & set(picture_colours(image))) / len(wanted))
    return float(np.mean(shares)) if shares else 1.0


class Validator:
    """Validation pairs from a prepared sketch-pairs folder and the FD of pictures against their real images."""

    def __init__(self, root: Path | str, *, n: int, seed: int, exclude_pool: bool) -> None:
        from distillation.data import SketchPairs
        from distillation.pool import POOL_SPLIT

        root = Path(root)
        self.pairs = SketchPairs(root, "train")
        exclude = None
        pool = root / f"{POOL_SPLIT}.npz"
        if exclude_pool and pool.is_file():
            with np.load(pool) as arrays:
                exclude = arrays["train_index"] if "train_index" in arrays else None
        self.indices = validation_indices(len(self.pairs), n, seed=seed, exclude=exclude)
        self.seeds = [item_seed(seed, i) for i in self.indices]
        self.real = self.pairs.images[self.indices]  # uint8 (n, h, w, 3)
        self._reference: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def item(self, k: int) -> dict[str, Tensor]:
        """Validation pair k as a SketchPairs item (no augmentation)."""
        return self.pairs[int(self.indices[k])]

    def score(self, images: np.ndarray) -> dict[str, float]:
        """Scores of uint8 pictures (n, h, w, 3), one per validation pair in order: fd_effnet (FD-EffNetLite0 against
        the pairs' images), colour_recall (of the pairs' own colour words) and fd_colour = fd_effnet x (2 - recall)."""
        from distillation.metrics import effnet_features, frechet_distance

        if self._reference is None:
            self._reference = effnet_features(self.real)
        with torch.inference_mode():
            features = effnet_features(images)
        fd = frechet_distance(features, self._reference)
        recall = colour_recall(images, self.real)
        return {"fd_effnet": fd, "colour_recall": recall, "fd_colour": fd * (2.0 - recall)}


def student_scores(
    validator: Validator,
    render: Callable[[dict, Tensor], Tensor],
    *,
    teacher: Teacher,
    guidance: Sequence[float],
    device: torch.device,
) -> dict[str, float]:
    """The validator's scores of the student's pictures of its pairs, render(batch, unit noise) -> uint8 (b, h, w, 3)
    from each pair's fixed seed, 32 at a time. Runs under forked torch, numpy and Python RNGs (scoring included), so a
    run with selection trains exactly like one without."""
    as_items = PairsAsItems(validator.pairs)
    images, host_rngs = [], (np.random.get_state(), random.getstate())
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for lo in range(0, len(validator), 32):
            ks = range(lo, min(lo + 32, len(validator)))
            items = [as_items[int(validator.indices[k])] for k in ks]
            batch = make_batch(items, guidance=guidance, uncond_keys=teacher.uncond_keys, device=device)
            seeds = [torch.Generator().manual_seed(validator.seeds[k]) for k in ks]
            noise = torch.stack([torch.randn(teacher.sample_shape, generator=g) for g in seeds]).to(device)
            images.append(render(batch, noise).cpu().numpy())
        # inside the fork too: the first score builds EfficientNet-Lite0, whose init draws from the global RNG
        scores = validator.score(np.concatenate(images))
    np.random.set_state(host_rngs[0])
    random.setstate(host_rngs[1])
    return scores
