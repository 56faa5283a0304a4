"""Does a picture follow its prompt's colour word and its sketch's lines: colour hit rate and edge agreement.

Colour: a pixel counts for a colour when it is saturated (HSV saturation >= MIN_SATURATION and value >= MIN_VALUE,
so white paper, cream, greys, black ink and pastel tints count for none) and its hue lies in that colour's range
(HUE_RANGES, degrees on the HSV wheel: red 0, yellow 60, green 120, blue 240). Between the ranges lie hues no
prompt colour owns (orange, cyan, purple, magenta): they count for none. A picture's dominant colour, among the
colours being compared, is the one with the most pixels; a picture with none of them has no dominant colour.

Edges: an output's edges are Canny edges of its lightly blurred RGB picture (the strongest channel's gradient, so a
yellow shape on white has an edge); a sketch's lines are the one-pixel centre lines of its ink. Edge agreement is
the share of centre-line pixels with an output edge within `radius` pixels (recall: a picture that is edges
everywhere agrees with any sketch, so read it beside the same score against another sketch's lines).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from pipelines.hed import skeletonize

# images are (h, w, 3) uint8 RGB; sketches are (h, w) uint8 black ink (0) on white paper (255)
HUE_RANGES: dict[str, tuple[tuple[float, float], ...]] = {
    "red": ((0.0, 15.0), (340.0, 360.0)),  # scarlet to crimson; orange starts at 15
    "yellow": ((42.0, 70.0),),  # gold to lemon; 15-42 is orange, 70-80 yellow-green
    "green": ((80.0, 165.0),),  # leaf to emerald; 165-190 is cyan
    "blue": ((190.0, 255.0),),  # sky to royal blue; 255-340 is violet, purple and magenta
}
MIN_SATURATION = 0.35  # HSV S = (max - min) / max: cream paper (255, 240, 200) is 0.22, pure colours 1.0
MIN_VALUE = 0.3  # HSV V = max / 255: darker pixels (ink, shadows) have unstable hues
CANNY_LOW, CANNY_HIGH = 40, 80  # hysteresis thresholds on the L2 gradient of a 3x3 Sobel, after a 3x3 Gaussian
EDGE_RADIUS = 4.5  # pixels at 256 px: half the widest brush line (12 canvas px = 6 px) and 1.5 px of slack


def colour_rule() -> dict[str, object]:
    """The colour and edge definitions, for reports."""
    return {
        "hue_ranges_deg": {name: [list(r) for r in ranges] for name, ranges in HUE_RANGES.items()},
        "min_saturation": MIN_SATURATION,
        "min_value": MIN_VALUE,
        "edges": f"Canny({CANNY_LOW}, {CANNY_HIGH}, L2) on the 3x3-Gaussian-blurred RGB output",
        "edge_radius_px": EDGE_RADIUS,
    }


def hsv(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(h, w, 3) uint8 RGB -> hue in degrees [0, 360), saturation and value in [0, 1], each (h, w) float32."""
    h, s, v = cv2.split(cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV))
    return h, s, v


def colour_masks(image: np.ndarray, colours: Sequence[str]) -> dict[str, np.ndarray]:
    """Boolean (h, w) masks of the saturated pixels whose hue lies in each colour's range."""
    unknown = [c for c in colours if c not in HUE_RANGES]
    if unknown:
        raise ValueError(f"no hue range for {unknown}; known colours: {', '.join(HUE_RANGES)}")
    hue, saturation, value = hsv(image)
    saturated = (saturation >= MIN_SATURATION) & (value >= MIN_VALUE)
    return {
        c: saturated & np.logical_or.reduce([(hue >= lo) & (hue < hi) for lo, hi in HUE_RANGES[c]]) for c in colours
    }


def colour_counts(image: np.ndarray, colours: Sequence[str]) -> dict[str, int]:
    """How many pixels of the picture count for each colour."""
    return {c: int(mask.sum()) for c, mask in colour_masks(image, colours).items()}


def dominant_colour(image: np.ndarray, colours: Sequence[str]) -> str | None:
    """The colour with the most pixels among `colours` (the first on a tie); None when none has any."""
    counts = colour_counts(image, colours)
    best = max(colours, key=lambda c: counts[c])
    return best if counts[best] > 0 else None


def colour_hit_rate(images: Sequence[np.ndarray], prompted: Sequence[str], colours: Sequence[str]) -> float:
    """Share of pictures whose dominant colour among `colours` is the one their prompt named (chance: 1/len)."""
    hits = [dominant_colour(image, colours) == want for image, want in zip(images, prompted, strict=True)]
    return float(np.mean(hits)) if hits else float("nan")


def output_edges(image: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 RGB -> boolean (h, w) Canny edges of the blurred picture (the strongest channel's gradient)."""
    blurred = cv2.GaussianBlur(np.ascontiguousarray(image), (3, 3), 0)
    return cv2.Canny(blurred, CANNY_LOW, CANNY_HIGH, L2gradient=True) > 0


def centre_lines(sketch: np.ndarray) -> np.ndarray:
    """(h, w) black-on-white sketch -> boolean one-pixel centre lines of its ink (each stroke counts by length)."""
    return skeletonize(sketch < 128)


def edge_agreement(sketch: np.ndarray, image: np.ndarray, *, radius: float = EDGE_RADIUS) -> float:
    """Share of the sketch's centre-line pixels with an output edge within `radius` pixels; 1.0 for an empty sketch.

    sketch (h, w) black on white, image (h, w, 3) RGB of the same size."""
    if sketch.shape != image.shape[:2]:
        raise ValueError(f"sketch {sketch.shape} and image {image.shape[:2]} differ in size")
    lines = centre_lines(sketch)
    if not lines.any():
        return 1.0
    edges = output_edges(image)
    if not edges.any():
        return 0.0
    to_edge = cv2.distanceTransform((~edges).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return float((to_edge[lines] <= radius).mean())
