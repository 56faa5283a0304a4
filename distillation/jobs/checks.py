"""Before a job starts: its preset, overrides, teacher and data are checked, and refused (JobError) in words a person
can act on, with nothing written."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from distillation.config import ConfigError, JobConfig, load_config
from distillation.data import FOLDER_SUFFIXES, DataError, list_images
from distillation.jobs.records import ROOT, JobError
from pipelines.spec import hub_offline, in_hub_cache, is_local

PRESETS_DIR = ROOT / "distillation" / "presets"
FINETUNE_PRESET = PRESETS_DIR / "finetune_sketch_tiny.toml"
OVERRIDE_RE = re.compile(r"--([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)=(.*)", re.DOTALL)
HUB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
RESERVED_KEYS = ("export.models_dir", "export.name")  # the store sends students to the registry's folder
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".svg")


def presets() -> dict[str, Path]:
    """The bundled presets by file stem."""
    return {path.stem: path for path in sorted(PRESETS_DIR.glob("*.toml"))}


def check_overrides(overrides: Sequence[str]) -> list[str]:
    """Overrides as `--dotted.key=value` strings, one argument each; the store's own keys are refused."""
    checked = []
    for item in overrides:
        match = OVERRIDE_RE.fullmatch(item) if isinstance(item, str) else None
        if match is None:
            raise JobError(f"override {item!r}: write it as --key=value (dotted keys for sections)")
        if any(c in match.group(2) for c in "\x00\n\r"):
            raise JobError(f"override --{match.group(1)}: the value may not hold NUL or line breaks")
        if match.group(1) in RESERVED_KEYS:
            raise JobError(f"override --{match.group(1)}: set by the app (students go to the models folder)")
        checked.append(item)
    return checked


def check_preset(preset: str | Path) -> Path:
    """A preset must be an existing .toml file."""
    path = Path(preset).expanduser()
    if path.suffix != ".toml" or not path.is_file():
        raise JobError(f"preset {str(preset)!r}: not a .toml file (presets live in {PRESETS_DIR})")
    return path.resolve()


def _has_model_files(folder: Path) -> bool:
    if (folder / "config.json").is_file():
        return True
    return any((sub / "config.json").is_file() for sub in folder.iterdir() if sub.is_dir())


def check_teacher(cfg: JobConfig) -> list[str]:
    """Refuse a teacher that cannot be loaded (a folder with no model, a malformed hub id, an uncached id offline);
    returns notices (a hub id that will be downloaded)."""
    notices = []
    tc = cfg.teacher
    if tc.random:
        return notices
    sources = {"teacher.path": tc.path, "teacher.controlnet_path": tc.controlnet_path if tc.controlnet else ""}
    for key, value in sources.items():
        if not value:
            continue
        if is_local(value):
            folder = Path(value).expanduser()
            if not folder.is_dir() or not _has_model_files(folder):
                raise JobError(f"{key}: {value} holds no model (no config.json in it or in a subfolder)")
        elif not HUB_ID_RE.fullmatch(value) or ".." in value:
            raise JobError(f"{key}: {value!r} is neither a folder (./x, /x, ~/x) nor a hub id (owner/name)")
        elif not in_hub_cache(value):
            if hub_offline():
                raise JobError(f"{key}: {value} is not in the local cache and the hub is offline (HF_HUB_OFFLINE=1)")
            notices.append(f"{value} is not cached: the job downloads it first (needs the network)")
    return notices


def npz_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Array shapes in an .npz from the headers alone (no array is decompressed); JobError if it is unreadable."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    shapes = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version not in readers:
                        raise ValueError(f"npy format {version}")
                    shapes[info.filename.removesuffix(".npy")] = tuple(readers[version](member)[0])
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise JobError(f"data.path: cannot read {path.name} ({error}): damaged, or not prepared pairs") from error
    return shapes


def check_data(cfg: JobConfig) -> None:
    """Refuse an image folder with no images, and a sketch-pairs folder with no pairs, unreadable files or arrays of
    the wrong shapes."""
    if cfg.data.kind == "image_folder":
        root = Path(cfg.data.path).expanduser()
        try:
            images = list_images(root)
        except DataError as error:
            raise JobError(f"data.path: {error}") from error
        if not images:
            hint = " (it holds prepared pairs: choose those instead)" if (root / "train.npz").is_file() else ""
            raise JobError(
                f"data.path: no images in {root}{hint}; looked for {'/'.join(FOLDER_SUFFIXES)} files "
                "there and in its subfolders"
            )
        return
    if cfg.data.kind != "sketch_pairs":
        return
    root = Path(cfg.data.path).expanduser()
    if not (root / "train.npz").is_file():
        images = [p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES] if root.is_dir() else []
        if images:
            raise JobError(
                f"data.path: {root} holds {len(images)} images but no prepared pairs (train.npz): to train on them, "
                "choose the data 'a folder of images' (data.kind = 'image_folder'), which prepares them itself"
            )
        raise JobError(
            f"data.path: no data in {root} (no train.npz); make it with: python -m distillation.data prepare"
        )
    train = npz_shapes(root / "train.npz")
    captions = npz_shapes(root / "captions.npz") if (root / "captions.npz").is_file() else {}
    expected = {"sketch": 3, "image": 4, "caption_index": 1}
    if any(len(train.get(key, ())) != dims for key, dims in expected.items()) or "embedding" not in captions:
        raise JobError(f"data.path: {root} is not prepared sketch pairs (train.npz {train}, captions.npz {captions})")
    if train["sketch"][0] == 0:
        raise JobError(f"data.path: no data in {root}: train.npz holds 0 pairs")
    if not train["sketch"][0] == train["image"][0] == train["caption_index"][0]:
        raise JobError(f"data.path: {root}/train.npz: sketch, image and caption_index counts differ")


def load_preset(preset: str | Path, overrides: Sequence[str] = ()) -> JobConfig:
    """A checked config; JobError with the config's message when the preset or an override is invalid."""
    try:
        return load_config(check_preset(preset), check_overrides(overrides))
    except ConfigError as error:
        raise JobError(str(error)) from error
