"""A folder of the person's own images (+ same-stem .txt captions) -> prepared pairs in the layout SketchPairs reads.

prepare_folder() writes train.npz, captions.npz, pairs.jsonl and manifest.json into data/cache/folders/<name>-<key>/,
keyed by the file list, sizes, mtimes and settings, so a job, its estimate probe and later jobs on the unchanged
folder share one copy (data.kind = "image_folder" in a job does it on first use). Sketches are the images' lines
(Canny, the app's line-art filter, or HED) drawn through the canvas rasteriser.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from distillation.config import DATA_SKETCHES as FOLDER_SKETCHES
from distillation.data.captions import TEXT_ENCODER, embed_captions
from distillation.data.errors import DataError
from distillation.data.prepare import save_npz
from distillation.data.render import time_limit
from distillation.data.sketches import MAX_INK, MIN_INK, edge_lines, edge_sketch, ink_fraction
from distillation.pids import pid_alive
from pipelines.hed import HED, thin_edges
from pipelines.hed import INSTALL_HINT as HED_INSTALL_HINT
from pipelines.lines import aux_lines, usable_extractors
from pipelines.strokes import CANVAS_SIZE
from pipelines.text import TEXT_DIM

FOLDER_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
FOLDER_CACHE = Path(__file__).resolve().parents[2] / "data" / "cache" / "folders"
FOLDER_FORMAT = 2  # part of the cache key: bump it when prepare_folder writes something different for the same input
MAX_FOLDER_PIXELS = 100_000_000  # larger images are skipped (decompression bombs)
NAMES_SHOWN = 5  # file names quoted in messages; the manifest lists them all
CAPTION_PROBLEMS = ("missing", "empty", "not_utf8", "unreadable")


def folder_sketches() -> tuple[str, ...]:
    """The line extractors a folder can be prepared with now: HED only when its weights are installed,
    controlnet-aux's when pipelines.lines finds their weights (or may download them)."""
    usable = usable_extractors()[0]
    return tuple(method for method in FOLDER_SKETCHES if method in usable)


def check_folder_sketch(method: str) -> None:
    """DataError for an unknown extractor, or for HED without its weights (naming the weight-free fallbacks)."""
    if method not in FOLDER_SKETCHES:
        raise DataError(f"unknown sketch extractor {method!r}; choose one of {', '.join(FOLDER_SKETCHES)}")
    if method == "hed" and not HED.available():
        raise DataError(
            f"sketch extractor 'hed' needs the HED weights, which are not installed ({HED_INSTALL_HINT}); "
            "use 'canny' (or 'lineart') instead"
        )
    if method.startswith("aux_"):
        usable, why = usable_extractors()
        if method not in usable:
            raise DataError(f"sketch extractor {method!r}: {why[method]}; use 'canny' (or 'lineart') instead")


def list_images(root: Path) -> list[Path]:
    """Images (FOLDER_SUFFIXES, any case) in `root` and its subfolders, sorted by relative path; hidden files and
    folders (a leading '.') are left out. DataError when `root` does not exist or is not a folder."""
    if not root.exists():
        raise DataError(f"{root} does not exist")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder (give the folder that holds the images)")
    found = []
    for folder, subfolders, files in os.walk(root):  # unreadable subfolders are passed over; links are not followed
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        found += [
            Path(folder) / name
            for name in files
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in FOLDER_SUFFIXES
        ]
    return sorted(found, key=lambda path: path.relative_to(root).as_posix())


def read_caption(image: Path) -> tuple[str, str]:
    """The caption beside an image (same stem, .txt; whitespace collapsed) and what was wrong with it: "" (nothing),
    "missing", "empty", "not_utf8" (decoded with U+FFFD replacement characters) or "unreadable"."""
    try:
        data = image.with_suffix(".txt").read_bytes()
    except FileNotFoundError:
        return "", "missing"
    except OSError:
        return "", "unreadable"
    try:
        text, problem = data.decode("utf-8-sig"), ""
    except UnicodeDecodeError:
        text, problem = data.decode("utf-8", errors="replace"), "not_utf8"
    text = " ".join(text.split())
    return text, problem or ("" if text else "empty")


