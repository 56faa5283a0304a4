"""Fine-tuning on your own pictures, measured: a scripted style folder, the Distill tab's default fine-tune recipe in
a time budget, and FD-EffNetLite0 / edge F1 of the base and the fine-tuned student on held-out sketches.

python -m bench.finetune --json [--minutes 10] [--sheet assets/examples/finetune_sheet.png]

The style folder is made here, seeded, with no download: clip-art scenes (houses, suns, trees, fish, ...; flat
colours, dark outlines on white, like the bundled training data) recoloured to one limited palette (navy ink, rust,
mustard, teal) on textured cream paper, which the bundled data never shows. Its file names are the captions
("a_red_house_and_a_sun_07.png"), every fourth picture has a .txt caption instead. The held-out sketches are other
scenes of the same generator, before the style: their lines drawn by the folder preparation's own extractor.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
SIZE = 128  # scenes' default side; the bench draws them at the base model's own resolution
# clip-art colours of the source scenes, and the style's palette (risograph-like: ink, three spot colours, paper)
COLOURS = {
    "red": (220, 40, 40),
    "yellow": (250, 210, 30),
    "green": (60, 170, 60),
    "blue": (40, 110, 230),
    "orange": (245, 140, 30),
    "pink": (240, 120, 180),
    "brown": (140, 85, 40),
}
PALETTE = np.array([(29, 43, 83), (200, 85, 61), (224, 164, 88), (42, 157, 143), (242, 232, 207)], np.float32)
PAPER = 4  # index of the paper colour in PALETTE


# ---- scenes -------------------------------------------------------------------------------------------------------


def _colour(rng: np.random.Generator, *avoid: str) -> tuple[str, tuple[int, int, int]]:
    name = str(rng.choice([c for c in COLOURS if c not in avoid]))
    return name, COLOURS[name]


def _house(d: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, y: float, s: float, w: int) -> str:
    name, wall = _colour(rng)
    _, roof = _colour(rng, name)
    d.rectangle((x - s * 0.4, y - s * 0.1, x + s * 0.4, y + s * 0.5), fill=wall, outline="black", width=w)
    d.polygon(
        [(x - s * 0.5, y - s * 0.1), (x, y - s * 0.5), (x + s * 0.5, y - s * 0.1)], fill=roof, outline="black", width=w
    )
    d.rectangle((x - s * 0.1, y + s * 0.2, x + s * 0.1, y + s * 0.5), fill=(250, 250, 250), outline="black", width=w)
    return f"a {name} house"


def _sun(d: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, y: float, s: float, w: int) -> str:
    r = s * 0.28
    for k in range(8):
        a = k * np.pi / 4
        d.line(
            (x + np.cos(a) * r * 1.2, y + np.sin(a) * r * 1.2, x + np.cos(a) * r * 1.7, y + np.sin(a) * r * 1.7),
            fill="black",
            width=w,
        )
    d.ellipse((x - r, y - r, x + r, y + r), fill=COLOURS["yellow"], outline="black", width=w)
    return "a sun"


def _tree(d: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, y: float, s: float, w: int) -> str:
    d.rectangle((x - s * 0.08, y, x + s * 0.08, y + s * 0.5), fill=COLOURS["brown"], outline="black", width=w)
    name, crown = ("green", COLOURS["green"]) if rng.random() < 0.7 else ("orange", COLOURS["orange"])
    d.ellipse((x - s * 0.35, y - s * 0.5, x + s * 0.35, y + s * 0.1), fill=crown, outline="black", width=w)
    return f"a {name} tree"


def _flower(d: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, y: float, s: float, w: int) -> str:
    d.line((x, y, x, y + s * 0.5), fill=COLOURS["green"], width=w + 1)
    name, petal = _colour(rng, "green", "brown", "yellow")
    r = s * 0.12
    for k in range(5):
        a = k * 2 * np.pi / 5
        cx, cy = x + np.cos(a) * r * 1.5, y + np.sin(a) * r * 1.5
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=petal, outline="black", width=w)
    d.ellipse((x - r, y - r, x + r, y + r), fill=COLOURS["yellow"], outline="black", width=w)
    return f"a {name} flower"


def _fish(d: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, y: float, s: float, w: int) -> str:
    name, body = _colour(rng)
    d.polygon(
        [(x + s * 0.2, y), (x + s * 0.5, y - s * 0.2), (x + s * 0.5, y + s * 0.2)], fill=body, outline="black", width=w
    )
    d.ellipse((x - s * 0.45, y - s * 0.22, x + s * 0.3, y + s * 0.22), fill=body, outline="black", width=w)
    d.ellipse((x - s * 0.3, y - s * 0.08, x - s * 0.2, y + s * 0.02), fill="black")
    return f"a {name} fish"


def _car(d: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, y: float, s: float, w: int) -> str:
    name, body = _colour(rng)
    d.rectangle((x - s * 0.5, y - s * 0.05, x + s * 0.5, y + s * 0.25), fill=body, outline="black", width=w)
    d.rectangle((x - s * 0.25, y - s * 0.3, x + s * 0.2, y - s * 0.05), fill=(200, 230, 250), outline="black", width=w)
    for cx in (x - s * 0.3, x + s * 0.3):
        d.ellipse(
            (cx - s * 0.13, y + s * 0.15, cx + s * 0.13, y + s * 0.41), fill=(40, 40, 40), outline="black", width=w
        )
    return f"a {name} car"


def _balloon(d: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, y: float, s: float, w: int) -> str:
    name, body = _colour(rng, "brown")
    d.line((x, y + s * 0.2, x + s * 0.05, y + s * 0.6), fill="black", width=max(1, w - 1))
    d.ellipse((x - s * 0.22, y - s * 0.35, x + s * 0.22, y + s * 0.2), fill=body, outline="black", width=w)
    return f"a {name} balloon"


def _heart(d: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, y: float, s: float, w: int) -> str:
    name, body = _colour(rng, "brown", "green")
    t = np.linspace(0, 2 * np.pi, 60)
    hx, hy = 16 * np.sin(t) ** 3, -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    d.polygon(
        [(x + s * 0.028 * a, y + s * 0.028 * b) for a, b in zip(hx, hy, strict=True)],
        fill=body,
        outline="black",
        width=w,
    )
    return f"a {name} heart"


SHAPES: dict[str, Callable[..., str]] = {
    "house": _house,
    "sun": _sun,
    "tree": _tree,
    "flower": _flower,
    "fish": _fish,
    "car": _car,
    "balloon": _balloon,
    "heart": _heart,
}


def scene(seed: int, size: int = SIZE) -> tuple[np.ndarray, str]:
    """A seeded clip-art scene (size, size, 3) uint8 on white and its caption: one or two objects."""
    rng = np.random.default_rng(seed)
    big = size * 2  # drawn at twice the size, then reduced: smooth outlines
    image = Image.new("RGB", (big, big), "white")
    draw = ImageDraw.Draw(image)
    count = 1 if rng.random() < 0.5 else 2
    names = rng.choice(list(SHAPES), size=count, replace=False)
    spots = [(0.5, 0.5)] if count == 1 else [(0.3, 0.55), (0.72, 0.4)]
    width = max(2, big // 64)
    captions = []
    for name, (fx, fy) in zip(names, spots, strict=True):
        s = big * (0.7 if count == 1 else 0.42) * rng.uniform(0.85, 1.1)
        x, y = big * (fx + rng.uniform(-0.04, 0.04)), big * (fy + rng.uniform(-0.04, 0.04))
        captions.append(SHAPES[str(name)](draw, rng, x, y, s, width))
    picture = np.asarray(image.resize((size, size), Image.Resampling.LANCZOS))
    return picture, " and ".join(captions)


def stylise(image: np.ndarray, seed: int) -> np.ndarray:
    """One limited palette on textured paper: every pixel to its nearest palette colour (white to cream paper), then
    a seeded paper grain and fibres multiplied in."""
    rng = np.random.default_rng(seed + 10_000)
    pixels = image.astype(np.float32)
    nearest = ((pixels[..., None, :] - PALETTE_SOURCE[None, None]) ** 2).sum(-1).argmin(-1)
    out = PALETTE[nearest]
    h, w = image.shape[:2]
    grain = Image.fromarray((rng.normal(128, 40, (h // 4, w // 4))).clip(0, 255).astype(np.uint8))
    grain = np.asarray(grain.resize((w, h), Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(1)))
    fibres = rng.normal(0, 1, (h, w)).astype(np.float32)
    texture = 1 + 0.10 * (grain.astype(np.float32) / 128 - 1) + 0.04 * fibres
    return (out * texture[..., None]).clip(0, 255).round().astype(np.uint8)


# the source colour each palette entry takes over: dark ink <- black/blue/brown, rust <- red/pink, mustard <-
# yellow/orange, teal <- green, paper <- white and light grey
PALETTE_SOURCE = np.array([(20, 20, 60), (225, 70, 90), (250, 180, 40), (60, 170, 90), (250, 250, 250)], np.float32)


def style_folder(folder: Path, n: int, *, seed: int = 0, size: int = SIZE) -> list[Path]:
    """Write n styled pictures into `folder`: captions in the file names, every fourth also a .txt caption."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n):
        picture, caption = scene(seed + k, size)
        stem = "_".join(caption.split())[:80] + f"_{k:02d}"
        path = folder / f"{stem}.png"
        Image.fromarray(stylise(picture, seed + k)).save(path)
        if k % 4 == 3:
            path.with_suffix(".txt").write_text(f"{caption}, printed in four inks on cream paper\n")
        paths.append(path)
    return paths


