"""Upload handling and the Models tab table."""

from PIL import Image, ImageDraw

from pipelines.registry import Registry
from ui.layout import models_table, upload_to_lines


def test_non_image_upload_gives_no_preview_and_no_traceback(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not an image")
    assert upload_to_lines(str(path), "canny") is None


def test_huge_upload_becomes_a_canvas_sized_line_drawing(tmp_path):
    path = tmp_path / "big.jpg"
    image = Image.new("RGB", (8000, 8000), "white")
    ImageDraw.Draw(image).rectangle((1000, 1000, 7000, 7000), outline="black", width=60)
    image.save(path)
    lines = upload_to_lines(str(path), "lineart")
    assert lines.shape == (512, 512, 3)


def test_models_table_says_why_hub_models_are_missing_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rows = {row[0]: row for row in models_table(Registry())}
    assert rows["tiny-random-sd"][2] == "ready"
    assert rows["sd-turbo-scribble"][2] == "missing" and "HF_HUB_OFFLINE" in rows["sd-turbo-scribble"][3]
