"""distillation.data.sketches: lines of a picture -> polylines -> free-hand strokes -> the canvas rasteriser."""

import cv2
import numpy as np
import pytest

from distillation.data.sketches import (
    augment_sketch,
    draw_sketch,
    edge_sketch,
    freehand_sketches,
    freehand_strokes,
    on_outline,
    outline_lines,
    region_lines,
    silhouette_near,
    simplify,
    to_canvas,
    trace_polylines,
)
from pipelines.strokes import BRUSH_WIDTHS, CANVAS_SIZE, Stroke, model_sketch, render_strokes


def picture(size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """A red square with a 3 px black outline, a yellow disc inside it and a tiny blue dot, on transparent paper."""
    rgb = np.full((size, size, 3), 255, np.uint8)
    alpha = np.zeros((size, size), np.uint8)
    a, b = size // 4, 3 * size // 4
    rgb[a:b, a:b] = (0, 0, 0)
    rgb[a + 3 : b - 3, a + 3 : b - 3] = (210, 40, 40)
    alpha[a:b, a:b] = 255
    cv2.circle(rgb, (size // 2, size // 2), size // 8, (250, 210, 30), -1)
    cv2.circle(rgb, (a + 8, a + 8), 2, (30, 60, 220), -1)
    return rgb, alpha


def test_traced_polylines_cover_every_line_pixel_once():
    lines = np.zeros((64, 64), bool)
    lines[10, 5:60] = True  # a line ...
    lines[10:50, 30] = True  # ... with a branch (a T junction)
    cv2.circle(view := lines.view(np.uint8), (45, 40), 10, 1, 1)  # and a ring
    polylines = trace_polylines(view.astype(bool))
    drawn = np.zeros_like(lines)
    total = 0
    for polyline in polylines:
        xs, ys = polyline.astype(int).T
        drawn[ys, xs] = True
        total += len(polyline)
        assert (np.abs(np.diff(polyline, axis=0)) <= 1).all()  # 8-connected walks, no jumps
    assert np.array_equal(drawn, lines)
    assert total <= lines.sum() + len(polylines)  # at most one shared join pixel per polyline
    assert trace_polylines(np.zeros((8, 8), bool)) == []
    assert all(len(p) >= 20 for p in trace_polylines(lines, min_pixels=20))


def test_simplify_keeps_a_closed_line_closed():
    ring = cv2.ellipse2Poly((50, 50), (30, 20), 0, 0, 360, 2).astype(np.float64)
    simple = simplify(ring, 1.0)
    assert len(simple) < len(ring) / 3 and np.array_equal(simple[0], simple[-1])
    open_line = np.array([[0, 0], [10, 0.2], [20, 0], [30, 0.1]], np.float64)
    assert len(simplify(open_line, 1.0)) == 2


def test_region_lines_draw_each_border_once_and_a_dark_outline_as_one_line():
    rgb, alpha = picture()
    lines = region_lines(rgb, alpha, np.random.default_rng(0))
    row = lines[64, :]  # across the left outline (x 32..34), the square, the disc (x 48..80) and the right side
    runs = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(int), [0]])) == 1)
    assert len(runs) == 4, np.flatnonzero(row)  # outline, disc, disc, outline: not 6 (both sides of the outline)
    assert not lines[:20].any() and not lines[64, 40:46].any()  # paper and flat fill carry no line


def test_region_lines_ignore_gradients_and_shading():
    ramp = np.linspace(0, 1, 128, dtype=np.float32)[None, :, None]  # light to dark blue, as colour icons shade
    rgb = ((1 - ramp) * np.array([110, 190, 250]) + ramp * np.array([30, 100, 220])).astype(np.uint8)
    rgb = np.repeat(rgb, 128, axis=0)
    alpha = np.zeros((128, 128), np.uint8)
    alpha[16:112, 16:112] = 255
    lines = region_lines(rgb, alpha, np.random.default_rng(0))
    assert not lines[30:98, 30:98].any()  # a smooth gradient has no inner line ...
    assert lines[14:20, 40:90].any(axis=0).mean() > 0.9  # ... but the silhouette has one


