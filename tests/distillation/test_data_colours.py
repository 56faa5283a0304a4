"""distillation.data.colours: basic colour terms of a picture (k-means in Lab) and recolouring by hue rotation."""

import numpy as np
import pytest

from distillation.data.captions import recoloured_concept
from distillation.data.colours import (
    BASIC_TERMS,
    PROTOTYPES,
    colour_words,
    join_words,
    kmeans,
    name_colours,
    name_picture,
    recolour,
    recoloured_term,
    to_lab,
)


def flat(*parts: tuple[tuple[int, int, int], float], size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A picture of horizontal bands (colour, share of the drawing) on transparent paper, with a white margin."""
    rgb = np.full((size, size, 3), 255, np.uint8)
    alpha = np.zeros((size, size), np.uint8)
    top, rows = 8, size - 16
    for colour, share in parts:
        height = round(share * rows)
        rgb[top : top + height, 8:-8], alpha[top : top + height, 8:-8] = colour, 255
        top += height
    return rgb, alpha


def test_every_prototype_is_named_as_its_own_term():
    for term, shades in PROTOTYPES.items():
        assert set(name_colours(to_lab(np.array(shades, np.uint8)))) == {term}
    assert set(PROTOTYPES) == set(BASIC_TERMS) and len(BASIC_TERMS) == 11


@pytest.mark.parametrize(
    ("rgb", "term"),
    [
        ((255, 204, 77), "yellow"),
        ((244, 144, 12), "orange"),
        ((120, 80, 40), "brown"),
        ((100, 100, 255), "blue"),
        ((180, 30, 200), "purple"),
        ((235, 235, 235), "white"),
        ((20, 20, 20), "black"),
        ((120, 190, 60), "green"),
    ],
)
def test_everyday_colours_get_their_names(rgb, term):
    assert name_colours(to_lab(np.array([rgb], np.uint8)))[0] == term


def test_colour_words_rank_shares_and_leave_out_paper_and_specks():
    rgb, alpha = flat(((220, 30, 30), 0.6), ((0, 150, 0), 0.3), ((0, 0, 200), 0.1))
    assert colour_words(rgb, alpha) == [["red", "green"]]  # blue under 15 %, the white paper is not a colour
    rgb, alpha = flat(((220, 30, 30), 0.4), ((255, 255, 255), 0.6))
    assert colour_words(rgb, alpha) == [["white", "red"]]  # white inside the drawing is a colour
    assert colour_words(rgb, np.zeros_like(alpha), (0, 60)) == [[], []]


def test_recolour_rotates_hue_and_leaves_grays():
    rgb, alpha = flat(((220, 30, 30), 0.6), ((128, 128, 128), 0.4))
    turned = recolour(rgb, 120)
    assert colour_words(turned, alpha) == [["green", "gray"]]
    np.testing.assert_array_equal(turned[alpha == 0], rgb[alpha == 0])  # paper stays white
    assert abs(int(turned[50, 30].max()) - int(turned[50, 30].min())) <= 1  # gray stays gray


def test_recoloured_words_match_the_recoloured_picture():
    rgb, alpha = flat(((220, 30, 30), 0.5), ((250, 210, 40), 0.3), ((40, 40, 200), 0.2))
    shifts = (0, 60, 120, 210, 300)
    predicted = colour_words(rgb, alpha, shifts)
    assert predicted[0] == ["red", "yellow", "blue"]
    for shift, words in zip(shifts, predicted, strict=True):
        assert words == colour_words(recolour(rgb, shift), alpha)[0], shift
    assert recoloured_term("red", 120) == "green" and recoloured_term("gray", 120) == "gray"


def test_kmeans_is_seeded_and_stops_at_distinct_points():
    points = np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32)
    a, labels = kmeans(points, 3, np.random.default_rng(5))
    b, _ = kmeans(points, 3, np.random.default_rng(5))
    assert np.array_equal(a, b) and set(labels.tolist()) == {0, 1, 2}
    two = np.repeat(np.array([[0, 0, 0], [10, 0, 0]], np.float32), 50, axis=0)
    centres, labels = kmeans(two, 3, np.random.default_rng(0))
    assert len(centres) == 2 and np.bincount(labels).tolist() == [50, 50]


def test_join_words():
    assert [join_words(w) for w in ([], ["red"], ["red", "blue"], ["a", "b", "c"])] == [
        "",
        "red",
        "red and blue",
        "a, b and c",
    ]


def test_each_colour_of_a_picture_becomes_what_its_pixels_became():
    rgb, alpha = flat(((255, 236, 100), 0.7), ((0, 0, 0), 0.3))  # a light yellow: 210 degrees make it purple
    (plain, turned) = name_picture(rgb, alpha, (0, 210))
    assert plain.words == ["yellow", "black"] and plain.becomes == {"yellow": "yellow", "black": "black"}
    assert turned.words == ["purple", "black"] and turned.becomes == {"yellow": "purple", "black": "black"}
    assert recoloured_term("yellow", 210) == "blue"  # its focal colour would have said otherwise
    assert recoloured_concept("yellow star", 210, turned.becomes) == "purple star"
    assert recoloured_concept("blue star", 210, turned.becomes) == recoloured_term("blue", 210) + " star"