# ---- the measurement ------------------------------------------------------------------------------------------------


def held_out(folder: Path, cache: Path, n: int, *, seed: int, size: int = SIZE) -> dict[str, np.ndarray]:
    """n held-out scenes (seeds apart from the style folder's), prepared like a person's folder: sketches by the
    preparation's extractor, captions from the file names. Returns sketches (n, h, w), text (n, 384), images."""
    import torch

    from distillation.data import SketchPairs, prepare_folder
    from distillation.jobs import FINETUNE_PRESET, load_preset

    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        picture, caption = scene(seed + k, size)
        Image.fromarray(picture).save(folder / f"{'_'.join(caption.split())}_{k:03d}.png")
    sketch = load_preset(FINETUNE_PRESET, [f"--data.path={json.dumps(str(folder))}"]).data.sketch
    root, _ = prepare_folder(folder, resolution=size, sketch=sketch, cache=cache, progress=False, name_captions=True)
    pairs = SketchPairs(root)
    items = [pairs[i] for i in range(len(pairs))]
    return {
        "sketch": np.stack([(255 * (1 - it["sketch"][0].numpy())).round().astype(np.uint8) for it in items]),
        "text": torch.stack([it["text_embedding"] for it in items]),
        "image": np.stack(
            [((it["image"].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8) for it in items]
        ),
    }


def contact_sheet(sketches: np.ndarray, rows: dict[str, np.ndarray], style: np.ndarray, n: int = 8) -> Image.Image:
    """Columns of held-out examples: sketch, then one row per model; a last row of style-folder pictures."""
    from bench.quality import grid

    named = {**rows, "style folder (examples)": style[:n]}
    return grid(sketches[:n], {k: v[:n] for k, v in named.items()}, rows=n)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: list[str] | None = None) -> int:
    import torch

    from distillation.jobs import FINETUNE_PRESET, JobStore
    from distillation.metrics import FD_LABEL, fd_effnet_lite0, sketch_fidelity
    from pipelines.hed import HED
    from pipelines.registry import Registry
    from pipelines.tiny import load_tiny, sample_images
    from ui.finetune_form import estimate_words, finetune_overrides

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="the fine-tune's time budget (the tab's)")
    parser.add_argument("--n-style", type=int, default=40, help="pictures in the style folder")
    parser.add_argument("--n-heldout", type=int, default=64, help="held-out sketches scored")
    parser.add_argument("--model", default="sketch-tiny", help="the base student (the preset's student.init)")
    parser.add_argument("--edge-method", default="hed" if HED.available() else "canny", choices=["hed", "canny"])
    parser.add_argument("--sheet", type=Path, default=None, help="save held-out sketch | base | fine-tuned | style")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the folder, run and model here")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    experiment = "a recipe experiment: an override of the preset (e.g. method.recon_weight=3)"
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=experiment)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="sketchsprint-finetune-") as scratch:
        work = (args.workdir or Path(scratch)).resolve()
        style_dir, models = work / "style", work / "models"
        size = Registry().get(args.model).resolution  # the base model's native size: 256 px for sketch-tiny v2
        style_folder(style_dir, args.n_style, seed=0, size=size)
        style = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(style_dir.glob("*.png"))])
        data = held_out(work / "heldout", work / "cache", args.n_heldout, seed=100_000, size=size)
        load_before = load_average()

        # the tab's default path: a quick estimate turns the budget into steps, then one training process
        store = JobStore(work / "jobs", Registry(models), start=False, gpus=0, python=sys.executable)
        env_threads = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
        os.environ["OMP_NUM_THREADS"] = env_threads["OMP_NUM_THREADS"]
        started = time.perf_counter()
        extra = [f"--{item}" for item in args.set]
        estimate = store.quick_estimate(
            FINETUNE_PRESET, [*extra, f"--data.path={json.dumps(str(style_dir))}"], timeout=600
        )
        estimate_s = time.perf_counter() - started
        overrides = [*extra, *finetune_overrides(str(style_dir), minutes=args.minutes, estimate=estimate)]
        steps = int(overrides[-1].split("=")[1])
        argv_train = [
            *[sys.executable, "-m", "distillation.train", str(FINETUNE_PRESET), *overrides],
            *[f"--data.cache={json.dumps(str(work / 'cache'))}", f"--export.models_dir={json.dumps(str(models))}"],
            *["--export.name=my-style", "--out", str(work / "run"), "--progress", "json"],
        ]
        started = time.perf_counter()
        done = subprocess.run(argv_train, cwd=ROOT, env=env_threads, capture_output=True, text=True)
        train_s = time.perf_counter() - started
        if done.returncode != 0:
            print(done.stdout[-2000:] + done.stderr[-2000:], file=sys.stderr)
            raise SystemExit(f"the fine-tune job failed (exit code {done.returncode})")
        status = json.loads((work / "run" / "status.json").read_text())
        load_after = load_average()

        base = load_tiny(Registry().get(args.model).component_path("weights"))
        tuned = load_tiny(models / "my-style")
        seeds = range(len(data["sketch"]))
        outputs = {
            name: sample_images(model, data["sketch"], data["text"], steps=1, seeds=seeds)
            for name, model in (("base", base), ("fine-tuned", tuned))
        }
        fd = {k: fd_effnet_lite0(v, style)["fd_effnet_lite0"] for k, v in outputs.items()}
        fd["held-out scenes, unstyled (reference)"] = fd_effnet_lite0(data["image"], style)["fd_effnet_lite0"]
        styled = np.stack([stylise(image, 100_000 + k) for k, image in enumerate(data["image"])])
        fd["held-out scenes, styled (floor)"] = fd_effnet_lite0(styled, style)["fd_effnet_lite0"]
        f1 = {k: sketch_fidelity(v, data["sketch"], method=args.edge_method)["edge_f1"] for k, v in outputs.items()}
        minutes = train_s / 60  # the job's wall time, process start to exit (the estimate runs before Start)
        report = {
            "bench": "finetune",
            "model": args.model,
            "recipe": f"{FINETUNE_PRESET.name} (paired LADD from {args.model})" + "".join(f" {o}" for o in extra),
            "device": "cpu",
            "threads": args.threads,
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": load_after,
            "resolution": size,
            "steps": 1,
            "budget_minutes": args.minutes,
            "n_style": len(style),
            "n_heldout": len(data["sketch"]),
            "estimate_s": round(estimate_s, 1),
            "estimate": estimate_words(estimate, steps, args.minutes),
            "planned_steps": steps,
            "trained_steps": status.get("step"),
            "stopped_by": status.get("reason", "max_steps"),
            "minutes": round(minutes, 2),
            "fd_label": FD_LABEL + " against the style folder's pictures",
            "edge_method": args.edge_method,
            "fd_effnet_to_style": fd,
            "edge_f1": f1,
            "fd_drop": round(1 - fd["fine-tuned"] / fd["base"], 3),
            "checks": {
                "fd_drops_30pct": fd["fine-tuned"] <= 0.7 * fd["base"],
                "edge_f1_ge_0.9x_base": f1["fine-tuned"] >= 0.9 * f1["base"],
                "within_budget": minutes <= args.minutes,
            },
        }
        if args.sheet:
            args.sheet.parent.mkdir(parents=True, exist_ok=True)
            contact_sheet(data["sketch"], outputs, style).save(args.sheet)
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
