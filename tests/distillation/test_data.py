"""Offline data pipeline: rendering, corrupt and empty inputs, the held-out split, augmentation, SketchPairs."""

import io
import json
import os
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from distillation.data import (
    DataError,
    Item,
    SketchPairs,
    _extract,
    augment_sketch,
    clipart_caption,
    contact_sheet,
    encode_texts,
    is_heldout,
    main,
    make_pair,
    prepare,
    svg_renderer,
)

SQUARE = '<rect x="16" y="16" width="40" height="40" fill="{fill}" stroke="{stroke}" stroke-width="3"/>'
CIRCLE = '<circle cx="36" cy="36" r="20" fill="{fill}" stroke="#000" stroke-width="3"/>'


def svg(body: str) -> str:
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="72" height="72" viewBox="0 0 72 72">{body}</svg>'


def write(path: Path, data: str | bytes | Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, Image.Image):
        data.save(path)
    else:
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def fake_cache(root: Path) -> Path:
    """A cache laid out like the fetched packages, with a handful of good, corrupt, empty and all-black items."""
    package = root / "openmoji" / "package"
    square, outline = svg(SQUARE.format(fill="#d22f27", stroke="#000")), svg(SQUARE.format(fill="none", stroke="#000"))
    full = svg('<rect width="72" height="72"/>')
    emoji = [  # hexcode, annotation, skin-tone base, colour SVG, black outline SVG
        ("1F7E5", "red square", "", square, outline),
        ("1F44B", "waving hand", "", svg(CIRCLE.format(fill="#fcea2b")), svg(CIRCLE.format(fill="none"))),
        (
            "1F44B-1F3FF",
            "waving hand: dark",
            "1F44B",
            svg(CIRCLE.format(fill="#a57939")),
            svg(CIRCLE.format(fill="none")),
        ),
        ("2B1C", "white square", "", svg(SQUARE.format(fill="#eee", stroke="none")), svg("")),  # empty outline
        ("2B1B", "black large square", "", full, full),  # all-black outline
        ("1F4A5", "collision", "", "<svg this is not xml", svg("")),  # corrupt
    ]
    entries = []
    for code, annotation, base, colour, black in emoji:
        write(package / "color" / "svg" / f"{code}.svg", colour)
        write(package / "black" / "svg" / f"{code}.svg", black)
        entries.append({"hexcode": code, "annotation": annotation, "skintone_base_hexcode": base})
    write(package / "data" / "openmoji.json", json.dumps(entries))

    clipart = root / "openclipart" / "usr" / "share" / "openclipart" / "svg"
    title = (
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        "<dc:title>{}</dc:title><rdf:li>fruit</rdf:li><rdf:li>food</rdf:li></metadata>"
    )
    write(
        clipart / "food" / "apple_01.svg",
        svg(title.format("red apple") + '<circle cx="36" cy="40" r="22" fill="red"/>'),
    )
    write(clipart / "food" / "truncated.svg", svg('<circle cx="36" cy="40" r="22" fill="red"/>')[:50])

    stamps = root / "tuxpaint" / "usr" / "share" / "tuxpaint" / "stamps"
    stamp = Image.new("RGBA", (90, 60), (0, 0, 0, 0))
    ImageDraw.Draw(stamp).ellipse((10, 10, 80, 50), fill=(30, 90, 200, 255))
    write(stamps / "animals" / "fish.png", stamp)
    write(stamps / "animals" / "fish.txt", "\u201cA blue fish.\u201d\nfr.utf8=Un poisson bleu.\n")
    write(stamps / "animals" / "fish_mirror.png", stamp)  # Tux Paint's mirrored copy: skipped
    write(stamps / "animals" / "broken.png", b"\x89PNG\r\n\x1a\n not really a png")
    for name in ("openmoji", "openclipart", "tuxpaint"):
        write(root / name / "source.json", json.dumps({"version": "test"}))
    return root


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("data")
    manifest = prepare(
        cache=fake_cache(root / "cache"), out=root / "out", resolution=64, edges="canny", heldout_fraction=0.5,
        progress=False,
    )  # fmt: skip
    return root / "out" / "64", manifest


