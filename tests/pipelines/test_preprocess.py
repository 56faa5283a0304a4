"""Canvas/photo preprocessing: limits, empty check, scribble conversion, line extraction."""

import io

import numpy as np
import pytest
from PIL import Image

from pipelines.preprocess import InputError, extract_lines, is_empty, load_image, sketch_to_scribble


def png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_empty_canvas_is_detected_and_a_stroke_is_not():
    canvas = np.full((64, 64, 3), 255, np.uint8)
    assert is_empty(canvas)
    canvas[30:33, 10:50] = 0
    assert not is_empty(canvas)


def test_scribble_is_white_lines_on_black_at_the_requested_size():
    canvas = np.full((512, 512, 3), 255, np.uint8)
    canvas[100:110, :, :] = (255, 255, 0)  # a yellow stroke counts as ink
    scribble = sketch_to_scribble(canvas, (256, 256), threshold=127)
    assert scribble.shape == (256, 256, 3)
    assert scribble[52, 10, 0] == 255 and scribble[200, 10, 0] == 0


def test_scribble_is_the_inverted_channel_minimum_repeated_in_rgb():
    canvas = np.random.default_rng(0).integers(0, 256, (300, 200, 3), dtype=np.uint8)
    scribble = sketch_to_scribble(canvas, (300, 200))
    expected = np.repeat((255 - canvas.min(axis=2))[..., None], 3, axis=2)
    assert scribble.dtype == np.uint8 and scribble.flags.c_contiguous
    assert np.array_equal(scribble, expected)


def test_huge_upload_is_downscaled_with_a_notice():
    big = Image.new("RGB", (8000, 8000), "white")
    rgb, notice = load_image(png_bytes(big, "JPEG"))
    assert max(rgb.shape[:2]) <= 2048
    assert "8000x8000" in notice


def test_non_image_upload_is_refused_clearly():
    with pytest.raises(InputError, match="not an image"):
        load_image(b"%PDF-1.4 this is not an image")


def test_transparent_upload_is_flattened_on_white():
    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    rgb, _ = load_image(png_bytes(rgba))
    assert rgb.min() == 255


@pytest.mark.parametrize("method", ["canny", "lineart"])
def test_line_extraction_finds_the_edges_of_a_shape(method):
    photo = np.full((128, 128, 3), 230, np.uint8)
    photo[32:96, 32:96] = 20
    lines = extract_lines(photo, method)
    assert lines.shape == photo.shape
    assert lines[64, 64].min() > 200  # the flat inside has no lines
    assert lines[28:36, 32:96].min() < 128 or lines[32:96, 28:36].min() < 128  # the border does


def test_unknown_line_method_is_refused():
    with pytest.raises(InputError):
        extract_lines(np.zeros((8, 8, 3), np.uint8), "hed9000")
