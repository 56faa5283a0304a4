"""Colour hit rate and edge agreement on pictures whose answer is known: discs of one colour, a sketch as output."""

import cv2
import numpy as np
import pytest

from bench.colour import (
    HUE_RANGES,
    colour_counts,
    colour_hit_rate,
    dominant_colour,
    edge_agreement,
    output_edges,
)
from pipelines.strokes import Stroke, model_sketch, render_strokes

COLOURS = ("red", "yellow", "green", "blue")
PURE = {"red": (220, 30, 25), "yellow": (250, 220, 40), "green": (60, 160, 50), "blue": (40, 90, 210)}


def disc(rgb: tuple[int, int, int], *, size: int = 64, paper=(255, 255, 255)) -> np.ndarray:
    image = np.full((size, size, 3), paper, np.uint8)
    cv2.circle(image, (size // 2, size // 2), size // 3, tuple(int(v) for v in rgb), -1)
    return image


@pytest.mark.parametrize("colour", COLOURS)
def test_a_disc_of_one_colour_is_that_colour(colour):
    image = disc(PURE[colour])
    assert dominant_colour(image, COLOURS) == colour
    counts = colour_counts(image, COLOURS)
    assert counts[colour] > 0 and all(counts[c] == 0 for c in COLOURS if c != colour)


def test_paper_ink_cream_and_pastels_count_for_no_colour():
    for rgb in [(255, 255, 255), (0, 0, 0), (128, 128, 128), (250, 240, 205), (200, 215, 240), (40, 10, 10)]:
        assert dominant_colour(disc(rgb), COLOURS) is None, rgb


def test_hues_between_the_ranges_count_for_none_and_the_bigger_area_wins():
    orange, purple, cyan = (250, 140, 20), (140, 40, 200), (30, 200, 210)
    for rgb in (orange, purple, cyan):
        assert dominant_colour(disc(rgb), COLOURS) is None, rgb
    image = disc(PURE["blue"], size=96)
    image[:20, :20] = PURE["red"]  # a small red corner beside a large blue disc
    assert dominant_colour(image, COLOURS) == "blue"
    assert dominant_colour(image, ("red", "green")) == "red"  # only the compared colours compete


def test_colour_hit_rate_counts_the_prompted_colour_being_dominant():
    images = [disc(PURE[c]) for c in COLOURS]
    assert colour_hit_rate(images, COLOURS, COLOURS) == 1.0
    assert colour_hit_rate(images, COLOURS[1:] + COLOURS[:1], COLOURS) == 0.0
    grey = [disc((128, 128, 128))] * 4  # no colour at all is a miss, whatever was asked
    assert colour_hit_rate(grey, COLOURS, COLOURS) == 0.0
    with pytest.raises(ValueError, match="no hue range"):
        colour_counts(images[0], ("red", "turquoise"))


def test_hue_ranges_do_not_overlap():
    spans = sorted(r for ranges in HUE_RANGES.values() for r in ranges)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))


def house_sketch(size: int) -> np.ndarray:
    strokes = [
        Stroke(np.array([[130, 250], [130, 440], [380, 440], [380, 250], [130, 250]], float), 6.0),
        Stroke(np.array([[110, 262], [255, 120], [400, 262]], float), 3.0),
        Stroke(np.array([[225, 440], [225, 360], [285, 360], [285, 440]], float), 12.0),
    ]
    return model_sketch(render_strokes(strokes), size)


@pytest.mark.parametrize("size", [128, 256])
def test_edge_agreement_is_one_for_the_sketch_itself_and_zero_for_a_blank_picture(size):
    sketch = house_sketch(size)
    as_picture = np.repeat(sketch[..., None], 3, axis=2)
    assert edge_agreement(sketch, as_picture) == 1.0
    assert edge_agreement(sketch, np.full_like(as_picture, 255)) == 0.0
    assert edge_agreement(sketch, np.full_like(as_picture, 90)) == 0.0  # flat colour: no edges either


def test_edge_agreement_sees_coloured_fills_and_drops_with_distance():
    sketch = house_sketch(256)
    filled = np.full((256, 256, 3), 255, np.uint8)
    filled[sketch < 128] = PURE["yellow"]  # light yellow lines on white still make edges
    assert output_edges(filled).any() and edge_agreement(sketch, filled) == 1.0
    shifted = np.roll(filled, 12, axis=1)  # the same picture 12 px off: most lines have no edge within 3 px
    assert edge_agreement(sketch, shifted) < 0.5
    half = filled.copy()
    half[:, 128:] = 255  # only the left half drawn
    assert 0.2 < edge_agreement(sketch, half) < 0.8
    with pytest.raises(ValueError, match="differ in size"):
        edge_agreement(sketch, filled[:128, :128])