def caption_from_name(image: Path) -> str:
    """A caption made from an image's file name: "red_house-02.png" -> "red house" (separators to spaces, camel
    case split, trailing numbers and camera-style names such as IMG_1234 dropped); "" when nothing is left."""
    stem = re.sub(r"([a-z])([A-Z])", r"\1 \2", image.stem)
    words = [word for word in re.split(r"[\s_\-.+,()\[\]]+", stem) if word]
    while words and (words[-1].isdigit() or re.fullmatch(r"(?i)(img|dsc|dscn|pxl|photo|image|scan)?\d*", words[-1])):
        words.pop()
    if words and re.fullmatch(r"(?i)img|dsc|dscn|pxl|scan", words[0]):
        words = words[1:]
        while words and words[0].isdigit():
            words.pop(0)
    return " ".join(words).lower()


def load_square(path: Path, size: int) -> np.ndarray:
    """An image file -> (size, size, 3) uint8 RGB: EXIF orientation applied, transparency flattened on white, the
    centred square cropped and resized. Raises on an unreadable, truncated or oversized file."""
    with Image.open(path) as opened:
        if opened.width * opened.height > MAX_FOLDER_PIXELS:
            raise ValueError(f"{opened.width}x{opened.height}: over {MAX_FOLDER_PIXELS // 1_000_000} megapixels")
        opened.draft("RGB", (size, size))  # JPEG: decode at the smallest scale that is still at least size
        opened.load()
        try:
            image = ImageOps.exif_transpose(opened)
        except Exception:  # a damaged EXIF block: keep the pixels as stored
            image = opened
        rgba = image.convert("RGBA")
    flat = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    side = min(flat.size)
    left, top = (flat.width - side) // 2, (flat.height - side) // 2
    square = flat.crop((left, top, left + side, top + side))
    return np.asarray(square.resize((size, size), Image.Resampling.LANCZOS))


def folder_lines(rgb: np.ndarray, method: str) -> np.ndarray:
    """RGB (h, w, 3) -> one-pixel lines (bool): HED or Canny as for the bundled sets, or the app's line-art filter
    (pipelines.preprocess.extract_lines) thinned the same way."""
    if method == "lineart":
        from pipelines.preprocess import extract_lines

        return thin_edges((255 - extract_lines(rgb, "lineart")[..., 0]).astype(np.float32) / 255.0)
    if method.startswith("aux_"):  # controlnet-aux's HED, PiDiNet or lineart (pipelines.lines)
        return aux_lines(rgb, method)
    return edge_lines(rgb, method)


def folder_pair(path: Path, size: int, *, work_size: int, method: str, stroke: float) -> tuple[np.ndarray, np.ndarray]:
    """One image file -> (image (size, size, 3), sketch (size, size) in the canvas convention, 0 = ink), the lines
    drawn through the canvas rasteriser `stroke` model pixels wide."""
    work = load_square(path, work_size)
    image = cv2.resize(work, (size, size), interpolation=cv2.INTER_AREA) if work_size != size else work
    return image, edge_sketch(folder_lines(work, method), size, width=stroke * CANVAS_SIZE / size)


def folder_key(root: Path, images: Sequence[Path], settings: dict) -> str:
    """sha256 of the preparation settings and every image's and caption's relative path, size and mtime."""
    digest = hashlib.sha256(
        json.dumps({"format": FOLDER_FORMAT, "folder": str(root), **settings}, sort_keys=True).encode()
    )
    for path in images:
        entry: list = [path.relative_to(root).as_posix()]
        for file in (path, path.with_suffix(".txt")):
            try:
                stat = file.stat()
                entry += [stat.st_size, stat.st_mtime_ns]
            except OSError:
                entry += [-1, -1]
        digest.update(json.dumps(entry).encode() + b"\n")
    return digest.hexdigest()


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown + (f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else "")


