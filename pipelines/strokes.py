"""Free-hand strokes and canvas snapshots -> the sketch a model sees: one rasteriser for live frames and training.

The live canvas draws round-capped, anti-aliased strokes on a CANVAS_SIZE white square; training sketches are drawn
the same way (`render_strokes`) and both reach the model's size through `ink_at`, so what a model sees when a person
draws is what it was trained on. Conventions: a sketch is (h, w) uint8 with black ink (0) on white paper (255); an
ink map is (h, w) uint8 with 255 = full ink.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

CANVAS_SIZE = 512  # the live canvas's drawing surface in pixels (ui/canvas.py)
BRUSH_WIDTHS = (2.0, 12.0)  # the range of canvas brush widths people draw with, canvas pixels (default brush: 6)
INK_THRESHOLD = 64  # an averaged pixel with at least this much ink (of 255) is a line pixel at the model's size
_SUBPIXEL_BITS = 4  # cv2 draws points with 1/16 pixel precision


@dataclass(frozen=True)
class Stroke:
    """One pen-down..pen-up path: points (n, 2) as (x, y) in canvas pixels, and the brush width in canvas pixels."""

    points: np.ndarray
    width: float


def render_strokes(strokes: Sequence[Stroke], *, canvas_size: int = CANVAS_SIZE) -> np.ndarray:
    """Strokes -> a (canvas_size, canvas_size) sketch drawn like the canvas draws them (round caps, anti-aliased)."""
    paper = np.full((canvas_size, canvas_size), 255, np.uint8)
    scale = 1 << _SUBPIXEL_BITS
    for stroke in strokes:
        points = np.round(np.asarray(stroke.points, np.float64).reshape(-1, 2) * scale).astype(np.int32)
        if len(points) == 0:
            continue
        thickness = max(1, int(round(stroke.width)))
        if len(points) == 1:  # a dot: the canvas draws a round cap
            centre = tuple(int(v) for v in points[0])
            radius = max(1, int(round(stroke.width / 2 * scale)))
            cv2.circle(paper, centre, radius, 0, -1, cv2.LINE_AA, _SUBPIXEL_BITS)
            continue
        cv2.polylines(paper, [points[:, None, :]], False, 0, thickness, cv2.LINE_AA, _SUBPIXEL_BITS)
    return paper


def ink_of(image: np.ndarray) -> np.ndarray:
    """A sketch or canvas snapshot, (h, w) gray or (h, w, 3) RGB on white -> its ink map (any colour counts as ink)."""
    if image.ndim == 2:
        return 255 - image
    return 255 - np.minimum(np.minimum(image[..., 0], image[..., 1]), image[..., 2])


def ink_at(ink: np.ndarray, size: int) -> np.ndarray:
    """An ink map at any size -> a binary ink map (size, size) {0, 255}: area-averaged, then thresholded, so a thin
    stroke stays a full-strength line and anti-aliasing or JPEG noise does not become ink."""
    ink = np.ascontiguousarray(ink, dtype=np.uint8)
    if ink.shape != (size, size):
        interp = cv2.INTER_AREA if ink.shape[0] > size else cv2.INTER_LINEAR
        ink = cv2.resize(ink, (size, size), interpolation=interp)
    return np.where(ink >= INK_THRESHOLD, 255, 0).astype(np.uint8)


def model_sketch(image: np.ndarray, size: int) -> np.ndarray:
    """A canvas snapshot or rendered sketch at any size -> the (size, size) sketch (black on white) a model sees."""
    return 255 - ink_at(ink_of(image), size)
