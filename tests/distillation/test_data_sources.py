"""distillation.data.sources: registry packages, their licences, and the items each source lists."""

import io
import json
import tarfile
from pathlib import Path

import pytest

from distillation.data import DataError
from distillation.data.sources import (
    FETCH_FORMAT,
    SOURCES,
    _extract,
    check_licence,
    clipart_caption,
    icon_svg,
    iconify_icons,
    is_fetched,
    list_items,
    openmoji_items,
)
from tests.distillation.test_data_prepare import fake_cache


def test_every_source_is_pinned_licensed_credited_and_styled():
    assert len(SOURCES) == 12
    for name, source in SOURCES.items():
        assert source.name == name and source.licence and source.credit and source.homepage and source.style
        if source.registry == "npm":
            assert source.package.rpartition("@")[2][:1].isdigit(), source.package  # a pinned version
    assert {SOURCES[name].licence for name in ("noto", "fxemoji")} == {"Apache-2.0"}
    assert {SOURCES[name].licence for name in ("twemoji", "emojione", "streamline-emojis")} == {"CC-BY-4.0"}
    assert {SOURCES[n].licence for n in ("fluent-emoji-flat", "flat-color-icons", "fluent-color", "meteocons")} == {
        "MIT"
    }


def test_licence_is_read_from_the_package_and_a_change_is_refused(tmp_path):
    source = SOURCES["twemoji"]
    (tmp_path / "package").mkdir()
    (tmp_path / "package" / "package.json").write_text(json.dumps({"name": "x", "license": "CC-BY-4.0"}))
    assert check_licence(source, tmp_path) == '"license": "CC-BY-4.0"'
    (tmp_path / "package" / "package.json").write_text(json.dumps({"name": "x", "license": "CC-BY-NC-4.0"}))
    with pytest.raises(DataError, match="does not state the licence CC-BY-4.0.*review the package's terms"):
        check_licence(source, tmp_path)
    with pytest.raises(DataError, match="no copyright to read its licence from|no usr/share/doc"):
        check_licence(SOURCES["tuxpaint"], tmp_path)


def test_a_fetch_without_the_licence_check_is_fetched_again(tmp_path):
    (tmp_path / "noto").mkdir()
    (tmp_path / "noto" / "source.json").write_text(json.dumps({"version": "1"}))  # an older fetch format
    assert not is_fetched(tmp_path, "noto") and not is_fetched(tmp_path, "twemoji")
    (tmp_path / "noto" / "source.json").write_text(json.dumps({"format": FETCH_FORMAT, "version": "1"}))
    assert is_fetched(tmp_path, "noto")


def test_iconify_lists_drawings_not_variants_flags_hidden_or_smaller_sizes():
    icons = {
        name: {"body": "<path/>"}
        for name in [
            "boy",
            "boy-light",
            "boy-medium-dark",
            "traffic-light",
            "woman-dark-skin-tone",
            "flag-ireland",
            "keycap-1",
            "apps-16",
            "apps-24",
            "apps-48",
            "cloud-1",
            "cloud-2",
            "rain-fill",
        ]
    }
    icons["ghost"] = {"body": "<path/>", "hidden": True}
    kept = sorted(iconify_icons({"icons": icons}))
    assert kept == ["apps-48", "boy", "cloud-1", "cloud-2", "rain-fill", "traffic-light"]


def test_icon_svg_uses_the_icon_or_set_box():
    assert 'viewBox="0 0 36 36"' in icon_svg({"body": "<g/>"}, {"width": 36, "height": 36})
    assert 'viewBox="2 0 20 16"' in icon_svg({"body": "<g/>", "left": 2, "width": 20}, {})
    assert icon_svg({"body": "<g/>"}, {}).endswith('viewBox="0 0 16 16"><g/></svg>')


def test_sources_list_their_items(tmp_path):
    cache = fake_cache(tmp_path)
    openmoji = openmoji_items(cache / "openmoji")
    assert [item.name for item in openmoji] == ["red square", "waving hand", "white square", "collision"]
    assert all(item.outline is not None for item in openmoji)
    icons = list_items(cache, "twemoji")
    assert [item.id for item in icons] == ["twemoji/green-square", "twemoji/red-square"]
    assert icons[0].image.startswith("<svg") and 'viewBox="0 0 36 36"' in icons[0].image
    stamps = list_items(cache, "tuxpaint")
    assert [(item.name, item.style) for item in stamps] == [("broken", "photo"), ("A blue fish.", "photo")]


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
        "usr",
        "usr/share",
        "usr/share/x",
        "usr/share/x/a.svg",
    ]


def test_clipart_captions_skip_boilerplate_titles():
    head = "<dc:title>Part of the Flat Icon Collection</dc:title><rdf:li>hash</rdf:li><rdf:li>printer</rdf:li>"
    assert clipart_caption(head, Path("computer/printer_01.svg")) == "printer"
