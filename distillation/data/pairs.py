"""Reading prepared pairs: SketchPairs serves a split to the trainer (with sketch and recolour augmentation), and a
contact sheet shows a few of them.

With augment=True a pair's sketch is, at random, its second drawing (sketch_alt, when the folder has one; else a
warped copy of the first), and with probability `recolour` its picture's hue is rotated by one of the prepared shifts
and its caption embedding swapped for the caption prepared for that shift: no text encoder runs per batch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from distillation.data.colours import recolour
from distillation.data.errors import DataError
from distillation.data.sketches import augment_sketch
from pipelines.text import prompt_vectors

RECOLOUR_P = 0.4  # with augment=True, the share of items served recoloured (with the caption that says so)


class SketchPairs(torch.utils.data.Dataset):
    """Prepared pairs as tensors: sketch (1, h, w) with ink = 1, image (3, h, w) in [-1, 1], text_embedding
    (PROMPT_DIM,) float32 (the caption's prompt vector), caption str."""

    def __init__(
        self, root: Path | str, split: str = "train", *, augment: bool = False, recolour: float = RECOLOUR_P
    ) -> None:
        root = Path(root)
        path = root / f"{split}.npz"
        if not path.is_file():
            command = "teacher-pool" if split == "teacher_pool" else "prepare"
            raise DataError(f"{path} does not exist; build it with: python -m distillation.data {command}")
        with np.load(path) as arrays:
            self.sketches, self.images = arrays["sketch"], arrays["image"]
            self.caption_index = arrays["caption_index"]
            self.sketches_alt = arrays["sketch_alt"] if "sketch_alt" in arrays else None
            self.kinds = arrays["sketch_kind"] if "sketch_kind" in arrays else None
            has_recolour = "recolour_caption_index" in arrays
            self.recolour_shift = arrays["recolour_shift"] if has_recolour else np.zeros(0, np.int16)
            self.recolour_index = arrays["recolour_caption_index"] if has_recolour else None
        with np.load(root / "captions.npz") as captions:
            self.captions = captions["text"]
            # prompt vectors: the caption embeddings followed by the captions' colour words (pipelines/text.py)
            self.embeddings = torch.from_numpy(prompt_vectors(captions["embedding"], list(self.captions)))
        self.augment = augment
        self.recolour = recolour if self.recolour_index is not None else 0.0

    def __len__(self) -> int:
        return len(self.caption_index)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        sketch, image, caption = self.sketches[index], self.images[index], int(self.caption_index[index])
        if self.augment:  # seeded from torch's RNG so the trainer's seed (and DataLoader workers) make it repeatable
            rng = np.random.default_rng(int(torch.randint(2**62, ())))
            if self.sketches_alt is not None:
                sketch = self.sketches_alt[index] if rng.random() < 0.5 else sketch
            else:
                sketch = augment_sketch(sketch, rng)
            if rng.random() < self.recolour:
                k = int(rng.integers(len(self.recolour_shift)))
                image = recolour(image, int(self.recolour_shift[k]))
                caption = int(self.recolour_index[index, k])
        return {
            "sketch": torch.from_numpy(1.0 - sketch.astype(np.float32) / 255.0)[None],
            "image": torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 127.5 - 1.0,
            "text_embedding": self.embeddings[caption],
            "caption": str(self.captions[caption]),
        }


def contact_sheet(root: Path, *, n: int = 16, columns: int = 4, seed: int = 0, split: str = "train") -> Image.Image:
    """n random pairs as (sketch | image) tiles with their captions and sketch kinds, and the sources' credits."""
    pairs = SketchPairs(root, split)
    manifest = json.loads((root / "manifest.json").read_text())
    picks = np.random.default_rng(seed).choice(len(pairs), size=min(n, len(pairs)), replace=False)
    side = pairs.sketches.shape[1]
    font = ImageFont.load_default(size=11)
    caption_h, gap = 28, 6
    rows = -(-len(picks) // columns)
    credits = [f"{name}: {info['credit']}" for name, info in manifest["sources"].items()]
    width = max(columns * (2 * side + gap) + gap, max(round(font.getlength(line)) for line in credits) + 2 * gap)
    sheet = Image.new("RGB", (width, rows * (side + caption_h + gap) + gap + 14 * len(credits) + 4), "white")
    draw = ImageDraw.Draw(sheet)
    for k, pick in enumerate(picks):
        x = gap + (k % columns) * (2 * side + gap)
        y = gap + (k // columns) * (side + caption_h + gap)
        sheet.paste(Image.fromarray(pairs.sketches[pick]).convert("RGB"), (x, y))
        sheet.paste(Image.fromarray(pairs.images[pick]), (x + side, y))
        draw.rectangle((x, y, x + 2 * side - 1, y + side - 1), outline=(200, 200, 200))
        kind = f" [{pairs.kinds[pick]}]" if pairs.kinds is not None else ""
        caption = str(pairs.captions[pairs.caption_index[pick]])
        while draw.textlength(caption + kind, font=font) > 2 * side and len(caption) > 4:
            caption = caption[:-2]
        draw.text((x, y + side + 2), caption + kind, fill="black", font=font)
    y = gap + rows * (side + caption_h + gap)
    for line in credits:
        draw.text((gap, y), line, fill=(80, 80, 80), font=font)
        y += 14
    return sheet
