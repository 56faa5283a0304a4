"""controlnet-aux's line detectors (HED, PiDiNet, lineart) for "Start from a photo" and for preparing a folder:
weights from the hub's annotator repository on first use, as every ControlNet user expects, or from a local copy;
which of them (and of our offline HED port and OpenCV Canny) are usable now, and why the others are not.

    usable, notes = usable_extractors()            # e.g. (["aux_hed", ..., "canny"], {"aux_pidinet": "why not"})
    lines = aux_lines(rgb, "aux_pidinet")          # (h, w) bool, one-pixel lines

The annotator weights come from ANNOTATORS (a hub id, or a folder holding the same file names); set
SKETCHSPRINT_ANNOTATORS to a local folder to use a copy made elsewhere. controlnet-aux's package __init__ imports
every detector it has (some need timm, torchvision, mediapipe); the three used here need only torch, einops and
OpenCV, so their modules are imported without it (`aux_module`).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.hed import thin_edges

# h w height width; images are (h, w, 3) uint8 RGB, line maps (h, w) bool
ANNOTATORS = "lllyasviel/Annotators"
INSTALL_HINT = "pip install --no-deps controlnet-aux==0.0.10 && pip install einops"


@dataclass(frozen=True)
class AuxDetector:
    """One controlnet-aux detector: its module, class and the annotator files its from_pretrained reads."""

    title: str
    module: str
    cls: str
    files: tuple[str, ...]
    soft: bool  # soft edges (thinned by hysteresis like our HED) rather than drawn lines


AUX = {
    "aux_hed": AuxDetector("HED (controlnet-aux)", "hed", "HEDdetector", ("ControlNetHED.pth",), soft=True),
    "aux_pidinet": AuxDetector("PiDiNet (controlnet-aux)", "pidi", "PidiNetDetector", ("table5_pidinet.pth",), True),
    "aux_lineart": AuxDetector(
        "line art (controlnet-aux)", "lineart", "LineartDetector", ("sk_model.pth", "sk_model2.pth"), soft=False
    ),
}


TITLES = {
    **{key: detector.title for key, detector in AUX.items()},
    "hed": "HED (our offline port)",
    "lineart": "line-art filter (OpenCV)",
    "canny": "Canny edges (OpenCV)",
}


class LinesUnavailable(RuntimeError):
    """A detector cannot run here; the message says why and what would make it work."""


def annotators_source() -> str:
    """Where the annotator weights come from: SKETCHSPRINT_ANNOTATORS (a folder) or the hub repository."""
    return os.environ.get("SKETCHSPRINT_ANNOTATORS", "").strip() or ANNOTATORS


def aux_module(name: str) -> types.ModuleType:
    """controlnet_aux.<name> imported without running controlnet_aux/__init__.py (which imports every detector and
    their dependencies); LinesUnavailable when the package is not installed."""
    if "controlnet_aux" not in sys.modules:
        spec = importlib.util.find_spec("controlnet_aux")
        if spec is None or not spec.submodule_search_locations:
            raise LinesUnavailable(f"controlnet-aux is not installed ({INSTALL_HINT})")
        package = types.ModuleType("controlnet_aux")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["controlnet_aux"] = package
    try:
        return importlib.import_module(f"controlnet_aux.{name}")
    except ImportError as error:
        raise LinesUnavailable(f"controlnet-aux's {name} detector cannot be imported: {error}") from error


def weights_state(key: str, source: str | None = None) -> tuple[bool, str]:
    """(usable, why) for the weights of detector `key`: present in a local folder or the hub cache, or downloadable
    on first use; not usable when a file is missing offline."""
    from huggingface_hub import try_to_load_from_cache

    from pipelines.registry import hub_offline

    source = source or annotators_source()
    files = AUX[key].files
    if Path(source).expanduser().is_dir():
        missing = [name for name in files if not (Path(source).expanduser() / name).is_file()]
        if missing:
            return False, f"{', '.join(missing)} not in {source}"
        return True, f"weights in {source}"
    cached = [isinstance(try_to_load_from_cache(source, name), str) for name in files]
    if all(cached):
        return True, f"weights in the hub cache ({source})"
    if hub_offline():
        return False, f"its weights ({', '.join(files)} from {source}) are not cached and the hub is offline"
    return True, f"downloads {', '.join(files)} from {source} on first use"


def load_detector(key: str, source: str | None = None):
    """The controlnet-aux detector `key` loaded by its own from_pretrained from `source` (a hub id or a local folder;
    default annotators_source()), once per process and source. LinesUnavailable says why it cannot be."""
    return _load_detector(key, source or annotators_source())


@functools.cache
def _load_detector(key: str, source: str):
    detector = AUX[key]
    module = aux_module(detector.module)
    usable, why = weights_state(key, source)
    if not usable:
        raise LinesUnavailable(f"{detector.title}: {why}")
    try:
        return getattr(module, detector.cls).from_pretrained(source)
    except Exception as error:  # a damaged file, a failed download: the message, not a traceback
        raise LinesUnavailable(f"{detector.title}: cannot load its weights from {source} ({error})") from error


def aux_lines(rgb: np.ndarray, key: str, *, source: str | None = None) -> np.ndarray:
    """RGB (h, w, 3) uint8 -> one-pixel lines (bool) at the same size by controlnet-aux detector `key`."""
    import cv2

    h, w = rgb.shape[:2]
    side = max(64, min(512, (max(h, w) + 63) // 64 * 64))  # the detectors' own resolution rule, capped at 512
    result = load_detector(key, source)(rgb, detect_resolution=side, image_resolution=side, output_type="np")
    gray = np.asarray(result)[..., 0] if np.asarray(result).ndim == 3 else np.asarray(result)
    gray = cv2.resize(gray, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    if not AUX[key].soft:  # lineart: white strokes on black, already drawn; keep the confident ones
        return thin_edges(gray, threshold=0.35, low=0.2)
    return thin_edges(gray)


def usable_extractors() -> tuple[list[str], dict[str, str]]:
    """Line extractors usable now, best first (controlnet-aux's, then our HED port, Canny and the line-art filter),
    and for the others why not."""
    from pipelines.hed import HED
    from pipelines.hed import INSTALL_HINT as HED_HINT

    usable, notes = [], {}
    for key in AUX:
        try:
            aux_module(AUX[key].module)
            ok, why = weights_state(key)
        except LinesUnavailable as error:
            ok, why = False, str(error)
        if ok:
            usable.append(key)
        else:
            notes[key] = why
    if HED.available():
        usable.append("hed")
    else:
        notes["hed"] = f"its weights are not installed ({HED_HINT})"
    return [*usable, "lineart", "canny"], notes
