"""distillation.data.prepare and .pairs: a fake cache of every kind of source -> the prepared folder -> SketchPairs."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from distillation.data import DataError, SketchPairs, contact_sheet, prepare
from distillation.data.captions import concept_key
from distillation.data.cli import main
from distillation.data.colours import recolour
from distillation.data.prepare import RECOLOUR_SHIFTS, item_rng, make_pair, sketch_kind, subset
from distillation.data.sources import FETCH_FORMAT, Item
from pipelines.text import PROMPT_DIM, colour_words

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


def fetched(root: Path, name: str) -> None:
    write(root / name / "source.json", json.dumps({"format": FETCH_FORMAT, "version": "test"}))


def fake_cache(root: Path) -> Path:
    """A cache laid out like the fetched packages, with good, corrupt and empty items, variants that are not listed,
    and one concept ("red square") drawn by two sources."""
    package = root / "openmoji" / "package"
    square, outline = svg(SQUARE.format(fill="#d22f27", stroke="#000")), svg(SQUARE.format(fill="none", stroke="#000"))
    emoji = [  # hexcode, annotation, group, skin-tone base, colour SVG, black outline SVG
        ("1F7E5", "red square", "symbols", "", square, outline),
        (
            "1F44B",
            "waving hand",
            "people-body",
            "",
            svg(CIRCLE.format(fill="#fcea2b")),
            svg(CIRCLE.format(fill="none")),
        ),
        ("1F44B-1F3FF", "waving hand: dark skin tone", "people-body", "1F44B", square, outline),  # a variant
        ("1F1EE-1F1EA", "flag: Ireland", "flags", "", square, outline),  # flags are left out
        ("2B1C", "white square", "symbols", "", svg(SQUARE.format(fill="#eee", stroke="none")), svg("")),  # empty
        ("1F4A5", "collision", "symbols", "", "<svg this is not xml", svg("")),  # corrupt
    ]
    entries = []
    for code, annotation, group, base, colour, black in emoji:
        write(package / "color" / "svg" / f"{code}.svg", colour)
        write(package / "black" / "svg" / f"{code}.svg", black)
        entries.append({"hexcode": code, "annotation": annotation, "group": group, "skintone_base_hexcode": base})
    write(package / "data" / "openmoji.json", json.dumps(entries))

    clipart = root / "openclipart" / "usr" / "share" / "openclipart" / "svg"
    title = (
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        "<dc:title>{}</dc:title><rdf:li>fruit</rdf:li><rdf:li>food</rdf:li></metadata>"
    )
    apple = '<circle cx="36" cy="40" r="22" fill="red"/><rect x="34" y="8" width="4" height="12" fill="#5a3"/>'
    write(clipart / "food" / "apple_01.svg", svg(title.format("red apple") + apple))
    write(clipart / "food" / "truncated.svg", svg('<circle cx="36" cy="40" r="22" fill="red"/>')[:50])

    stamps = root / "tuxpaint" / "usr" / "share" / "tuxpaint" / "stamps"
    stamp = Image.new("RGBA", (90, 60), (0, 0, 0, 0))
    ImageDraw.Draw(stamp).ellipse((10, 10, 80, 50), fill=(30, 90, 200, 255))
    write(stamps / "animals" / "fish.png", stamp)
    write(stamps / "animals" / "fish.txt", "\u201cA blue fish.\u201d\nfr.utf8=Un poisson bleu.\n")
    write(stamps / "animals" / "fish_mirror.png", stamp)  # Tux Paint's mirrored copy: skipped
    write(stamps / "animals" / "broken.png", b"\x89PNG\r\n\x1a\n not really a png")

    body = '<rect x="4" y="4" width="28" height="28" fill="{}"/><circle cx="18" cy="18" r="8" fill="#fff"/>'
    icons = {
        "red-square": {"body": body.format("#dd2e44")},
        "green-square": {"body": body.format("#78b159")},
        "green-square-dark-skin-tone": {"body": body.format("#111")},  # a variant: not listed
        "hidden-square": {"body": body.format("#000"), "hidden": True},
    }
    write(
        root / "twemoji" / "package" / "icons.json",
        json.dumps({"prefix": "twemoji", "icons": icons, "width": 36, "height": 36}),
    )
    for name in ("openmoji", "openclipart", "tuxpaint", "twemoji"):
        fetched(root, name)
    return root


SOURCE_NAMES = ("openmoji", "openclipart", "tuxpaint", "twemoji")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("data")
    manifest = prepare(
        cache=fake_cache(root / "cache"),
        out=root / "out",
        resolution=64,
        sources=SOURCE_NAMES,
        edges="canny",
        edge_share=0.0,
        heldout_fraction=0.5,
        progress=False,
    )
    return root / "out" / "64", manifest


def test_prepare_keeps_good_items_and_counts_the_rest(prepared):
    _, manifest = prepared
    openmoji = manifest["sources"]["openmoji"]["counts"]
    assert openmoji["listed"] == 4  # no skin-tone variant, no flag
    assert (openmoji["kept"], openmoji["skipped_corrupt"], openmoji["dropped_empty"]) == (2, 1, 1)
    clipart = manifest["sources"]["openclipart"]["counts"]
    assert clipart["listed"] == 2 and clipart["kept"] == 1 and clipart["skipped_corrupt"] == 1  # a truncated SVG
    tux = manifest["sources"]["tuxpaint"]["counts"]
    assert tux["listed"] == 2 and tux["kept"] == 1 and tux["skipped_corrupt"] == 1  # the _mirror copy is not listed
    assert manifest["sources"]["twemoji"]["counts"]["kept"] == 2  # no variant, no hidden icon
    assert sum(manifest["splits"].values()) == 6
    assert manifest["sketch"]["kinds"] == {"freehand": 6}


def test_manifest_records_licences_and_credits(prepared):
    _, manifest = prepared
    licences = {name: info["licence"] for name, info in manifest["sources"].items()}
    assert licences == {
        "openmoji": "CC-BY-SA-4.0",
        "openclipart": "public-domain",
        "tuxpaint": "GPL-2.0-or-later",
        "twemoji": "CC-BY-4.0",
    }
    assert "OpenMoji" in manifest["attribution"] and "Twitter, CC-BY-4.0" in manifest["attribution"]


def test_prepared_files_are_consistent(prepared):
    root, manifest = prepared
    pairs = [json.loads(line) for line in (root / "pairs.jsonl").read_text().splitlines()]
    captions = np.load(root / "captions.npz")
    assert captions["embedding"].shape == (len(captions["text"]), 384)
    np.testing.assert_allclose(np.linalg.norm(captions["embedding"].astype(np.float32), axis=1), 1.0, atol=2e-3)
    for split in ("train", "heldout"):
        arrays = np.load(root / f"{split}.npz")
        rows = [p for p in pairs if p["split"] == split]
        n = manifest["splits"][split]
        assert len(arrays["sketch"]) == len(arrays["sketch_alt"]) == len(arrays["image"]) == len(rows) == n
        assert arrays["recolour_caption_index"].shape == (n, len(RECOLOUR_SHIFTS))
        assert arrays["recolour_shift"].tolist() == list(RECOLOUR_SHIFTS)
        for p in rows:
            assert captions["text"][arrays["caption_index"][p["row"]]] == p["caption"]
            assert arrays["sketch_kind"][p["row"]] == p["sketch"] == "freehand"
            assert p["licence"] and p["concept"] and p["style"]
        assert set(np.unique(arrays["sketch"])) <= {0, 255} and arrays["sketch"].dtype == np.uint8
    by_id = {p["id"]: p for p in pairs}
    assert by_id["openmoji/1F7E5"]["caption"] == "red square, red and black, line emoji"  # a black outline
    assert by_id["tuxpaint/animals/fish"]["caption"] == "blue fish, blue, photo"
    assert by_id["twemoji/green-square"]["caption"] == "green square, green and white, flat emoji"
    assert by_id["openclipart/food/apple_01"]["caption"].startswith("red apple, fruit, food, red")


def test_recoloured_captions_say_the_new_colours(prepared):
    root, _ = prepared
    checked = 0
    for split in ("train", "heldout"):
        pairs = SketchPairs(root, split)
        for row, index in enumerate(pairs.caption_index):
            recoloured = [str(pairs.captions[i]) for i in pairs.recolour_index[row]]
            if str(pairs.captions[index]) == "red square, red and black, line emoji":  # at 60, 120, 210 degrees:
                assert recoloured[:3] == [
                    "yellow square, yellow and black, line emoji",
                    "green square, green and black, line emoji",
                    "blue square, blue and black, line emoji",
                ]
                checked += 1
    assert checked == 1


def test_one_concept_lands_in_one_split(prepared):
    root, _ = prepared
    pairs = [json.loads(line) for line in (root / "pairs.jsonl").read_text().splitlines()]
    splits: dict[str, set[str]] = {}
    for p in pairs:
        splits.setdefault(concept_key(p["concept"]), set()).add(p["split"])
    assert all(len(found) == 1 for found in splits.values())
    assert len([p for p in pairs if p["concept"] == "red square"]) == 2  # OpenMoji's and Twemoji's
    assert {p["split"] for p in pairs} == {"train", "heldout"}


def test_sketch_pairs_serves_tensors_and_augments_consistently(prepared):
    root, _ = prepared
    for split in ("train", "heldout"):
        plain = SketchPairs(root, split)
        data = SketchPairs(root, split, augment=True, recolour=1.0)
        for row in range(len(data)):
            sample = data[row]
            assert sample["sketch"].shape == (1, 64, 64) and sample["image"].shape == (3, 64, 64)
            sketch = (255 * (1 - sample["sketch"][0].numpy())).round().astype(np.uint8)
            assert any(np.array_equal(sketch, s) for s in (plain.sketches[row], plain.sketches_alt[row]))
            image = ((sample["image"].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
            served = [  # the shifts whose picture and caption this item is (two shifts may share a caption)
                k
                for k, i in enumerate(plain.recolour_index[row])
                if str(plain.captions[i]) == sample["caption"]
                and np.array_equal(image, recolour(plain.images[row], RECOLOUR_SHIFTS[k]))
                and sample["text_embedding"].equal(plain.embeddings[i])
            ]
            assert served, sample["caption"]
    sample = SketchPairs(root, "train")[0]
    assert float(sample["sketch"].max()) == 1.0 and -1.0 <= float(sample["image"].min())
    assert sample["text_embedding"].shape == (PROMPT_DIM,)
    assert sample["text_embedding"][384:].equal(torch.from_numpy(colour_words(sample["caption"])))


def test_the_two_drawings_of_a_pair_differ_and_are_thin_open_outlines(prepared):
    root, _ = prepared
    with np.load(root / "train.npz") as train, np.load(root / "heldout.npz") as heldout:
        sketches = np.concatenate([train["sketch"], heldout["sketch"]])
        alts = np.concatenate([train["sketch_alt"], heldout["sketch_alt"]])
        images = np.concatenate([train["image"], heldout["image"]])
    assert all(not np.array_equal(a, b) for a, b in zip(sketches, alts, strict=True))
    ink = (sketches < 128).mean(axis=(1, 2))
    painted = (images.min(axis=3) < 240).mean(axis=(1, 2))
    assert (ink < 0.6 * painted).all()  # outlines, not fills: much less ink than picture


def test_make_pair_is_seeded_and_draws_edges_on_request(tmp_path):
    colour = write(tmp_path / "c.svg", svg(SQUARE.format(fill="#d22f27", stroke="#000")))
    item = Item("t/square", "openclipart", "red square", colour)
    first = make_pair(item, 64, kind="freehand", rng=item_rng(0, item.id))
    again = make_pair(item, 64, kind="freehand", rng=item_rng(0, item.id))
    other = make_pair(item, 64, kind="freehand", rng=item_rng(1, item.id))
    assert np.array_equal(first.sketch, again.sketch) and not np.array_equal(first.sketch, other.sketch)
    assert first.image.shape == (64, 64, 3) and tuple(first.image[32, 32]) == pytest.approx((0xD2, 0x2F, 0x27), abs=3)
    assert first.colours[0].words == ["red", "black"] and len(first.colours) == 1 + len(RECOLOUR_SHIFTS)
    edges = make_pair(item, 64, kind="canny", rng=item_rng(0, item.id), work_size=96)
    assert edges.kind == "canny" and (edges.sketch == 0).any() and edges.sketch[32, 32] == 255


def test_sketch_kinds_and_subsets_are_seeded_shares():
    ids = [f"s/item_{i}" for i in range(4000)]
    kinds = [sketch_kind(i, seed=0, edge_share=0.2, edges="both") for i in ids]
    assert kinds == [sketch_kind(i, seed=0, edge_share=0.2, edges="both") for i in ids]
    assert 0.17 < np.mean([k != "freehand" for k in kinds]) < 0.23
    assert 0.4 < kinds.count("hed") / (kinds.count("hed") + kinds.count("canny")) < 0.6
    assert set(sketch_kind(i, seed=0, edge_share=0.2, edges="canny") for i in ids) == {"freehand", "canny"}
    items = [Item(i, "s", "x", "<svg/>") for i in ids]
    assert [item.id for item in subset(items, 10)] == [item.id for item in subset(list(reversed(items)), 10)]
    assert len(subset(items, None)) == 4000


def test_missing_data_names_the_fetch_command(tmp_path, capsys):
    with pytest.raises(DataError, match="python -m distillation.data fetch"):
        prepare(cache=tmp_path / "nothing", out=tmp_path / "out", progress=False)
    assert main(["prepare", "--cache", str(tmp_path / "nothing"), "--out", str(tmp_path / "out")]) == 2
    assert "python -m distillation.data fetch" in capsys.readouterr().err


def test_cli_prepares_and_draws_a_contact_sheet(prepared, tmp_path, capsys):
    root, _ = prepared
    cache = root.parent.parent / "cache"
    argv = ["prepare", "--cache", str(cache), "--out", str(tmp_path / "out"), "--resolution", "32"]
    assert main([*argv, "--sources", "twemoji", "--edges", "canny", "--edge-share", "0.5"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["out"] == str(tmp_path / "out" / "32") and sum(report["splits"].values()) == 2
    sheet_path = tmp_path / "sheet.png"
    assert main(["sheet", "--data", str(root), "--out", str(sheet_path), "--n", "2", "--split", "train"]) == 0
    sheet = np.asarray(Image.open(sheet_path).convert("RGB"))
    assert sheet.shape[1] >= 2 * (2 * 64 + 6)
    tile = np.asarray(contact_sheet(root, n=1, columns=1))[6 : 6 + 64, 6 : 6 + 128]
    assert set(np.unique(tile[:, :64])) <= {0, 200, 255}  # the sketch half: ink, the frame, paper
    assert len(np.unique(tile[:, 64:].reshape(-1, 3), axis=0)) > 3  # the colour half


def test_workers_draw_the_same_pairs(prepared, tmp_path):
    cache = prepared[0].parent.parent / "cache"
    common = {
        "cache": cache,
        "resolution": 32,
        "sources": ("openmoji", "twemoji"),
        "edges": "canny",
        "progress": False,
    }
    prepare(out=tmp_path / "one", workers=1, edge_share=0.5, **common)
    prepare(out=tmp_path / "two", workers=2, edge_share=0.5, **common)
    for split in ("train", "heldout"):
        with (
            np.load(tmp_path / "one" / "32" / f"{split}.npz") as one,
            np.load(tmp_path / "two" / "32" / f"{split}.npz") as two,
        ):
            assert sorted(one) == sorted(two) and all(np.array_equal(one[key], two[key]) for key in one)
    assert (tmp_path / "one" / "32" / "pairs.jsonl").read_text() == (
        tmp_path / "two" / "32" / "pairs.jsonl"
    ).read_text()


def test_a_concept_colour_follows_the_picture_when_recoloured(tmp_path):
    light = '<rect x="8" y="8" width="56" height="56" fill="#ffec64"/>'  # light yellow: 210 degrees make it purple
    write(
        tmp_path / "cache" / "twemoji" / "package" / "icons.json",
        json.dumps({"prefix": "twemoji", "icons": {"yellow-square": {"body": light}}, "width": 72, "height": 72}),
    )
    fetched(tmp_path / "cache", "twemoji")
    prepare(
        cache=tmp_path / "cache",
        out=tmp_path / "out",
        resolution=32,
        sources=["twemoji"],
        edge_share=0.0,
        heldout_fraction=0.0,
        progress=False,
    )
    pairs = SketchPairs(tmp_path / "out" / "32", "train")
    assert [str(pairs.captions[i]) for i in pairs.recolour_index[0]][2] == "purple square, purple, flat emoji"
