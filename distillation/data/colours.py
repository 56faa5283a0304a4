"""Colour names of a picture and recolouring: k-means in CIELAB -> the 11 basic colour terms; hue rotation.

A picture's colour words come from its drawing's pixels (alpha >= 128; paper is not a colour): k-means with k <= 3 in
CIELAB, each cluster centre named by the nearest prototype of the basic colour terms (Berlin & Kay 1969), clusters of
one name merged, names with at least MIN_SHARE of the pixels kept, most frequent first. Recolouring rotates hue in
HSV; the recoloured picture is named by the same function, so its caption says the colours it shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import cv2
import numpy as np

from pipelines.text import COLOUR_TERMS as BASIC_TERMS  # one list: the prompts' colour words read the same terms

# k cluster count, n pixels, Lab (L 0..100, a and b about -128..127)
# sRGB prototypes per term: focal colours plus the light, dark and muted shades drawings use for them
PROTOTYPES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "black": ((0, 0, 0), (40, 40, 45)),
    "white": ((255, 255, 255), (236, 236, 232)),
    "gray": ((128, 128, 128), (90, 92, 96), (180, 180, 180), (120, 135, 150), (205, 210, 215)),
    "red": ((220, 30, 30), (180, 0, 20), (255, 70, 60), (150, 20, 30)),
    "orange": ((255, 140, 0), (240, 110, 30), (255, 170, 80), (250, 185, 120)),
    "yellow": ((255, 220, 0), (255, 236, 100), (250, 200, 40), (255, 245, 170), (210, 190, 40)),
    "green": ((0, 160, 0), (60, 180, 75), (130, 210, 80), (0, 100, 30), (160, 225, 150), (40, 130, 110)),
    "blue": ((0, 80, 220), (30, 144, 255), (0, 0, 150), (110, 180, 240), (0, 190, 230), (30, 60, 110)),
    "purple": ((128, 0, 128), (140, 80, 200), (185, 135, 225), (80, 30, 120), (100, 60, 180)),
    "pink": ((255, 150, 200), (240, 90, 160), (255, 195, 205), (220, 50, 130), (250, 200, 180)),
    "brown": ((140, 80, 30), (100, 55, 25), (170, 115, 60), (190, 145, 100), (70, 40, 20)),
}
MIN_SHARE = 0.15  # a colour is named when at least this share of the drawing's pixels has it
MAX_WORDS = 3  # at most this many colour words per caption
CLUSTERS = 3  # k of the colour-naming k-means
SAMPLE = 4096  # pixels the k-means sees (an even stride over the drawing)
FOREGROUND = 128  # alpha at or above this is the drawing


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB uint8 (..., 3) -> CIELAB float32 (..., 3), D65."""
    flat = np.ascontiguousarray(rgb, dtype=np.float32).reshape(-1, 1, 3) / 255.0
    return cv2.cvtColor(flat, cv2.COLOR_RGB2LAB).reshape(np.shape(rgb))


_PROTOTYPE_TERMS = np.array([term for term, shades in PROTOTYPES.items() for _ in shades])
_PROTOTYPE_LAB = to_lab(np.array([shade for shades in PROTOTYPES.values() for shade in shades], np.uint8))


def name_colours(lab: np.ndarray) -> np.ndarray:
    """Lab colours (n, 3) -> their basic colour terms (n,) by the nearest prototype (CIE76 distance)."""
    distance = ((lab[:, None, :] - _PROTOTYPE_LAB[None]) ** 2).sum(-1)
    return _PROTOTYPE_TERMS[distance.argmin(1)]


