"""The one rasteriser: strokes and canvas snapshots reach the model's size the same way."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from pipelines.preprocess import sketch_to_scribble
from pipelines.strokes import CANVAS_SIZE, Stroke, ink_at, ink_of, model_sketch, render_strokes


def _house() -> list[Stroke]:
    square = np.array([[128, 256], [384, 256], [384, 448], [128, 448], [128, 256]], float)
    roof = np.array([[112, 264], [256, 96], [400, 264]], float)
    return [Stroke(square, 6.0), Stroke(roof, 6.0), Stroke(np.array([[256, 360]], float), 10.0)]


def _jpeg_round_trip(rgb: np.ndarray, quality: int = 80) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def test_a_stroke_is_drawn_where_its_points_are_with_its_width():
    sketch = render_strokes([Stroke(np.array([[100.0, 200.0], [400.0, 200.0]]), 8.0)])
    assert sketch.shape == (CANVAS_SIZE, CANVAS_SIZE) and sketch.dtype == np.uint8
    column = sketch[:, 250]
    inked = np.flatnonzero(column < 128)
    assert 7 <= len(inked) <= 9 and abs(inked.mean() - 200) < 1.0
    assert (sketch[:, :90] == 255).all() and (sketch[:, 411:] == 255).all()  # round caps reach width/2 past the ends
    assert (sketch[:, 96:100] < 128).any()


def test_a_thin_stroke_survives_the_way_down_to_the_model_size():
    for width, size in ((2.0, 128), (2.0, 256), (12.0, 256)):
        ink = ink_at(ink_of(render_strokes([Stroke(np.array([[50.0, 300.0], [450.0, 300.0]]), width)])), size)
        column = ink[:, size // 2]
        assert set(np.unique(ink)) <= {0, 255}
        assert 1 <= (column == 255).sum() <= max(2, round(width * size / CANVAS_SIZE) + 2), (width, size)


def test_jpeg_noise_on_blank_paper_is_not_ink_and_any_colour_is():
    blank = _jpeg_round_trip(np.full((512, 512, 3), 255, np.uint8))
    assert (model_sketch(blank, 256) == 255).all()
    red = np.full((512, 512, 3), 255, np.uint8)
    red[200:210, 50:450] = (214, 39, 40)  # the canvas's red brush
    assert (model_sketch(red, 256)[100:105, 30:220] == 0).any()


def test_the_live_path_sees_what_training_renders():
    """Canvas -> JPEG -> host's scribble at the model's size -> tiny engine's ink == the training rasteriser."""
    rendered = render_strokes(_house())
    trained = model_sketch(rendered, 256) == 0
    snapshot = _jpeg_round_trip(np.repeat(rendered[..., None], 3, axis=2))
    scribble = sketch_to_scribble(snapshot, (256, 256))
    live = ink_at(scribble[..., 0], 256) == 255
    union = np.logical_or(trained, live).sum()
    assert union > 0 and np.logical_and(trained, live).sum() / union > 0.9
