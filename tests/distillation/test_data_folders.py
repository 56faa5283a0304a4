"""distillation.data.folders: a folder of the person's own images (data.kind = "image_folder") -> prepared pairs."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from distillation.data import DataError, SketchPairs
from distillation.data.cli import main
from pipelines.text import PROMPT_DIM
from tests.distillation.test_data_prepare import write


def photo(seed: int, size: tuple[int, int] = (48, 36)) -> Image.Image:
    """A small 'photo': a coloured disc and a dark square on a tinted background (edges for every extractor)."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, tuple(int(v) for v in rng.integers(170, 240, 3)))
    draw = ImageDraw.Draw(image)
    draw.ellipse((6, 6, 26, 26), fill=tuple(int(v) for v in rng.integers(0, 120, 3)))
    draw.rectangle((20 + seed % 4, 12, 40, 30), outline=(0, 0, 0), width=2)
    return image


def image_folder(root: Path) -> Path:
    """6 images (png, jpg, webp, bmp; one in a subfolder): 5 readable, 1 corrupt; captions beside all readable ones
    but one; plus files that are not training images (a hidden AppleDouble file, a text file, a .gif)."""
    write(root / "ball.png", photo(0))
    write(root / "ball.txt", "a red ball\n")
    write(root / "box.jpg", photo(1))
    write(root / "box.txt", "  a  black\tbox \n")
    write(root / "tinted.webp", photo(2))
    write(root / "tinted.txt", "\ufeffa tinted picture")  # a UTF-8 byte-order mark, as Notepad writes
    write(root / "no_caption.bmp", photo(3))
    write(root / "more" / "nested.PNG", photo(4, (36, 48)))  # a subfolder, an upper-case suffix, portrait
    write(root / "more" / "nested.txt", "a nested one")
    write(root / "broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg")
    write(root / "broken.txt", "never used")
    write(root / "._ball.png", b"AppleDouble metadata")  # hidden: not listed
    write(root / "notes.txt", "not a caption of anything")
    write(root / "anim.gif", photo(5))  # not an image kind the folder reads
    return root


def test_image_folder_becomes_sketch_pairs_with_counts_and_names(tmp_path):
    from distillation.data import FOLDER_SUFFIXES, folder_summary, list_images, prepare_folder

    folder = image_folder(tmp_path / "my photos")
    assert [p.relative_to(folder).as_posix() for p in list_images(folder)] == [
        "ball.png",
        "box.jpg",
        "broken.jpg",
        "more/nested.PNG",
        "no_caption.bmp",
        "tinted.webp",
    ]
    assert FOLDER_SUFFIXES == (".png", ".jpg", ".jpeg", ".webp", ".bmp")
    target, manifest = prepare_folder(folder, resolution=32, sketch="canny", cache=tmp_path / "cache", progress=False)
    assert target.parent == tmp_path / "cache" and target.name.startswith("my_photos-") and not manifest["reused"]
    counts = manifest["counts"]
    assert (counts["images"], counts["used"], counts["skipped_corrupt"], counts["caption_missing"]) == (6, 5, 1, 1)
    assert manifest["files_by_reason"]["skipped_corrupt"][0]["file"] == "broken.jpg"
    assert "Error" in manifest["files_by_reason"]["skipped_corrupt"][0]["reason"]  # why, for the log
    assert manifest["files_by_reason"]["caption_missing"] == ["no_caption.bmp"]
    summary = folder_summary(manifest)
    assert "5 of 6 images" in summary and "1 unreadable skipped: broken.jpg" in summary
    assert "1 without a caption (trained with the empty prompt)" in summary

    pairs = SketchPairs(target)  # the trainer's reader, unchanged
    rows = [json.loads(line) for line in (target / "pairs.jsonl").read_text().splitlines()]
    assert {row["file"]: row["caption"] for row in rows} == {
        "ball.png": "a red ball",
        "box.jpg": "a black box",
        "more/nested.PNG": "a nested one",
        "no_caption.bmp": "",
        "tinted.webp": "a tinted picture",
    }
    assert len(pairs) == 5
    with np.load(target / "train.npz") as arrays:
        sketches = arrays["sketch"]
        assert sketches.shape == (5, 32, 32) and arrays["image"].shape == (5, 32, 32, 3)
    assert set(np.unique(sketches)) == {0, 255} and (sketches == 255).mean() > 0.6  # black lines on white paper
    for row in rows:
        sample = pairs[row["row"]]
        assert sample["caption"] == row["caption"] and sample["sketch"].shape == (1, 32, 32)
        norm = float(sample["text_embedding"][:384].norm())  # the sentence embedding; colour words follow
        assert norm == 0.0 if row["caption"] == "" else norm == pytest.approx(1.0, abs=2e-3)  # "" = unconditional

    again, manifest = prepare_folder(folder, resolution=32, sketch="canny", cache=tmp_path / "cache", progress=False)
    assert again == target and manifest["reused"]  # one preparation per unchanged folder and settings
    other, _ = prepare_folder(folder, resolution=32, sketch="lineart", cache=tmp_path / "cache", progress=False)
    assert other != target and target.is_dir()  # other settings: another copy beside it
    write(folder / "no_caption.txt", "now with a caption")  # the folder changed: prepared again, the stale copy goes
    changed, manifest = prepare_folder(folder, resolution=32, sketch="canny", cache=tmp_path / "cache", progress=False)
    assert changed not in (target, other) and not manifest["reused"] and manifest["counts"]["caption_missing"] == 0
    assert not target.exists() and other.is_dir()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted([changed.name, other.name])


