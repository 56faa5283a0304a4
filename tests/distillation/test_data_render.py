"""distillation.data.render: SVG files and SVG text -> RGBA, framed on a square with the drawing's alpha."""

import sys

import numpy as np
import pytest
from PIL import Image

from distillation.data import DataError, prepare
from distillation.data.render import frame, load_rgba, svg_renderer
from tests.distillation.test_data_prepare import SQUARE, fake_cache, svg, write


def test_svg_file_and_text_render_alike_and_frame_to_their_drawing(tmp_path):
    text = svg(SQUARE.format(fill="#d22f27", stroke="none"))
    from_text, from_file = load_rgba(text, 72), load_rgba(write(tmp_path / "s.svg", text), 72)
    assert np.array_equal(np.asarray(from_text), np.asarray(from_file)) and from_text.size == (72, 72)
    ((rgb, alpha),) = frame([from_text], 64)
    assert rgb.shape == (64, 64, 3) and alpha.shape == (64, 64)
    assert tuple(rgb[32, 32]) == pytest.approx((0xD2, 0x2F, 0x27), abs=3)
    assert alpha[32, 32] == 255 and alpha[1, 1] == 0 and tuple(rgb[1, 1]) == (255, 255, 255)  # the margin: paper
    assert (alpha[:, 32] > 128).mean() > 0.8  # cropped to the square, then a 6 % margin


def test_layers_share_one_frame_and_an_empty_drawing_is_white():
    square = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    square.paste((0, 0, 255, 255), (10, 10, 20, 20))
    empty = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    (rgb, alpha), (blank, blank_alpha) = frame([square, empty], 32)
    assert alpha.max() == 255 and blank_alpha.max() == 0 and (blank == 255).all()


def test_missing_cairo_is_one_clear_error_not_every_svg_skipped(tmp_path, monkeypatch):
    svg_renderer.cache_clear()
    monkeypatch.setitem(sys.modules, "cairosvg", None)  # makes `import cairosvg` fail
    try:
        with pytest.raises(DataError, match="libcairo2"):
            cache = fake_cache(tmp_path / "cache")
            prepare(cache=cache, out=tmp_path / "out", sources=["openmoji"], edges="canny", progress=False)
    finally:
        svg_renderer.cache_clear()
