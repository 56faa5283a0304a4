"""Training sketches as people draw them: shapes -> polylines -> free-hand strokes -> the canvas rasteriser.

Free-hand (the default): the lines of a picture are the borders of its colour regions and its silhouette (or the
source's own line drawing, or thinned HED edges), merged to centre lines one pixel wide; they are traced into
polylines, simplified, and each becomes a stroke drawn like a hand on the canvas would: lifted at some corners,
wobbling, jittered, shifted a little, overshooting or stopping short at its ends, small interior details left out at
random, one brush width per drawing over the canvas's BRUSH_WIDTHS. Edge sketches (HED or Canny lines, kept for
"Start from a photo") are traced the same way and drawn as thin, exact strokes. Every sketch is drawn by
pipelines.strokes.render_strokes on the 512 px canvas and brought to the model's size by model_sketch: the function
the live canvas goes through.

Conventions: lines are (h, w) bool, one pixel wide, at the analysis size (the rendered picture's size); polylines are
(n, 2) float arrays of (x, y) pixel coordinates there; strokes are in canvas pixels; a sketch is (size, size) uint8,
0 = ink on 255 = paper.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from distillation.data.colours import FOREGROUND, kmeans, nearest, to_lab
from pipelines.hed import canny_lines, hed_edges, load_hed, skeletonize, thin_edges
from pipelines.strokes import BRUSH_WIDTHS, CANVAS_SIZE, Stroke, model_sketch, render_strokes

# ---- finding a picture's lines (analysis pixels are relative to a 256 px picture; other sizes scale them)
REGION_COLOURS = 6  # k of the k-means that splits a picture into colour regions
REGION_SAMPLE = 6000  # pixels that k-means sees
MIN_CONTRAST = 20.0  # Lab distance below which two neighbouring regions are shading or a gradient's bands: no line
INK_LIGHTNESS = 40.0  # Lab L below which a thin region is a drawn line (an outline), not a coloured area
INK_WIDTH = 9  # px: dark regions thinner than this are lines; their centre line is drawn once, not both borders
MERGE_WIDTH = 3  # px: borders closer than this merge into one line
# ---- turning lines into strokes (canvas pixels)
SIMPLIFY = 1.0  # approxPolyDP tolerance in analysis px: simplified polylines, as a hand draws them
MIN_STROKE = 12.0  # strokes shorter than this are specks, never drawn
P_OUTLINE = 0.97  # a silhouette stroke is drawn with this probability ("mostly outlines")
DETAIL = (0.3, 1.0)  # per drawing: how much interior detail this drawer keeps (the chance of a long interior stroke)
DETAIL_LENGTH = 150.0  # interior strokes shorter than this are kept less often, in proportion to their length
CORNER = np.deg2rad(60)  # a turn sharper than this is a corner ...
P_LIFT = 0.35  # ... where the pen is lifted with this probability
STEP = 4.0  # resampling distance along a stroke before it wobbles
WOBBLE = (0.5, 2.0)  # per drawing: amplitude in px of the slow sideways wobble
DRIFT = 0.025  # plus up to this fraction of the stroke's length (capped at DRIFT_MAX px): long strokes bow more
DRIFT_MAX = 8.0
TREMOR = 0.35  # px: per-point jitter
SHIFT = 2.0  # px: standard deviation of a stroke's offset from where it belongs
TURN = np.deg2rad(1.5)  # standard deviation of a stroke's rotation about its middle
P_OVERSHOOT, P_GAP = 0.3, 0.35  # an end overshoots its join, or stops short of it, with these probabilities
END = (3.0, 12.0)  # px: how far an end overshoots or stops short
EDGE_WIDTHS = (2.0, 4.0)  # canvas brush widths of edge sketches: thin exact lines, as "Start from a photo" gives
MIN_INK = 0.002  # sketches with less ink than this fraction of pixels are empty
MAX_INK = 0.5  # ... and with more, all black: neither looks like a drawing


def ink_fraction(sketch: np.ndarray) -> float:
    """Share of sketch pixels that are ink."""
    return float((sketch < 128).mean())


def _disk(diameter: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (diameter, diameter))


def _px(size: int, at_256: float) -> int:
    return max(1, round(at_256 * size / 256))


def merge_lines(lines: np.ndarray, width: int) -> np.ndarray:
    """Lines closer than `width` px -> one centre line (dilate, then skeletonise)."""
    if width <= 1 or not lines.any():
        return skeletonize(lines)
    return skeletonize(cv2.dilate(lines.astype(np.uint8), _disk(width)) > 0)


def outline_lines(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """A line drawing (the source's own outline of the picture) -> the centre lines of its ink."""
    ink = (alpha >= FOREGROUND) & (rgb.min(axis=2) < 128)
    return merge_lines(ink, _px(len(ink), MERGE_WIDTH))


def region_lines(rgb: np.ndarray, alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A coloured picture -> its centre lines: borders between its colour regions and the paper, with thin dark
    regions (drawn outlines) replaced by their centre lines, so no line is drawn twice."""
    size = len(alpha)
    drawing = alpha >= FOREGROUND
    labels = np.zeros(alpha.shape, np.uint8)
    if not drawing.any():
        return np.zeros(alpha.shape, bool)
    lab = to_lab(rgb)
    dark = drawing & (lab[..., 0] < INK_LIGHTNESS)
    thin = dark & ~(cv2.morphologyEx(dark.astype(np.uint8), cv2.MORPH_OPEN, _disk(_px(size, INK_WIDTH))) > 0)
    pixels = lab[drawing]
    sample = pixels[:: max(1, len(pixels) // REGION_SAMPLE)]
    centres, _ = kmeans(sample, REGION_COLOURS, rng, iterations=8)
    labels[drawing] = 1 + nearest(pixels, centres).astype(np.uint8)
    labels = cv2.medianBlur(labels, 5 if size >= 128 else 3)  # anti-aliased fringes are not regions
    colours = np.concatenate([[[100.0, 0.0, 0.0]], centres])  # label 0 is the paper
    contrast = np.sqrt(((colours[:, None] - colours[None]) ** 2).sum(-1)) >= MIN_CONTRAST
    contrast[0, :] = contrast[:, 0] = True  # the silhouette is always a line
    contrast[np.arange(len(colours)), np.arange(len(colours))] = False
    border = np.zeros(alpha.shape, bool)
    border[:, 1:] |= contrast[labels[:, 1:], labels[:, :-1]]
    border[1:, :] |= contrast[labels[1:, :], labels[:-1, :]]
    near_ink = cv2.dilate(thin.astype(np.uint8), _disk(_px(size, 3) + 2)) > 0
    lines = (border & ~near_ink) | skeletonize(thin)
    return merge_lines(lines, _px(size, MERGE_WIDTH))


def silhouette_near(alpha: np.ndarray) -> np.ndarray:
    """Pixels within a few px of the drawing's outer border (where a stroke counts as an outline)."""
    drawing = (alpha >= FOREGROUND).astype(np.uint8)
    border = cv2.morphologyEx(drawing, cv2.MORPH_GRADIENT, _disk(3)) > 0
    return cv2.dilate(border.astype(np.uint8), _disk(_px(len(alpha), 7))) > 0


def trace_polylines(lines: np.ndarray, *, min_pixels: int = 2) -> list[np.ndarray]:
    """One-pixel lines (h, w) bool -> polylines (n, 2) float (x, y) covering each line pixel once; lines split where
    they meet (the contour walk comes back over pixels it has drawn); polylines of fewer than `min_pixels` left out."""
    contours, _ = cv2.findContours(lines.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    width = lines.shape[1]
    visited = bytearray(lines.size)
    polylines = []
    for contour in contours:
        walk = contour[:, 0, :]
        current: list[int] = []
        previous = -1
        for index in (walk[:, 1] * width + walk[:, 0]).tolist():
            if visited[index]:
                if len(current) >= min_pixels:
                    polylines.append(current)
                current, previous = [], index
                continue
            if not current and previous >= 0:
                current.append(previous)  # start where the walk left drawn pixels: joins stay joined
            visited[index] = 1
            current.append(index)
        if len(current) >= min_pixels:
            polylines.append(current)
    return [
        np.stack([np.mod(p, width), np.floor_divide(p, width)], 1).astype(np.float64) for p in map(np.array, polylines)
    ]


def simplify(polyline: np.ndarray, tolerance: float = SIMPLIFY) -> np.ndarray:
    """Douglas-Peucker (cv2.approxPolyDP) at `tolerance` px; a polyline whose ends meet stays closed."""
    closed = len(polyline) > 3 and np.abs(polyline[0] - polyline[-1]).max() <= 1.5
    points = cv2.approxPolyDP(polyline.astype(np.float32)[:, None, :], tolerance, closed)[:, 0, :]
    points = points.astype(np.float64)
    return np.concatenate([points, points[:1]]) if closed and len(points) > 2 else points


def to_canvas(polyline: np.ndarray, size: int) -> np.ndarray:
    """Pixel coordinates of a `size` px picture -> canvas pixel coordinates (pixel centres map to pixel centres)."""
    scale = CANVAS_SIZE / size
    return (polyline + 0.5) * scale - 0.5


def _arc(points: np.ndarray) -> np.ndarray:
    step = np.diff(points, axis=0)
    return np.concatenate([[0.0], np.cumsum(np.hypot(step[:, 0], step[:, 1]))])


def length(points: np.ndarray) -> float:
    """Arc length of a polyline."""
    step = np.diff(points, axis=0)
    return float(np.hypot(step[:, 0], step[:, 1]).sum())


def resample(points: np.ndarray, step: float) -> np.ndarray:
    """Points every `step` px along a polyline (its ends kept)."""
    arc = _arc(points)
    if arc[-1] <= 0:
        return points[:1]
    at = np.linspace(0.0, arc[-1], max(2, int(np.ceil(arc[-1] / step)) + 1))
    return np.stack([np.interp(at, arc, points[:, 0]), np.interp(at, arc, points[:, 1])], axis=1)


def split_at_corners(points: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """A simplified polyline -> pieces, lifting the pen at some of its sharp corners (P_LIFT each)."""
    if len(points) < 3:
        return [points]
    before, after = points[1:-1] - points[:-2], points[2:] - points[1:-1]
    cosine = (before * after).sum(1) / (np.linalg.norm(before, axis=1) * np.linalg.norm(after, axis=1) + 1e-9)
    corners = np.flatnonzero((np.arccos(np.clip(cosine, -1, 1)) > CORNER) & (rng.random(len(cosine)) < P_LIFT)) + 1
    return [points[a : b + 1] for a, b in zip([0, *corners], [*corners, len(points) - 1], strict=True)]


def _end(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Overshoot past the first point along the stroke's direction there, stop short of it, or neither."""
    draw, distance = rng.random(), rng.uniform(*END)
    if draw < P_OVERSHOOT:
        direction = points[0] - points[min(2, len(points) - 1)]
        norm = np.linalg.norm(direction)
        return np.concatenate([[points[0] + direction / norm * distance], points]) if norm > 0 else points
    if draw < P_OVERSHOOT + P_GAP:
        keep = int(distance // STEP)
        return points[keep:] if len(points) - keep >= 3 else points
    return points


def wobble(points: np.ndarray, rng: np.random.Generator, *, amplitude: float) -> np.ndarray:
    """A hand's version of a polyline (canvas px): resampled, bowed and wobbled sideways, shifted and turned a little,
    its ends overshooting or stopping short, every point jittered."""
    points = resample(points, STEP)
    if len(points) < 2:
        return points
    arc = _arc(points)
    tangent = np.empty_like(points)
    tangent[1:-1] = points[2:] - points[:-2]
    tangent[0], tangent[-1] = points[1] - points[0], points[-1] - points[-2]
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    normal /= np.hypot(normal[:, :1], normal[:, 1:]) + 1e-9
    bow_size, weights, cycles, phases = (
        rng.uniform(-1, 1),
        rng.uniform(0.3, 1.0, 2),
        rng.uniform(0.3, 1.2, 2),
        rng.uniform(0, 2 * np.pi, 2),
    )
    bow = min(DRIFT * arc[-1], DRIFT_MAX) * bow_size * np.sin(np.pi * arc / max(arc[-1], 1e-9))
    waves = weights @ np.sin(2 * np.pi * cycles[:, None] * arc[None] / 100.0 + phases[:, None])
    points = points + normal * (bow + amplitude * waves)[:, None]
    middle = points.mean(0)
    angle = rng.normal(0.0, TURN)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = (points - middle) @ rotation.T + middle + rng.normal(0.0, SHIFT, 2)
    points = _end(_end(points, rng)[::-1], rng)[::-1]
    return points + rng.normal(0.0, TREMOR, points.shape)


def freehand_strokes(
    polylines: Sequence[np.ndarray],
    outline: Sequence[bool],
    size: int,
    rng: np.random.Generator,
    *,
    width: float | None = None,
) -> list[Stroke]:
    """A picture's polylines (pixels of a `size` px picture) and which of them lie on its silhouette -> the strokes a
    person would draw: mostly the outline (the longest line always), interior details kept at random (short ones less
    often), one brush width
    (sampled log-uniformly over BRUSH_WIDTHS unless given), each stroke wobbled."""
    low, high = BRUSH_WIDTHS
    width = float(np.exp(rng.uniform(np.log(low), np.log(high)))) if width is None else width
    detail, amplitude = rng.uniform(*DETAIL), rng.uniform(*WOBBLE)
    longest = max(range(len(polylines)), key=lambda i: len(polylines[i]), default=-1)
    strokes = []
    for i, (polyline, on_outline) in enumerate(zip(polylines, outline, strict=True)):
        points = to_canvas(simplify(polyline, SIMPLIFY * size / 256), size)
        span = length(points)
        keep = 1.0 if i == longest else P_OUTLINE if on_outline else detail * min(1.0, span / DETAIL_LENGTH)
        if span < MIN_STROKE or rng.random() >= keep:
            continue
        for piece in split_at_corners(points, rng):
            if length(piece) >= MIN_STROKE:
                strokes.append(Stroke(wobble(piece, rng, amplitude=amplitude), width))
    return strokes


def edge_lines(rgb: np.ndarray, method: str) -> np.ndarray:
    """RGB (h, w, 3) -> one-pixel lines (bool) from thinned HED edges, or Canny edges when method == "canny"."""
    return thin_edges(hed_edges(rgb, model=load_hed())) if method == "hed" else canny_lines(rgb)


def edge_strokes(polylines: Sequence[np.ndarray], size: int, *, width: float) -> list[Stroke]:
    """Edge lines (HED, Canny) as thin exact strokes: traced, lightly simplified, no hand added."""
    strokes = []
    for polyline in polylines:
        points = to_canvas(simplify(polyline, 0.5), size)
        if length(points) >= MIN_STROKE / 2:
            strokes.append(Stroke(points, width))
    return strokes


def on_outline(polylines: Sequence[np.ndarray], near: np.ndarray) -> list[bool]:
    """Which polylines run mostly along the silhouette (`near`, from silhouette_near)."""
    h, w = near.shape
    flags = []
    for polyline in polylines:
        xs, ys = np.round(polyline).astype(int).clip(0, (w - 1, h - 1)).T
        flags.append(bool(near[ys, xs].mean() > 0.5))
    return flags


def draw_sketch(strokes: Sequence[Stroke], size: int) -> np.ndarray:
    """Strokes -> the (size, size) sketch a model sees, through the live canvas's rasteriser."""
    return model_sketch(render_strokes(strokes, canvas_size=CANVAS_SIZE), size)


def freehand_sketches(
    lines: np.ndarray,
    alpha: np.ndarray,
    size: int,
    rng: np.random.Generator,
    *,
    width: float | None = None,
    n: int = 1,
) -> list[np.ndarray]:
    """A picture's lines and alpha (both at its rendered size) -> n free-hand sketches at `size`, each drawn with
    its own random choices."""
    polylines = trace_polylines(lines, min_pixels=max(2, int(MIN_STROKE * len(alpha) / CANVAS_SIZE)))
    outline = on_outline(polylines, silhouette_near(alpha))
    return [draw_sketch(freehand_strokes(polylines, outline, len(alpha), rng, width=width), size) for _ in range(n)]


def edge_sketch(lines: np.ndarray, size: int, *, width: float) -> np.ndarray:
    """Edge lines (at the picture's rendered size) -> an exact line sketch at `size`, strokes `width` canvas px."""
    polylines = trace_polylines(lines, min_pixels=max(2, int(MIN_STROKE / 2 * len(lines) / CANVAS_SIZE)))
    return draw_sketch(edge_strokes(polylines, len(lines), width=width), size)


def augment_sketch(
    sketch: np.ndarray,
    rng: np.random.Generator,
    *,
    jitter: float | None = None,
    widths: tuple[int, ...] = (-1, 0, 1, 2),
) -> np.ndarray:
    """A hand-drawn variant of a finished sketch (h, w) uint8, for pairs that have no second drawing: random stroke
    width change, then a smooth wobble of the lines.

    widths: pixels added to the strokes (-1 thins them unless that erases half the ink);
    jitter: standard deviation of the wobble in pixels (default 1% of the side). Output stays 0/255, same shape.
    """
    h, w = sketch.shape
    ink = (sketch < 128).astype(np.uint8)
    change = int(rng.choice(widths))
    if change > 0:
        ink = cv2.dilate(ink, _disk(change + 1))
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
