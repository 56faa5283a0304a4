"""Coloured shapes with free-hand outline sketches and colour-word captions, in the prepared sketch-pairs format.

A network trained on them must take the colour from the text (every shape comes in every colour) and the shape and
place from the sketch (the caption names the shape but not where it is). Sketches are free-hand strokes rendered by
the canvas rasteriser (pipelines.strokes), as the app's training data must be.

    python -m tests.distillation.shapes write OUT --train 2000 --heldout 200 --size 256   # a probe folder
    python -m tests.distillation.shapes score MODEL_FOLDER OUT --n 20 --steps 16           # what a model learnt
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from pipelines.strokes import BRUSH_WIDTHS, CANVAS_SIZE, Stroke, model_sketch, render_strokes

# basic colour terms and the fill each paints (hue far enough apart that the nearest one is never in doubt)
COLOURS = {"red": (215, 40, 40), "yellow": (240, 205, 35), "green": (40, 165, 65), "blue": (40, 85, 215)}
SHAPES = ("circle", "square", "triangle", "star", "diamond")
OUTLINE = (35, 35, 35)


def shape_outline(kind: str, centre: np.ndarray, radius: float, angle: float) -> np.ndarray:
    """A closed outline (n, 2) of `kind` in canvas pixels (x, y), first point repeated at the end."""
    corners = {"square": 4, "triangle": 3, "diamond": 4}
    if kind == "circle":
        phi = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        radii = np.full_like(phi, radius)
    elif kind == "star":
        phi = np.linspace(0, 2 * math.pi, 10, endpoint=False)
        radii = np.where(np.arange(10) % 2 == 0, radius, 0.45 * radius)
    elif kind in corners:
        phi = np.linspace(0, 2 * math.pi, corners[kind], endpoint=False) + (math.pi / 4 if kind == "square" else 0)
        radii = np.full_like(phi, radius * (1.0 if kind != "diamond" else 1.1))
        if kind == "diamond":
            radii = radii * np.where(np.arange(4) % 2 == 0, 1.0, 0.65)
    else:
        raise ValueError(f"unknown shape {kind!r}; known: {', '.join(SHAPES)}")
    phi = phi + angle - math.pi / 2
    points = centre + np.stack([radii * np.cos(phi), radii * np.sin(phi)], axis=1)
    return np.concatenate([points, points[:1]])


def free_hand(outline: np.ndarray, rng: np.random.Generator, *, wobble: float) -> list[Stroke]:
    """The outline as one or two hand-drawn strokes: resampled, a smooth wobble, an overshoot, a brush width."""
    steps = np.linalg.norm(np.diff(outline, axis=0), axis=1)
    along = np.concatenate([[0.0], np.cumsum(steps)])
    where = np.linspace(0, along[-1] * (1 + rng.uniform(0, 0.08)), max(16, int(along[-1] / 6)))
    points = np.stack([np.interp(where % along[-1], along, outline[:, k]) for k in range(2)], axis=1)
    phase, freq = rng.uniform(0, 2 * math.pi, 2), rng.uniform(2, 5, 2)
    t = where / along[-1] * 2 * math.pi
    points = points + wobble * np.stack([np.sin(freq[0] * t + phase[0]), np.cos(freq[1] * t + phase[1])], axis=1)
    points = points + rng.normal(0, 0.6, points.shape)
    width = float(rng.uniform(*BRUSH_WIDTHS) * 0.6 + 2)
    if rng.random() < 0.3:  # lifted the pen once: two strokes with a small gap
        cut = int(rng.integers(len(points) // 4, 3 * len(points) // 4))
        return [Stroke(points[: cut - 1], width), Stroke(points[cut + 1 :], width)]
    return [Stroke(points, width)]


def draw_pair(kind: str, colour: str, rng: np.random.Generator, size: int) -> tuple[np.ndarray, ...]:
    """(sketch (size, size) uint8 black on white, image (size, size, 3) uint8, mask (size, size) bool) of one shape."""
    radius = rng.uniform(0.18, 0.34) * CANVAS_SIZE
    centre = rng.uniform(radius + 8, CANVAS_SIZE - radius - 8, 2)
    outline = shape_outline(kind, centre, radius, rng.uniform(-0.3, 0.3))
    fill = np.clip(np.array(COLOURS[colour]) + rng.integers(-15, 16, 3), 0, 255)
    canvas = np.full((CANVAS_SIZE, CANVAS_SIZE, 3), 255, np.uint8)
    polygon = np.round(outline * 16).astype(np.int32)[:, None]
    cv2.fillPoly(canvas, [polygon], tuple(int(v) for v in fill), cv2.LINE_AA, 4)
    cv2.polylines(canvas, [polygon], True, OUTLINE, 8, cv2.LINE_AA, 4)
    image = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    mask = np.zeros((CANVAS_SIZE, CANVAS_SIZE), np.uint8)
    cv2.fillPoly(mask, [polygon], 255, cv2.LINE_8, 4)
    mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_AREA) > 200
    sketch = model_sketch(render_strokes(free_hand(outline, rng, wobble=0.02 * radius)), size)
    return sketch, image, mask


def captions() -> list[str]:
    """Every caption, in caption_index order: "a <colour> <shape>"."""
    return [f"a {colour} {shape}" for shape in SHAPES for colour in COLOURS]


def draw_split(n: int, size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """n pairs with balanced (shape, colour) captions: sketch, image, caption_index, mask."""
    index = rng.permutation(np.arange(n) % len(captions()))
    pairs = [draw_pair(SHAPES[i // len(COLOURS)], list(COLOURS)[i % len(COLOURS)], rng, size) for i in index]
    sketch, image, mask = (np.stack(column) for column in zip(*pairs, strict=True))
    return {"sketch": sketch, "image": image, "caption_index": index.astype(np.int64), "mask": mask}


def write_shapes(
    root: Path | str,
    *,
    train: int,
    heldout: int,
    size: int,
    seed: int = 0,
    embed: Callable[[Sequence[str]], np.ndarray] | None = None,
) -> Path:
    """train.npz, heldout.npz (with the fill masks), captions.npz and manifest.json under `root`. `embed` maps
    captions to (n, 384) text embeddings (default: pipelines.text's MiniLM)."""
    if embed is None:
        from pipelines.text import encode_texts

        embed = lambda texts: encode_texts(texts)[0]  # noqa: E731
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("heldout", heldout)):
        np.savez(root / f"{split}.npz", **draw_split(n, size, rng))
    texts = captions()
    np.savez(root / "captions.npz", text=np.array(texts), embedding=np.asarray(embed(texts), np.float16))
    sources = {"shapes": {"credit": "synthetic coloured shapes (tests/distillation/shapes.py)", "licence": "MIT"}}
    (root / "manifest.json").write_text(json.dumps({"sources": sources, "resolution": size, "seed": seed}))
    return root