def folder_summary(manifest: dict) -> str:
    """One line about a prepared folder: what was used, skipped and trained without a caption, and where it is."""
    counts, files = manifest["counts"], manifest["files_by_reason"]
    parts = [
        f"{counts['used']} of {counts['images']} images in {manifest['folder']} used "
        f"({manifest['sketch']['method']} sketches, {manifest['resolution']} px)"
    ]
    if files["skipped_corrupt"]:
        parts.append(
            f"{len(files['skipped_corrupt'])} unreadable skipped: "
            f"{_names([entry['file'] for entry in files['skipped_corrupt']])}"
        )
    for reason, what in (("no_lines", "no lines found"), ("all_ink", "lines everywhere")):
        if files[reason]:
            parts.append(f"{len(files[reason])} dropped ({what}): {_names(files[reason])}")
    if files.get("caption_from_name"):
        parts.append(f"{len(files['caption_from_name'])} captioned from their file names")
    uncaptioned = counts["caption_missing"] + counts["caption_empty"] + counts["caption_unreadable"]
    if uncaptioned:
        parts.append(f"{uncaptioned} without a caption (trained with the empty prompt)")
    if files["caption_not_utf8"]:
        parts.append(
            f"{len(files['caption_not_utf8'])} captions not UTF-8 (read with replacement characters; save "
            f"them as UTF-8): {_names(files['caption_not_utf8'])}"
        )
    return "; ".join(parts)


def _remove_stale(cache: Path, keep: Path, folder: str, settings: dict) -> None:
    """Delete earlier preparations of the same folder with the same settings, and partial ones whose process died."""
    for entry in cache.iterdir():
        if entry == keep or not entry.is_dir():
            continue
        if entry.name.startswith("."):
            pid = entry.name.rpartition(".partial-")[2]
            if pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(entry, ignore_errors=True)
            continue
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            old = json.loads((entry / "manifest.json").read_text())
            if old["folder"] == folder and old["settings"] == settings:
                shutil.rmtree(entry, ignore_errors=True)


