"""Offline data pipeline: rendering, corrupt and empty inputs, the held-out split, augmentation, SketchPairs."""

import io
import json
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
