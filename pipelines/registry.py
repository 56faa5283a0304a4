"""ModelSpec manifests (assets/models/*.toml) -> what is usable now and why not, -> a loaded Engine."""

from __future__ import annotations

import importlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pipelines.spec import (
    MODELS_DIR,
    ROOT,
    ModelError,
    ModelSpec,
    hub_offline,
    in_hub_cache,
    is_local,
    resolve_local,
)

# backend -> "module:Engine class", imported on first load (the registry imports no backend: backends import
# pipelines.spec, and the app starts without torch-heavy backends it does not use)
BACKENDS = {
    "sd": "pipelines.sd.engine:SDControlNetEngine",
    "sdxl": "pipelines.sd.engine:SDControlNetEngine",
    "tiny": "pipelines.tiny:TinyEngine",
    "sana": "pipelines.sana.engine:SanaSprintEngine",
}
RANDOM_INITS = ("tiny", "full")
# components a backend cannot draw without (its engine's load refuses a manifest lacking one)
REQUIRED = {"sd": ("base",), "sdxl": ("base",), "sana": ("base",), "tiny": ("weights",)}


@dataclass(frozen=True)
class ModelStatus:
    """What `Registry.list()` says of one model. state: ready | downloadable | missing."""

    spec: ModelSpec
    state: str
    reason: str


def _as_steps(value) -> tuple[int, ...]:
    steps = tuple(int(s) for s in value)
    if not steps or any(s < 1 or s > 50 for s in steps):
        raise ModelError(f"allowed_steps must be integers in 1..50, got {value!r}")
    return steps


def parse_manifest(path: Path) -> ModelSpec:
    """Read and validate one manifest; unknown keys are an error so typos do not pass silently."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ModelError(f"{path.name}: cannot read manifest ({error})") from error
    known = set(ModelSpec.__dataclass_fields__) - {"folder"}
    unknown = set(data) - known
    if unknown:
        raise ModelError(f"{path.name}: unknown keys {sorted(unknown)}")
    for key in ("name", "title", "backend", "components"):
        if key not in data:
            raise ModelError(f"{path.name}: missing key {key!r}")
    if data["backend"] not in BACKENDS:
        raise ModelError(f"{path.name}: backend must be one of {tuple(BACKENDS)}, got {data['backend']!r}")
    if data.get("random_init", "") not in ("", *RANDOM_INITS):
        raise ModelError(f"{path.name}: random_init must be one of {RANDOM_INITS}")
    if "allowed_steps" in data:
        data["allowed_steps"] = _as_steps(data["allowed_steps"])
    data["components"] = {str(k): str(v) for k, v in data["components"].items()}
    return ModelSpec(**data, folder=path.parent)


class Registry:
    """The models the app knows: manifests in `models_dir`; local paths must stay inside `allowed_roots`."""

    def __init__(self, models_dir: Path = MODELS_DIR, allowed_roots: tuple[Path, ...] | None = None):
        self.models_dir = Path(models_dir)
        self.allowed_roots = tuple(Path(p).resolve() for p in (allowed_roots or (self.models_dir, ROOT / "assets")))
        self._errors: dict[str, str] = {}
        self._specs: dict[str, ModelSpec] | None = None

    def refresh(self) -> None:
        """Forget the parsed manifests (a new model was exported, or the Models tab asked)."""
        self._specs = None

    def specs(self) -> dict[str, ModelSpec]:
        """All valid manifests by name, parsed once until `refresh()`; broken ones are kept in `errors()`."""
        if self._specs is not None:
            return dict(self._specs)
        specs, self._errors = {}, {}
        for path in sorted(self.models_dir.glob("*.toml")):
            try:
                spec = parse_manifest(path)
                self._check_paths(spec)
                specs[spec.name] = spec
            except ModelError as error:
                self._errors[path.name] = str(error)
        self._specs = specs
        return dict(specs)

    def errors(self) -> dict[str, str]:
        return dict(self._errors)

    def get(self, name: str) -> ModelSpec:
        specs = self.specs()
        if name not in specs:
            known = ", ".join(sorted(specs)) or "none"
            raise ModelError(f"unknown model {name!r}; known models: {known}")
        return specs[name]

    def _check_paths(self, spec: ModelSpec) -> None:
        for role, value in spec.components.items():
            if is_local(value):
                path = resolve_local(value, spec.folder)
                if not any(path.is_relative_to(root) for root in self.allowed_roots):
                    raise ModelError(f"{spec.name}: component {role!r} points outside the allowed folders ({path})")

    def status(self, spec: ModelSpec) -> ModelStatus:
        """ready (everything on disk), downloadable (hub ids not cached, network allowed) or missing (why)."""
        if spec.random_init:
            return ModelStatus(spec, "ready", f"random weights ({spec.random_init}): tests the pipeline, draws noise")
        absent = [role for role in REQUIRED.get(spec.backend, ()) if role not in spec.components]
        if absent:
            names = ", ".join(repr(role) for role in absent)
            why = "a student exported without its base model, e.g. by a pipeline-check preset"
            return ModelStatus(spec, "missing", f"cannot draw: the manifest names no {names} component ({why})")
        missing_local, to_download = [], []
        for role, value in spec.components.items():
            if is_local(value):
                if not resolve_local(value, spec.folder).exists():
                    missing_local.append(f"{role} ({value})")
            elif not in_hub_cache(value):
                to_download.append(value)
        if missing_local:
            return ModelStatus(spec, "missing", "files not on disk: " + ", ".join(missing_local))
        if to_download and hub_offline():
            return ModelStatus(
                spec,
                "missing",
                "not in the local cache and the hub is offline (HF_HUB_OFFLINE=1): " + ", ".join(to_download),
            )
        if to_download:
            size = f", about {spec.download_gb:g} GB" if spec.download_gb else ""
            return ModelStatus(spec, "downloadable", f"downloads on first use{size}: " + ", ".join(to_download))
        return ModelStatus(spec, "ready", "all components on disk")

    def list(self) -> list[ModelStatus]:
        return [self.status(spec) for spec in self.specs().values()]

    def default_name(self, cuda: bool) -> str:
        """The model the app opens with: the first ready GPU model when CUDA is present, else the first ready one
        that runs on a CPU (manifests with min_vram_gb = 0)."""
        statuses = [s for s in self.list() if s.state == "ready"]
        if not cuda:
            statuses = [s for s in statuses if s.spec.min_vram_gb == 0]
        # trained weights before random ones, bigger GPU models first, then the fewest default steps (a student
        # before the teacher it was distilled from)
        ranked = sorted(statuses, key=lambda s: (bool(s.spec.random_init), -s.spec.min_vram_gb, s.spec.steps))
        if not ranked:
            raise ModelError("no model is usable offline on this machine; see the Models tab")
        return ranked[0].spec.name

    def load(self, name: str, device: str, dtype: str | None = None):
        """Load a model's Engine. Refuses models that are not ready and cannot be downloaded."""
        spec = self.get(name)
        status = self.status(spec)
        if status.state == "missing":
            raise ModelError(f"{spec.title} cannot be loaded: {status.reason}")
        return engine_class(spec.backend).load(spec, device=device, dtype=dtype or spec.dtype)


def engine_class(backend: str) -> type:
    """The Engine class of a backend, imported on first use."""
    if backend not in BACKENDS:
        raise ModelError(f"backend {backend!r} is not available in this build")
    module, name = BACKENDS[backend].split(":")
    return getattr(importlib.import_module(module), name)