def test_tiny_svg_renders_to_its_colours_and_outline(tmp_path):
    colour = write(tmp_path / "c.svg", svg(SQUARE.format(fill="#d22f27", stroke="#000")))
    black = write(tmp_path / "b.svg", svg(SQUARE.format(fill="none", stroke="#000")))
    item = Item("t/square", "openmoji", "red square", "t/square", colour, black)
    image, sketch = make_pair(item, 64, work_size=96, edge_method="canny", stroke=1.0, timeout=10)
    assert image.shape == (64, 64, 3) and sketch.shape == (64, 64)
    assert tuple(image[32, 32]) == pytest.approx((0xD2, 0x2F, 0x27), abs=3)  # the fill, in the middle
    assert set(np.unique(sketch)) == {0, 255}
    assert sketch[32, 32] == 255 and sketch[28:36, 32].max() == 255  # no ink inside the outline
    assert (sketch[32, :8] == 0).any() and (sketch[:8, 32] == 0).any()  # the outline, near the cropped border


def test_prepare_keeps_good_items_and_counts_the_rest(prepared):
    _, manifest = prepared
    openmoji = manifest["sources"]["openmoji"]["counts"]
    assert openmoji["kept"] == 3
    assert openmoji["skipped_corrupt"] == 1  # "<svg this is not xml"
    assert openmoji["dropped_empty"] == 1  # an outline with nothing drawn
    assert openmoji["dropped_all_black"] == 1
    clipart = manifest["sources"]["openclipart"]["counts"]
    assert clipart["listed"] == 2 and clipart["kept"] == 1 and clipart["skipped_corrupt"] == 1  # a truncated SVG
    tux = manifest["sources"]["tuxpaint"]["counts"]
    assert tux["listed"] == 2 and tux["kept"] == 1 and tux["skipped_corrupt"] == 1  # the _mirror copy is not listed
    assert sum(manifest["splits"].values()) == 5


def test_manifest_records_licences_and_credits_openmoji(prepared):
    _, manifest = prepared
    licences = {name: info["licence"] for name, info in manifest["sources"].items()}
    assert licences == {"openmoji": "CC-BY-SA-4.0", "openclipart": "public-domain", "tuxpaint": "GPL-2.0-or-later"}
    assert "OpenMoji" in manifest["attribution"] and "CC BY-SA 4.0" in manifest["attribution"]


def test_prepared_files_are_consistent(prepared):
    root, manifest = prepared
    pairs = [json.loads(line) for line in (root / "pairs.jsonl").read_text().splitlines()]
    captions = np.load(root / "captions.npz")
    assert captions["embedding"].shape == (len(captions["text"]), 384)
    np.testing.assert_allclose(np.linalg.norm(captions["embedding"].astype(np.float32), axis=1), 1.0, atol=2e-3)
    for split in ("train", "heldout"):
        arrays = np.load(root / f"{split}.npz")
        rows = [p for p in pairs if p["split"] == split]
        assert len(arrays["sketch"]) == len(arrays["image"]) == len(rows) == manifest["splits"][split]
        for p in rows:
            assert captions["text"][arrays["caption_index"][p["row"]]] == p["caption"]
            assert p["licence"]
        assert set(np.unique(arrays["sketch"])) <= {0, 255}
    assert {p["caption"] for p in pairs} >= {"red square", "A blue fish.", "red apple, fruit, food"}


def test_heldout_split_is_deterministic_disjoint_and_keeps_variants_together(prepared):
    ids = [f"openclipart/item_{i}" for i in range(20_000)]
    first = [is_heldout(i, 0.04) for i in ids]
    assert first == [is_heldout(i, 0.04) for i in ids]
    assert 0.03 < np.mean(first) < 0.05
    assert all(is_heldout(i, 0.08) for i, held in zip(ids, first, strict=True) if held)  # nested as it grows
    root, _ = prepared
    pairs = [json.loads(line) for line in (root / "pairs.jsonl").read_text().splitlines()]
    train = {p["id"] for p in pairs if p["split"] == "train"}
    heldout = {p["id"] for p in pairs if p["split"] == "heldout"}
    assert train and heldout and not train & heldout
    split_of = {p["id"]: p["split"] for p in pairs}
    assert split_of["openmoji/1F44B"] == split_of["openmoji/1F44B-1F3FF"]  # skin-tone variants share a group