def test_outline_lines_are_the_centre_of_a_line_drawing():
    rgb, alpha = np.full((64, 64, 3), 255, np.uint8), np.zeros((64, 64), np.uint8)
    cv2.rectangle(rgb, (16, 16), (47, 47), (0, 0, 0), 4)
    alpha[rgb.min(axis=2) < 128] = 255
    lines = outline_lines(rgb, alpha)
    assert 1 <= lines[32, 10:24].sum() <= 2 and not lines[32, 24:40].any()


def test_freehand_sketches_are_thin_open_outlines_seeded_and_varied():
    rgb, alpha = picture(256)
    lines = region_lines(rgb, alpha, np.random.default_rng(0))
    first = freehand_sketches(lines, alpha, 128, np.random.default_rng(1), n=2)
    again = freehand_sketches(lines, alpha, 128, np.random.default_rng(1), n=2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], first[1])  # two drawings of one picture differ
    for sketch in first:
        assert sketch.shape == (128, 128) and set(np.unique(sketch)) <= {0, 255}
        ink = sketch < 128
        assert 0.01 < ink.mean() < 0.2  # lines and white space, no fill
        assert not ink[60:68, 60:68].all()  # the disc's middle is not painted
        assert ink[30:98, 26:38].any(axis=1).mean() > 0.7  # the left side of the square is drawn along most of it


def test_freehand_strokes_wobble_share_one_brush_and_keep_mostly_outlines():
    rgb, alpha = picture(256)
    polylines = trace_polylines(region_lines(rgb, alpha, np.random.default_rng(0)), min_pixels=6)
    outline = on_outline(polylines, silhouette_near(alpha))
    assert any(outline) and not all(outline)
    traced = np.concatenate([to_canvas(p, 256) for p in polylines])
    outline_kept, interior_kept, runs = 0, 0, 40
    for seed in range(runs):
        strokes = freehand_strokes(polylines, outline, 256, np.random.default_rng(seed))
        widths = {stroke.width for stroke in strokes}
        assert len(widths) == 1 and BRUSH_WIDTHS[0] <= widths.pop() <= BRUSH_WIDTHS[1]
        on_square = [s for s in strokes if np.abs(s.points - CANVAS_SIZE / 2).max(axis=1).min() > 100]
        outline_kept += bool(on_square)
        interior_kept += len(strokes) - len(on_square)
        for stroke in strokes:  # wobbled near the picture's lines (at most a few px off), not scrambled
            off = np.sqrt(((stroke.points[:, None] - traced[None]) ** 2).sum(-1)).min(1)
            assert 0.3 < off.max() < 25
    assert outline_kept == runs  # the outline is always drawn
    interior_total = sum(1 for flag in outline if not flag)
    assert interior_kept < runs * interior_total  # interior details are left out at random


def test_thin_brush_at_half_scale_gives_thin_lines():
    stroke = Stroke(np.array([[100.0, 256.0], [412.0, 256.0]]), 2.0)
    thin = draw_sketch([stroke], 256)
    thick = draw_sketch([Stroke(stroke.points, 12.0)], 256)
    assert np.array_equal(thin, model_sketch(render_strokes([stroke]), 256))  # the canvas rasteriser, unchanged
    assert 1 <= (thin[:, 128] == 0).sum() <= 2 and 5 <= (thick[:, 128] == 0).sum() <= 7  # canvas px / 2 at 256 px


def test_edge_sketch_draws_lines_exactly_where_they_are():
    lines = np.zeros((128, 128), bool)
    lines[40, 20:100] = True
    sketch = edge_sketch(lines, 64, width=3.0)
    assert (sketch[20, 12:48] == 0).all() and (sketch[:18] == 255).all() and (sketch[23:] == 255).all()


@pytest.mark.parametrize("seed", range(4))
def test_augmentation_keeps_shape_range_and_is_seeded(seed):
    sketch = np.full((64, 64), 255, np.uint8)
    sketch[20:22, 8:56] = 0
    sketch[8:56, 40:42] = 0
    out = augment_sketch(sketch, np.random.default_rng(seed))
    assert out.shape == sketch.shape and out.dtype == np.uint8 and set(np.unique(out)) <= {0, 255}
    assert 0.4 < (out == 0).sum() / (sketch == 0).sum() < 4.0  # strokes change width, they do not vanish
    np.testing.assert_array_equal(out, augment_sketch(sketch, np.random.default_rng(seed)))
    assert not np.array_equal(out, augment_sketch(sketch, np.random.default_rng(seed + 10)))
