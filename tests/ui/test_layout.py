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


def warnings_of(monkeypatch) -> list[str]:
    import ui.layout

    said: list[str] = []
    monkeypatch.setattr(ui.layout.gr, "Warning", lambda message, *a, **k: said.append(message))
    return said


def test_svg_and_blank_uploads_are_refused_in_words_not_class_names(tmp_path, monkeypatch):
    said = warnings_of(monkeypatch)
    svg = tmp_path / "drawing.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="5" height="5"/></svg>')
    tiny = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (200, 30, 30)).save(tiny)
    assert upload_to_lines(str(svg), "canny") is None and upload_to_lines(str(tiny), "lineart") is None
    assert "drawing.svg is not a picture this app reads" in said[0] and "PNG" in said[0]
    assert "no lines found in dot.png" in said[1]
    assert not any("Error" in message for message in said)


def test_white_lines_on_transparency_become_dark_lines_on_white(tmp_path, monkeypatch):
    said = warnings_of(monkeypatch)
    image = Image.new("RGBA", (200, 200), (255, 255, 255, 0))
    ImageDraw.Draw(image).ellipse((40, 40, 160, 160), outline=(255, 255, 255, 255), width=6)
    path = tmp_path / "white.png"
    image.save(path)
    lines = upload_to_lines(str(path), "none")
    assert said == [] and lines is not None
    ring = lines[lines.shape[0] // 2, : lines.shape[1] // 2].min(axis=-1)
    assert ring.min() < 64 and lines[lines.shape[0] // 2, lines.shape[1] // 2].min() > 200  # dark ring, white middle