def test_image_folder_sketch_is_an_outline_in_the_canvas_convention(tmp_path):
    """A dark square on white: ink (0 in the file, 1 in SketchPairs) along its border, paper inside and outside."""
    from distillation.data import prepare_folder

    picture = Image.new("RGB", (96, 64), "white")  # landscape: the centred 64 x 64 square is kept
    ImageDraw.Draw(picture).rectangle((32, 16, 63, 47), fill=(20, 20, 20))
    write(tmp_path / "in" / "square.png", picture)
    for method in ("canny", "lineart"):
        target, _ = prepare_folder(tmp_path / "in", resolution=64, sketch=method, cache=tmp_path / "c", progress=False)
        sketch = np.load(target / "train.npz")["sketch"][0]
        assert sketch[32, 32] == 255 and sketch[2, 2] == 255 and sketch[32, 60] == 255, method  # paper
        border = sketch[14:19, 24:40]  # across the square's top edge (x 32..63 -> 0..31 after the crop)
        assert (border == 0).any(), method
        ink = SketchPairs(target)[0]["sketch"]
        assert float(ink.max()) == 1.0 and float(ink[0, 32, 32]) == 0.0


def test_image_folder_bad_input_is_named(tmp_path, monkeypatch):
    from distillation import data as data_module
    from distillation.data import prepare_folder

    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="does not exist"):
        prepare_folder(tmp_path / "nowhere", resolution=16, cache=cache, progress=False)
    with pytest.raises(DataError, match="is not a folder"):
        prepare_folder(write(tmp_path / "a.png", photo(0)), resolution=16, cache=cache, progress=False)
    write(tmp_path / "empty" / "caption.txt", "a caption without its image")
    write(tmp_path / "empty" / ".hidden" / "x.png", photo(0))
    with pytest.raises(DataError, match=r"no images in .*empty \(looked for \.png/\.jpg/\.jpeg/\.webp/\.bmp"):
        prepare_folder(tmp_path / "empty", resolution=16, cache=cache, progress=False)
    write(tmp_path / "bad" / "one.png", b"\x89PNG\r\n\x1a\n truncated")
    write(tmp_path / "bad" / "two.webp", b"RIFF....WEBP")
    with pytest.raises(DataError, match=r"none of the 2 images .* is usable \(2 unreadable"):
        prepare_folder(tmp_path / "bad", resolution=16, cache=cache, progress=False)
    with pytest.raises(DataError, match="unknown sketch extractor 'sobel'"):
        prepare_folder(tmp_path / "bad", resolution=16, sketch="sobel", cache=cache, progress=False)
    monkeypatch.setattr(data_module.HED, "available", staticmethod(lambda: False))
    with pytest.raises(DataError, match=r"'hed' needs the HED weights.*use 'canny'"):
        prepare_folder(tmp_path / "bad", resolution=16, sketch="hed", cache=cache, progress=False)
    assert data_module.folder_sketches() == ("canny", "lineart")
    assert not cache.exists() or not list(cache.iterdir())  # nothing half-written


def test_image_folder_captions_that_are_not_utf8_are_read_and_named(tmp_path):
    from distillation.data import folder_summary, prepare_folder, read_caption

    write(tmp_path / "in" / "cafe.png", photo(0))
    write(tmp_path / "in" / "cafe.txt", "caf\xe9 cr\xe8me".encode("cp1252"))
    write(tmp_path / "in" / "blank.png", photo(1))
    write(tmp_path / "in" / "blank.txt", " \n\t")
    assert read_caption(tmp_path / "in" / "cafe.png") == ("caf\ufffd cr\ufffdme", "not_utf8")
    assert read_caption(tmp_path / "in" / "blank.png") == ("", "empty")
    assert read_caption(tmp_path / "in" / "missing.png") == ("", "missing")
    latin_name = os.fsdecode(b"caf\xe9.png")  # a file name that is not UTF-8 either
    write(tmp_path / "in" / latin_name, photo(2))
    target, manifest = prepare_folder(tmp_path / "in", resolution=16, cache=tmp_path / "cache", progress=False)
    assert manifest["counts"]["used"] == 3 and manifest["files_by_reason"]["caption_missing"] == [latin_name]
    assert prepare_folder(tmp_path / "in", resolution=16, cache=tmp_path / "cache", progress=False)[1]["reused"]
    assert manifest["files_by_reason"]["caption_not_utf8"] == ["cafe.png"]
    assert manifest["files_by_reason"]["caption_empty"] == ["blank.png"]
    assert "captions not UTF-8" in folder_summary(manifest) and "cafe.png" in folder_summary(manifest)
    assert sorted(SketchPairs(target).captions) == ["", "caf\ufffd cr\ufffdme"]