def nearest(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre (squared Euclidean) for each point (n, d) -> (n,)."""
    distance = (centres**2).sum(1)[None] - 2.0 * points @ centres.T
    return distance.argmin(1)


def kmeans(
    points: np.ndarray, k: int, rng: np.random.Generator, *, iterations: int = 12
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding: points (n, d) -> (centres (k', d), labels (n,)); k' < k when the points
    hold fewer distinct values."""
    points = np.asarray(points, np.float32)
    centres = points[rng.integers(len(points))][None]
    nearest_sq = ((points - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        if nearest_sq.sum() <= 0:
            break
        centre = points[rng.choice(len(points), p=nearest_sq / nearest_sq.sum())]
        centres = np.concatenate([centres, centre[None]])
        nearest_sq = np.minimum(nearest_sq, ((points - centre) ** 2).sum(1))
    for _ in range(iterations):
        labels = nearest(points, centres)
        counts = np.bincount(labels, minlength=len(centres)).astype(np.float32)
        sums = np.stack([np.bincount(labels, points[:, d], minlength=len(centres)) for d in range(points.shape[1])], 1)
        moved = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centres).astype(np.float32)
        if np.abs(moved - centres).max() < 1e-3:
            break
        centres = moved
    return centres, nearest(points, centres)


def drawing_pixels(rgb: np.ndarray, alpha: np.ndarray, *, sample: int = SAMPLE) -> np.ndarray:
    """Up to `sample` of the drawing's pixels (alpha >= FOREGROUND), an even stride, as RGB uint8 (n, 3)."""
    pixels = rgb[alpha >= FOREGROUND]
    return pixels[:: len(pixels) // sample][:sample] if len(pixels) > sample else pixels


class Naming(NamedTuple):
    """A picture's colours after one hue rotation."""

    words: list[str]  # the basic terms it shows, most frequent first
    becomes: dict[str, str]  # each term of the unrotated picture -> the term its largest cluster shows after rotation


def cluster_terms(pixels: np.ndarray, labels: np.ndarray, shares: np.ndarray) -> list[str]:
    """The basic term of each cluster's mean colour (in Lab) of RGB pixels (n, 3) with cluster labels (n,)."""
    lab = to_lab(pixels)
    means = np.stack([np.bincount(labels, lab[:, d], minlength=len(shares)) for d in range(3)], 1)
    return name_colours((means / np.maximum(shares * len(labels), 1)[:, None]).astype(np.float32)).tolist()


def name_picture(rgb: np.ndarray, alpha: np.ndarray, shifts: Sequence[int] = (0,)) -> list[Naming]:
    """The basic colour terms a picture shows after each hue rotation in `shifts` (0 = as it is), most frequent first:
    at most MAX_WORDS, each with >= MIN_SHARE of the drawing, and what each of its own colours became. The colours
    are clustered once (k-means in Lab); each cluster's pixels are recoloured, averaged in Lab and named."""
    pixels = drawing_pixels(rgb, alpha)
    if len(pixels) == 0:
        return [Naming([], {}) for _ in shifts]
    _, labels = kmeans(to_lab(pixels), CLUSTERS, np.random.default_rng(0))
    shares = np.bincount(labels, minlength=int(labels.max()) + 1) / len(labels)
    original = cluster_terms(pixels, labels, shares)
    named = []
    for shift in shifts:
        terms = cluster_terms(recolour(pixels[None], shift)[0], labels, shares) if shift % 360 else original
        total: dict[str, float] = {}
        for term, share in zip(terms, shares.tolist(), strict=True):
            total[term] = total.get(term, 0.0) + share
        ranked = sorted(total.items(), key=lambda item: (-item[1], BASIC_TERMS.index(item[0])))
        becomes: dict[str, str] = {}
        for j in np.argsort(-shares, kind="stable").tolist():  # a term's largest cluster decides what it becomes
            becomes.setdefault(original[j], terms[j])
        named.append(Naming([term for term, share in ranked if share >= MIN_SHARE][:MAX_WORDS], becomes))
    return named


def colour_words(rgb: np.ndarray, alpha: np.ndarray, shifts: Sequence[int] = (0,)) -> list[list[str]]:
    """The colour words of name_picture alone: one list per shift."""
    return [naming.words for naming in name_picture(rgb, alpha, shifts)]


def recolour(rgb: np.ndarray, shift: int) -> np.ndarray:
    """Rotate the hue of an RGB uint8 picture by `shift` degrees (HSV; grays, black and white stay as they are)."""
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV)  # H in 0..179 (2 degrees per step)
    hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + shift // 2) % 180).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def recoloured_term(term: str, shift: int) -> str:
    """The colour a basic term's focal colour becomes under `recolour(., shift)` (grays stay themselves)."""
    if term in ("black", "white", "gray"):
        return term
    focal = np.array([[PROTOTYPES[term][0]]], np.uint8)
    return str(name_colours(to_lab(recolour(focal, shift)).reshape(1, 3))[0])


def join_words(words: Sequence[str]) -> str:
    """["red"] -> "red"; ["red", "green"] -> "red and green"; three -> "red, green and blue"."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1] if words else ""
