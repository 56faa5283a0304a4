"""What backends import about models: ModelSpec (one manifest), ModelError, component loading guards, hub helpers."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "assets" / "models"
T = TypeVar("T")


class ModelError(Exception):
    """A model cannot be listed or loaded; the message is meant for the person using the app."""


@dataclass(frozen=True)
class ModelSpec:
    """One manifest. `components` maps a role (base, controlnet, taesd, lora, weights) to a hub id or a folder."""

    name: str
    title: str
    backend: str
    components: dict[str, str]
    resolution: int = 512
    steps: int = 1
    allowed_steps: tuple[int, ...] = (1, 2, 3, 4)
    dtype: str = "float16"
    guidance: float = 0.0
    random_init: str = ""
    source: str = ""
    licence: str = ""
    download_gb: float = 0.0
    min_vram_gb: float = 0.0
    notes: str = ""
    folder: Path = field(default=MODELS_DIR, compare=False)

    def component_path(self, role: str) -> str:
        """A component's hub id, or its folder resolved against the manifest's folder."""
        value = self.components[role]
        return str(resolve_local(value, self.folder)) if is_local(value) else value


def guarded(role: str, where: str, what: str, make: Callable[[], T]) -> T:
    """Run one component loader; any failure (missing file, offline hub, bad config) becomes a ModelError."""
    try:
        return make()
    except ModelError:
        raise
    except Exception as error:  # hub, file and config errors all mean "this component cannot be loaded"
        text = str(error).strip()
        first = text.splitlines()[0] if text else type(error).__name__
        raise ModelError(f"cannot load the {role} component ({where}) as {what}: {first}") from error


def is_local(value: str) -> bool:
    """Local folders are written ./x, ../x, /x or ~/x in manifests; anything else is a hub id (owner/name)."""
    return value.startswith((".", "/", "~"))


def resolve_local(value: str, folder: Path) -> Path:
    return (folder / Path(value).expanduser()).resolve()


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE says the hub must not be contacted."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def in_hub_cache(repo_id: str) -> bool:
    """True when the hub's local cache holds a snapshot of `repo_id`'s default revision (so loading it needs no
    network); False for an id the cache has never seen, or one that is not a valid hub id."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        snapshot_download(repo_id, local_files_only=True)
    except (LocalEntryNotFoundError, HFValidationError, OSError):
        return False
    return True