def test_image_folder_cli_prepares_and_reports(tmp_path, capsys):
    folder = image_folder(tmp_path / "in")
    assert main(["folder", str(folder), "--resolution", "16", "--cache", str(tmp_path / "cache")]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out.strip().splitlines()[-1])
    assert report["command"] == "folder" and report["counts"]["used"] == 5 and not report["reused"]
    assert "broken.jpg" in captured.err
    assert main(["folder", str(tmp_path / "nowhere"), "--cache", str(tmp_path / "cache")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_image_folder_trains_a_step_of_the_small_pixel_teacher(tmp_path):
    """data.kind = "image_folder": prepared at the teacher's sample size (16 px) into data.cache, read by SketchPairs,
    and one sCM step on a random sketch_tiny teacher is finite."""
    import math

    from distillation.batching import PairsAsItems
    from distillation.config import ConfigError
    from tests.distillation.test_trainer import set_up

    folder = image_folder(tmp_path / "my photos")
    data = ["--data.kind=image_folder", f"--data.path={json.dumps(str(folder))}", "--data.sketch=lineart"]
    data += [f"--data.cache={json.dumps(str(tmp_path / 'cache'))}", "--data.guidance=[2.0]", "--data.augment=true"]
    trainer = set_up(
        tmp_path / "run",
        "tiny_scm_ladd.toml",
        "--teacher.kind=sketch_tiny",
        "--teacher.random=tiny",
        "--teacher.controlnet=false",
        "--method.name=scm",
        "--optim.role_lr={}",
        *data,
    )
    assert isinstance(trainer.dataset, PairsAsItems) and len(trainer.dataset) == 5
    item = trainer.dataset[0]
    assert item["x0"].shape == (3, 16, 16) and item["sketch"].shape == (1, 16, 16)
    assert item["text"].shape == (PROMPT_DIM,)
    (prepared,) = (tmp_path / "cache").iterdir()
    assert json.loads((prepared / "manifest.json").read_text())["resolution"] == 16
    logs = trainer.train_step()
    assert all(math.isfinite(v) for v in logs.values()) and "student/skipped" not in logs
    with pytest.raises(ConfigError, match="data.kind 'image_folder' gives images with 'sketch' and 'text'"):
        set_up(tmp_path / "sana", "tiny_scm_ladd.toml", *data)  # the Sana preset's latent teacher
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="data.path: no images in"):
        set_up(
            tmp_path / "none",
            "tiny_scm_ladd.toml",
            "--teacher.kind=sketch_tiny",
            "--teacher.random=tiny",
            "--teacher.controlnet=false",
            "--method.name=scm",
            "--optim.role_lr={}",
            "--data.kind=image_folder",
            f"--data.path={json.dumps(str(empty))}",
        )


def test_captions_from_file_names_fill_in_for_missing_ones(tmp_path):
    from distillation.data import caption_from_name, folder_summary, prepare_folder

    names = {
        "red_house-02.png": "red house",
        "myCatOnTheSofa.webp": "my cat on the sofa",
        "IMG_1234.jpg": "",
        "DSC 0042 beach.jpg": "beach",
        "a_sun_and_a_tree_07.png": "a sun and a tree",
        "12.png": "",
    }
    assert {name: caption_from_name(Path(name)) for name in names} == names

    folder = image_folder(tmp_path / "pictures")  # no_caption.bmp has no .txt
    _, plain = prepare_folder(folder, resolution=16, cache=tmp_path / "cache", progress=False)
    root, named = prepare_folder(folder, resolution=16, cache=tmp_path / "cache", progress=False, name_captions=True)
    assert plain["files_by_reason"]["caption_missing"] == ["no_caption.bmp"] and not plain["reused"]
    assert named["files_by_reason"]["caption_from_name"] == ["no_caption.bmp"] and not named["reused"]
    assert named["counts"]["caption_missing"] == 0 and "1 captioned from their file names" in folder_summary(named)
    rows = [json.loads(line) for line in (root / "pairs.jsonl").read_text().splitlines()]
    assert {row["file"]: row["caption"] for row in rows}["no_caption.bmp"] == "no caption"
