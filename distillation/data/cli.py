"""The data commands: fetch | prepare | folder | teacher-pool | sheet; each prints a JSON report on its last line.

python -m distillation.data fetch                      # npm pack / apt-get download + dpkg-deb into data/cache
python -m distillation.data prepare --resolution 256   # -> data/sketch_tiny/256/{train,heldout}.npz + manifest
python -m distillation.data sheet --data data/sketch_tiny/256   # contact sheet of random train pairs
python -m distillation.data folder PATH --resolution 256 --sketch canny   # your images (+ .txt captions) -> pairs
python -m distillation.data teacher-pool               # the teacher's pictures for training sketches (pool.py)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from distillation.config import DATA_SKETCHES as FOLDER_SKETCHES
from distillation.data.errors import DataError
from distillation.data.folders import FOLDER_CACHE, folder_summary, prepare_folder
from distillation.data.pairs import contact_sheet
from distillation.data.prepare import DEFAULT_OUT, EDGE_SHARE, prepare
from distillation.data.sources import DEFAULT_CACHE, SOURCES, fetch_source, source_record
from distillation.pool import build_teacher_pool
from pipelines.tiny.weights import CONFIG_NAME


def directory_size(path: Path) -> int:
    """Bytes under a folder."""
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def teacher_resolution(teacher: Path) -> int:
    """The side a tiny teacher folder draws at (its config.json), which names the prepared pairs it pools."""
    try:
        return int(json.loads((Path(teacher) / CONFIG_NAME).read_text())["resolution"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"{teacher}: no readable {CONFIG_NAME} with a resolution ({error}); give --data") from error


def parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m distillation.data", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_p = commands.add_parser("fetch", help="download and unpack the data packages (npm, apt), check licences")
    fetch_p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    fetch_p.add_argument("--sources", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    prep = commands.add_parser("prepare", help="render, draw sketches, caption, embed, split by concept, write")
    prep.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    prep.add_argument("--out", type=Path, default=DEFAULT_OUT)
    prep.add_argument("--resolution", type=int, default=256, help="side in pixels (the model's native size)")
    prep.add_argument("--sources", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    prep.add_argument("--heldout-fraction", type=float, default=0.04, help="share of concepts held out")
    prep.add_argument("--edges", default="auto", choices=["auto", "both", "hed", "canny"], help="edge sketches' lines")
    prep.add_argument("--edge-share", type=float, default=EDGE_SHARE, help="share of edge (not free-hand) sketches")
    prep.add_argument("--hed-scale", type=float, default=1.0, help="lines are found at this multiple of --resolution")
    prep.add_argument("--stroke", type=float, default=None, help="canvas brush width (default: sampled per drawing)")
    prep.add_argument("--max-per-source", type=int, default=None, help="at most this many items per source")
    prep.add_argument("--seed", type=int, default=0, help="seeds every random choice (with each item's id)")
    prep.add_argument("--timeout", type=float, default=20.0, help="seconds allowed to read one file")
    prep.add_argument("--threads", type=int, default=None, help="torch threads (1 is fastest on a busy machine)")
    prep.add_argument("--workers", type=int, default=1, help="processes drawing items (same result for any number)")
    folder_p = commands.add_parser("folder", help="prepare a folder of images with optional same-name .txt captions")
    folder_p.add_argument("path", type=Path, help="the folder (searched recursively)")
    folder_p.add_argument("--resolution", type=int, default=256, help="side in pixels: the teacher's sample size")
    folder_p.add_argument("--sketch", default="canny", choices=list(FOLDER_SKETCHES), help="line extractor")
    folder_p.add_argument("--cache", type=Path, default=FOLDER_CACHE)
    pool_p = commands.add_parser("teacher-pool", help="the teacher's pictures for training sketches (a split)")
    pool_p.add_argument("--data", type=Path, default=None, help="prepared pairs (default: the teacher's resolution's)")
    pool_p.add_argument("--teacher", type=Path, default=Path("assets/models/sketch-tiny-teacher"))
    pool_p.add_argument("--n", type=int, default=2000, help="training items to draw (seeded)")
    pool_p.add_argument("--steps", type=int, default=8, help="the teacher's Euler steps")
    pool_p.add_argument("--seed", type=int, default=0)
    pool_p.add_argument("--threads", type=int, default=None, help="torch threads")
    pool_p.add_argument("--device", default="cpu", help="torch device for the teacher (cuda: seconds, not minutes)")
    sheet_p = commands.add_parser("sheet", help="contact sheet PNG of random prepared pairs")
    sheet_p.add_argument("--data", type=Path, default=DEFAULT_OUT / "256")
    sheet_p.add_argument("--out", type=Path, default=Path("assets/examples/sketch_tiny_pairs.png"))
    sheet_p.add_argument("--split", default="train")
    sheet_p.add_argument("--n", type=int, default=16)
    sheet_p.add_argument("--seed", type=int, default=0)
    return parser


def run(args: argparse.Namespace) -> dict:
    """One command -> its report."""
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    if args.command == "fetch":
        report = {}
        for name in args.sources:
            root = fetch_source(SOURCES[name], args.cache)
            report[name] = {**source_record(args.cache, name), "bytes": directory_size(root)}
        return report
    if args.command == "prepare":
        manifest = prepare(
            cache=args.cache,
            out=args.out,
            resolution=args.resolution,
            sources=args.sources,
            heldout_fraction=args.heldout_fraction,
            edges=args.edges,
            edge_share=args.edge_share,
            hed_scale=args.hed_scale,
            stroke=args.stroke,
            max_per_source=args.max_per_source,
            seed=args.seed,
            timeout=args.timeout,
            workers=args.workers,
        )
        target = args.out / str(args.resolution)
        return {
            "out": str(target),
            "splits": manifest["splits"],
            "concepts": {"train": manifest["train_concepts"], "heldout": manifest["heldout_concepts"]},
            "sketch_kinds": manifest["sketch"]["kinds"],
            "counts": {name: info["counts"] for name, info in manifest["sources"].items()},
            "skip_reasons": {name: info["skip_reasons"] for name, info in manifest["sources"].items()},
            "unique_captions": manifest["text_encoder"]["unique_captions"],
            "bytes": directory_size(target),
        }
    if args.command == "folder":
        target, manifest = prepare_folder(args.path, resolution=args.resolution, sketch=args.sketch, cache=args.cache)
        print(folder_summary(manifest), file=sys.stderr)
        return {
            "out": str(target),
            "reused": manifest["reused"],
            "counts": manifest["counts"],
            "files_by_reason": manifest["files_by_reason"],
        }
    if args.command == "teacher-pool":
        data = args.data or DEFAULT_OUT / str(teacher_resolution(args.teacher))
        return build_teacher_pool(data, args.teacher, n=args.n, steps=args.steps, seed=args.seed, device=args.device)
    sheet = contact_sheet(args.data, n=args.n, seed=args.seed, split=args.split)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    return {"out": str(args.out), "bytes": args.out.stat().st_size, "size": sheet.size}


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: 0 with a JSON report on the last line of stdout, 2 with a plain-word error on stderr."""
    args = parser().parse_args(argv)
    started = time.perf_counter()
    try:
        report = run(args)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps({"command": args.command, **report}))
    return 0