def test_augmentation_keeps_shape_range_and_is_seeded():
    sketch = np.full((64, 64), 255, np.uint8)
    sketch[20:22, 8:56] = 0
    sketch[8:56, 40:42] = 0
    outputs = [augment_sketch(sketch, np.random.default_rng(seed)) for seed in range(8)]
    for out in outputs:
        assert out.shape == sketch.shape and out.dtype == np.uint8
        assert set(np.unique(out)) <= {0, 255}
        assert 0.4 < (out == 0).sum() / (sketch == 0).sum() < 4.0  # strokes change width, they do not vanish
    np.testing.assert_array_equal(outputs[3], augment_sketch(sketch, np.random.default_rng(3)))
    assert any(not np.array_equal(out, outputs[0]) for out in outputs[1:])


def test_sketch_pairs_serves_tensors_for_the_trainer(prepared):
    root, _ = prepared
    data = SketchPairs(root, "train", augment=True)
    sample = data[0]
    assert sample["sketch"].shape == (1, 64, 64) and sample["image"].shape == (3, 64, 64)
    assert 0.0 <= float(sample["sketch"].min()) and float(sample["sketch"].max()) == 1.0  # ink = 1
    assert -1.0 <= float(sample["image"].min()) and float(sample["image"].max()) <= 1.0
    assert sample["text_embedding"].shape == (384,)
    assert len(SketchPairs(root, "heldout")) + len(data) == 5


def test_missing_data_names_the_fetch_command(tmp_path, capsys):
    with pytest.raises(DataError, match="python -m distillation.data fetch"):
        prepare(cache=tmp_path / "nothing", out=tmp_path / "out", progress=False)
    assert main(["prepare", "--cache", str(tmp_path / "nothing"), "--out", str(tmp_path / "out")]) == 2
    assert "python -m distillation.data fetch" in capsys.readouterr().err