def mean_fill(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(n, 3) mean RGB of each picture inside its shape's mask (shrunk by a few pixels, clear of the outline)."""
    side = masks.shape[1]
    kernel = np.ones((max(3, side // 32),) * 2, np.uint8)
    inner = np.stack([cv2.erode(m.astype(np.uint8), kernel) > 0 for m in masks])
    pairs = zip(images, inner, strict=True)
    return np.stack([img[m].mean(axis=0) if m.any() else img.reshape(-1, 3).mean(axis=0) for img, m in pairs])


def nearest_colour(rgb: np.ndarray, names: Sequence[str] = tuple(COLOURS)) -> list[str]:
    """The colour term of `names` whose fill is nearest each (n, 3) RGB."""
    palette = np.array([COLOURS[name] for name in names], np.float64)
    return [names[int(i)] for i in np.argmin(((rgb[:, None] - palette[None]) ** 2).sum(-1), axis=1)]


def dominant_colour(
    images: np.ndarray, names: Sequence[str] = tuple(COLOURS), *, min_saturation: float = 0.35
) -> list:
    """Per picture (n, h, w, 3), the colour term of `names` most of its saturated pixels are nearest (None: no
    saturated pixel), as bench.freehand's colour hit counts: white paper and dark lines do not vote."""
    rgb = images.reshape(len(images), -1, 3).astype(np.float64)
    high, low = rgb.max(axis=-1), rgb.min(axis=-1)
    saturated = (high - low) / np.maximum(high, 1) >= min_saturation
    palette = np.array([COLOURS[name] for name in names], np.float64)
    out = []
    for pixels, keep in zip(rgb, saturated, strict=True):
        if not keep.any():
            out.append(None)
            continue
        votes = np.argmin(((pixels[keep][:, None] - palette[None]) ** 2).sum(-1), axis=1)
        out.append(names[int(np.bincount(votes, minlength=len(names)).argmax())])
    return out


def shape_agreement(images: np.ndarray, masks: np.ndarray, *, threshold: float = 60.0) -> float:
    """Mean IoU between each picture's painted area (pixels at least `threshold` away from white) and its mask."""
    painted = np.abs(images.astype(np.float32) - 255).max(axis=-1) >= threshold
    inter = (painted & masks).sum(axis=(1, 2))
    union = (painted | masks).sum(axis=(1, 2))
    return float(np.mean(inter / np.maximum(union, 1)))


def score(
    model, root: Path | str, *, n: int, steps: int, seed: int = 0, sheet: Path | None = None
) -> dict[str, float]:
    """A tiny model (pipelines.tiny) on the first n held-out sketches, each captioned with every colour of COLOURS:
    colour hit rate (the dominant colour of the saturated pixels is the prompted one; chance = 1 / len(COLOURS)) and
    shape IoU (painted area against the shape's fill mask). `sheet`: also save a PNG, one row per sketch (sketch,
    then one picture per colour)."""
    import torch

    from pipelines.tiny import sample_images

    root = Path(root)
    with np.load(root / "heldout.npz") as arrays:
        sketch, mask, index = arrays["sketch"][:n], arrays["mask"][:n], arrays["caption_index"][:n]
    with np.load(root / "captions.npz") as arrays:
        texts, embeddings = list(arrays["text"]), torch.from_numpy(arrays["embedding"].astype(np.float32))
    names = list(COLOURS)
    shapes = [texts[i].split()[-1] for i in index]
    prompts = [f"a {colour} {shape}" for shape in shapes for colour in names]
    text = embeddings[[texts.index(p) for p in prompts]]
    seeds = [seed + k for k in range(len(prompts))]
    images = sample_images(
        model, np.repeat(sketch, len(names), axis=0), text, steps=steps, seeds=seeds, progress="score"
    )
    masks = np.repeat(mask, len(names), axis=0)
    hits = [got == want for got, want in zip(dominant_colour(images, names), names * n, strict=True)]
    iou = shape_agreement(images, masks)
    if sheet is not None:
        from PIL import Image

        k = len(names)
        tiles = [[np.repeat(sketch[i][..., None], 3, axis=-1), *images[i * k : (i + 1) * k]] for i in range(min(n, 8))]
        rows = [np.concatenate(row, axis=1) for row in tiles]
        Image.fromarray(np.concatenate(rows, axis=0)).save(sheet)
    return {"colour_hit_rate": float(np.mean(hits)), "chance": 1 / len(names), "shape_iou": iou, "steps": steps}


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: write a shapes folder, or score a model on one; prints a JSON object on its last line."""
    parser = argparse.ArgumentParser(prog="python -m tests.distillation.shapes", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser("write", help="draw a shapes folder")
    write.add_argument("out", type=Path)
    write.add_argument("--train", type=int, default=2000)
    write.add_argument("--heldout", type=int, default=200)
    write.add_argument("--size", type=int, default=256)
    write.add_argument("--seed", type=int, default=0)
    grade = commands.add_parser("score", help="colour hit rate and shape IoU of a save_tiny folder")
    grade.add_argument("model", type=Path)
    grade.add_argument("data", type=Path)
    grade.add_argument("--n", type=int, default=20)
    grade.add_argument("--steps", type=int, default=16)
    grade.add_argument("--sheet", type=Path, default=None, help="also save a contact sheet (PNG)")
    args = parser.parse_args(argv)
    if args.command == "write":
        write_shapes(args.out, train=args.train, heldout=args.heldout, size=args.size, seed=args.seed)
        print(json.dumps({"out": str(args.out), "train": args.train, "heldout": args.heldout, "size": args.size}))
        return 0
    from pipelines.tiny import load_tiny

    result = score(load_tiny(args.model), args.data, n=args.n, steps=args.steps, sheet=args.sheet)
    print(json.dumps({"model": str(args.model), **result}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