def prepare_folder(
    path: Path | str,
    *,
    resolution: int,
    sketch: str = "canny",
    cache: Path | str | None = None,
    hed_scale: float = 1.5,
    stroke: float | None = None,
    timeout: float = 30.0,
    progress: bool = True,
    name_captions: bool = False,
) -> tuple[Path, dict]:
    """A folder of images with optional same-stem .txt captions -> prepared pairs that SketchPairs reads (train.npz,
    captions.npz, pairs.jsonl, manifest.json), made once and kept in `cache` (default data/cache/folders) under a key
    of the file list, sizes, mtimes and settings. Returns (the prepared folder, its manifest plus "reused").

    Each image: centred square crop, resized to `resolution`; its sketch drawn like the bundled sets' (lines found at
    `hed_scale` x resolution, strokes resolution/64 px wide, 0 = ink on 255 = paper). A missing, empty or unreadable
    caption is the empty prompt, whose embedding is all zeros like the trainer's and the engine's unconditional text.
    Unreadable images are skipped and listed; DataError when the folder is missing, holds no images or none is usable.
    name_captions: an image with a missing or empty caption is captioned from its file name (caption_from_name).
    """
    root = Path(path).expanduser().resolve()
    check_folder_sketch(sketch)
    images = list_images(root)
    if not images:
        raise DataError(f"no images in {root} (looked for {'/'.join(FOLDER_SUFFIXES)} files there and in subfolders)")
    stroke = resolution / 64 if stroke is None else stroke
    work_size = max(resolution, round(resolution * hed_scale))
    settings = {
        "resolution": resolution,
        "sketch": sketch,
        "stroke_px": stroke,
        "work_px": work_size,
        "min_ink": MIN_INK,
        "max_ink": MAX_INK,
    }
    if name_captions:  # only then, so the cache keys of folders prepared without it stay valid
        settings["name_captions"] = True
    cache = Path(cache).expanduser().resolve() if cache else FOLDER_CACHE
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", root.name).strip("._") or "folder"
    target = cache / f"{slug[:40]}-{folder_key(root, images, settings)[:16]}"
    if (target / "manifest.json").is_file():
        return target, {**json.loads((target / "manifest.json").read_text()), "reused": True}

    started = time.perf_counter()
    files: dict[str, list] = {key: [] for key in ("skipped_corrupt", "no_lines", "all_ink")}
    files |= {f"caption_{problem}": [] for problem in CAPTION_PROBLEMS}
    files["caption_from_name"] = []
    rows = []
    bar = tqdm(
        images,
        desc=f"preparing {root.name} @{resolution}px ({sketch})",
        unit="image",
        disable=not progress,
        file=sys.stderr,
        mininterval=1.0 if sys.stderr.isatty() else 5.0,
    )
    for image_path in bar:
        name = image_path.relative_to(root).as_posix()
        try:
            with time_limit(timeout):
                image, drawn = folder_pair(image_path, resolution, work_size=work_size, method=sketch, stroke=stroke)
        except Exception as error:  # corrupt, truncated, unsupported or too large: skipped and listed, never fatal
            files["skipped_corrupt"].append({"file": name, "reason": f"{type(error).__name__}: {error}"[:200]})
            continue
        ink = ink_fraction(drawn)
        if ink < MIN_INK or ink > MAX_INK:
            files["no_lines" if ink < MIN_INK else "all_ink"].append(name)
            continue
        caption, problem = read_caption(image_path)
        if name_captions and problem in ("missing", "empty") and caption_from_name(image_path):
            caption, problem = caption_from_name(image_path), "from_name"
        if problem:
            files[f"caption_{problem}"].append(name)
        rows.append((name, caption, image, drawn))
    bar.close()
    counts = {"images": len(images), "used": len(rows), **{key: len(value) for key, value in files.items()}}
    if not rows:
        reasons = [
            f"{len(files['skipped_corrupt'])} unreadable",
            f"{len(files['no_lines'])} with no lines found",
            f"{len(files['all_ink'])} with lines everywhere",
        ]
        raise DataError(
            f"none of the {len(images)} images in {root} is usable ({', '.join(reasons)}); first "
            f"unreadable: {files['skipped_corrupt'][0]['reason'] if files['skipped_corrupt'] else '-'}"
        )

    captions = sorted({row[1] for row in rows})
    caption_index = {caption: i for i, caption in enumerate(captions)}
    embeddings = embed_captions(captions)  # "" stays zero: the unconditional text
    manifest = {
        "dataset": "image_folder",
        "folder": str(root),
        "resolution": resolution,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": settings,
        "splits": {"train": len(rows)},
        "counts": counts,
        "files_by_reason": files,
        "sketch": {
            "convention": "uint8 (n, h, w): 0 = ink, 255 = paper (black lines on white, like the canvas)",
            "method": sketch,
            "crop": "centred square, resized",
        },
        "text_encoder": {
            "name": TEXT_ENCODER,
            "dim": TEXT_DIM,
            "normalised": True,
            "unique_captions": len(captions),
            "empty_prompt": "all-zero embedding (the unconditional text)",
        },
        "sources": {"folder": {"credit": f"images from {root}", "licence": "as given by the folder's owner"}},
        "seconds": round(time.perf_counter() - started, 1),
    }
    partial = cache / f".{target.name}.partial-{os.getpid()}"
    try:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        save_npz(
            partial / "train.npz",
            sketch=np.stack([row[3] for row in rows]),
            image=np.stack([row[2] for row in rows]),
            caption_index=np.array([caption_index[row[1]] for row in rows], np.int32),
        )
        save_npz(partial / "captions.npz", text=np.array(captions, dtype=str), embedding=embeddings)
        # ASCII JSON: file names that are not valid UTF-8 (surrogate escapes) survive the round trip
        lines = [json.dumps({"file": row[0], "row": i, "caption": row[1]}) for i, row in enumerate(rows)]
        (partial / "pairs.jsonl").write_text("\n".join(lines) + "\n")
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=1))
        try:
            os.rename(partial, target)  # the folder appears complete or not at all
        except OSError:
            if not (target / "manifest.json").is_file():  # not another process finishing the same work first
                raise
            shutil.rmtree(partial, ignore_errors=True)
        _remove_stale(cache, target, str(root), settings)
    except OSError as error:
        shutil.rmtree(partial, ignore_errors=True)
        message = f"cannot write the prepared data in {cache} ({error}); set data.cache to a writable folder"
        raise DataError(message) from error
    return target, {**manifest, "reused": False}