def test_extraction_keeps_only_wanted_regular_files(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in (
            ("./usr/share/x/a.svg", b"<svg/>"),
            ("./usr/share/x/a.ogg", b"sound"),
            ("../evil.svg", b"!"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("./usr/share/x/link.svg")
        link.type, link.linkname = tarfile.SYMTYPE, "a.svg"
        tar.addfile(link)
    buffer.seek(0)
    with tarfile.open(fileobj=buffer) as tar:
        assert _extract(tar, ("usr/share/x/*.svg",), tmp_path) == 1
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "usr", "usr/share", "usr/share/x", "usr/share/x/a.svg",
    ]  # fmt: skip


def test_clipart_captions_skip_boilerplate_titles():
    head = "<dc:title>Part of the Flat Icon Collection</dc:title><rdf:li>hash</rdf:li><rdf:li>printer</rdf:li>"
    assert clipart_caption(head, Path("computer/printer_01.svg")) == "printer"
    assert clipart_caption("<dc:title>A teapot</dc:title><rdf:li>food</rdf:li>", Path("f/t.svg")) == "A teapot, food"


def test_offline_text_encoder_gives_unit_vectors_that_rank_meaning():
    cat, kitten, flag = encode_texts(["a cat", "a kitten", "flag: Ireland"])
    assert cat.shape == (384,)
    np.testing.assert_allclose([np.linalg.norm(v) for v in (cat, kitten, flag)], 1.0, atol=1e-5)
    assert cat @ kitten > cat @ flag + 0.2


def test_missing_cairo_is_one_clear_error_not_every_svg_skipped(tmp_path, monkeypatch):
    svg_renderer.cache_clear()
    monkeypatch.setitem(sys.modules, "cairosvg", None)  # makes `import cairosvg` fail
    try:
        with pytest.raises(DataError, match="libcairo2"):
            prepare(cache=fake_cache(tmp_path / "cache"), out=tmp_path / "out", edges="canny", progress=False)
    finally:
        svg_renderer.cache_clear()


def test_contact_sheet_shows_sketch_and_image_side_by_side(prepared):
    root, _ = prepared
    sheet = np.asarray(contact_sheet(root, n=2, columns=2, split="heldout"))  # the fixture holds out 4 of 5 pairs
    assert sheet.shape[1] >= 2 * (2 * 64 + 6) and sheet.shape[0] > 64
    tile = sheet[6 : 6 + 64, 6 : 6 + 128]
    assert set(np.unique(tile[:, :64])) <= {0, 200, 255}  # the sketch half: ink, the frame, paper
    assert len(np.unique(tile[:, 64:].reshape(-1, 3), axis=0)) > 3  # the colour half


# ---- a folder of the person's own images (data.kind = "image_folder") ---------------------------------------------


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
        "ball.png", "box.jpg", "broken.jpg", "more/nested.PNG", "no_caption.bmp", "tinted.webp",
    ]  # fmt: skip
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
        "ball.png": "a red ball", "box.jpg": "a black box", "more/nested.PNG": "a nested one",
        "no_caption.bmp": "", "tinted.webp": "a tinted picture",
    }  # fmt: skip
    assert len(pairs) == 5
    with np.load(target / "train.npz") as arrays:
        sketches = arrays["sketch"]
        assert sketches.shape == (5, 32, 32) and arrays["image"].shape == (5, 32, 32, 3)
    assert set(np.unique(sketches)) == {0, 255} and (sketches == 255).mean() > 0.6  # black lines on white paper
    for row in rows:
        sample = pairs[row["row"]]
        assert sample["caption"] == row["caption"] and sample["sketch"].shape == (1, 32, 32)
        norm = float(sample["text_embedding"].norm())
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

    from distillation.config import ConfigError
    from distillation.trainer import PairsAsItems
    from tests.distillation.test_trainer import set_up

    folder = image_folder(tmp_path / "my photos")
    data = ["--data.kind=image_folder", f"--data.path={json.dumps(str(folder))}", "--data.sketch=lineart"]
    data += [f"--data.cache={json.dumps(str(tmp_path / 'cache'))}", "--data.guidance=[2.0]", "--data.augment=true"]
    trainer = set_up(tmp_path / "run", "tiny_scm_ladd.toml", "--teacher.kind=sketch_tiny", "--teacher.random=tiny",
                     "--teacher.controlnet=false", "--method.name=scm", "--optim.role_lr={}", *data)  # fmt: skip
    assert isinstance(trainer.dataset, PairsAsItems) and len(trainer.dataset) == 5
    item = trainer.dataset[0]
    assert item["x0"].shape == (3, 16, 16) and item["sketch"].shape == (1, 16, 16) and item["text"].shape == (384,)
    (prepared,) = (tmp_path / "cache").iterdir()
    assert json.loads((prepared / "manifest.json").read_text())["resolution"] == 16
    logs = trainer.train_step()
    assert all(math.isfinite(v) for v in logs.values()) and "student/skipped" not in logs
    with pytest.raises(ConfigError, match="data.kind 'image_folder' gives images with 'sketch' and 'text'"):
        set_up(tmp_path / "sana", "tiny_scm_ladd.toml", *data)  # the Sana preset's latent teacher
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="data.path: no images in"):
        set_up(tmp_path / "none", "tiny_scm_ladd.toml", "--teacher.kind=sketch_tiny", "--teacher.random=tiny",
               "--teacher.controlnet=false", "--method.name=scm", "--optim.role_lr={}", "--data.kind=image_folder",
               f"--data.path={json.dumps(str(empty))}")  # fmt: skip


def test_captions_from_file_names_fill_in_for_missing_ones(tmp_path):
    from distillation.data import caption_from_name, folder_summary, prepare_folder

    names = {"red_house-02.png": "red house", "myCatOnTheSofa.webp": "my cat on the sofa", "IMG_1234.jpg": "",
             "DSC 0042 beach.jpg": "beach", "a_sun_and_a_tree_07.png": "a sun and a tree", "12.png": ""}  # fmt: skip
    assert {name: caption_from_name(Path(name)) for name in names} == names

    folder = image_folder(tmp_path / "pictures")  # no_caption.bmp has no .txt
    _, plain = prepare_folder(folder, resolution=16, cache=tmp_path / "cache", progress=False)
    root, named = prepare_folder(folder, resolution=16, cache=tmp_path / "cache", progress=False, name_captions=True)
    assert plain["files_by_reason"]["caption_missing"] == ["no_caption.bmp"] and not plain["reused"]
    assert named["files_by_reason"]["caption_from_name"] == ["no_caption.bmp"] and not named["reused"]
    assert named["counts"]["caption_missing"] == 0 and "1 captioned from their file names" in folder_summary(named)
    rows = [json.loads(line) for line in (root / "pairs.jsonl").read_text().splitlines()]
    assert {row["file"]: row["caption"] for row in rows}["no_caption.bmp"] == "no caption"
