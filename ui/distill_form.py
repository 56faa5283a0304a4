"""The Distill-a-teacher form: its preset, teacher, method and data choices checked field by field and turned into
the preset's overrides (what JobStore.launch takes)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from distillation.config import DATA_SKETCHES, JobConfig
from distillation.jobs import FINETUNE_PRESET, JobError, check_data, load_preset, presets, toml_string
from distillation.jobs.checks import HUB_ID_RE
from distillation.jobs.records import read_json
from pipelines.registry import ModelError, ModelSpec, Registry, is_local

DEFAULT_TEACHER = "sketch-tiny-teacher"  # the bundled teacher: works offline, on a CPU
DEFAULT_PRESETS = ("sketch_tiny_scm_ladd", "sketch_tiny_scm")  # its student recipes: with the prepared pairs, without
METHOD_TITLES = {
    "scm_ladd": "sCM + LADD (SANA-Sprint)",
    "scm": "sCM (consistency only)",
    "dmd2": "DMD2",
    "twinflow": "TwinFlow",
    "lcm": "LCM",
    "ladd": "LADD (adversarial only)",
}
TEACHER_KINDS = ("sana", "unet", "sketch_tiny")  # distillation.teachers families a folder or hub id can be


def teacher_overrides(spec: ModelSpec) -> list[str]:
    """Overrides that make a registry model the teacher; JobError says why a model cannot be one."""
    if spec.backend == "tiny":
        path = spec.component_path("weights")
        if read_json(Path(path) / "config.json").get("kind") == "trigflow":
            raise JobError(f"{spec.name} is a distilled student (TrigFlow), not a flow-matching teacher")
        return [
            "--teacher.kind=sketch_tiny",
            '--teacher.random=""',
            f"--teacher.path={toml_string(path)}",
            "--teacher.controlnet=false",
            f"--teacher.licence={toml_string(spec.licence)}",
        ]
    if spec.backend == "sd":
        if spec.random_init:
            return ["--teacher.kind=unet", f"--teacher.random={toml_string(spec.random_init)}"]
        controlnet = spec.components.get("controlnet", "")
        return [
            "--teacher.kind=unet",
            '--teacher.random=""',
            f"--teacher.licence={toml_string(spec.licence)}",
            f"--teacher.path={toml_string(spec.component_path('base'))}",
            f"--teacher.controlnet={'true' if controlnet else 'false'}",
            f"--teacher.controlnet_path={toml_string(spec.component_path('controlnet') if controlnet else '')}",
        ]
    if spec.backend == "sana":
        raise JobError(
            f"{spec.name}: its teacher is an NVlabs checkpoint the trainer cannot read yet; give a diffusers Sana "
            "teacher folder or hub id (e.g. Efficient-Large-Model/Sana_Sprint_0.6B_1024px_teacher_diffusers)"
        )
    raise JobError(f"{spec.name}: the trainer has no teacher family for backend {spec.backend!r} yet")


def _model_source(source: str, value: str, what: str) -> str:
    """A hub id as given (owner/name) or a folder made absolute; JobError when it is neither."""
    value = value.strip()
    if source == "folder":
        if not value:
            raise JobError(f"{what} folder: give the folder of a diffusers model (or of a SketchTinyNet)")
        return str(Path(value).expanduser().resolve())
    if not HUB_ID_RE.fullmatch(value) or ".." in value:
        raise JobError(f"{what} hub id {value!r}: write it as owner/name")
    return value


def job_overrides(
    preset: Path,
    registry: Registry,
    *,
    method: str = "",
    teacher: str = "preset",
    teacher_model: str = "",
    teacher_path: str = "",
    teacher_kind: str = "sana",
    controlnet_path: str = "",
    data: str = "",
    data_path: str = "",
    augment: bool = False,
    sketch: str = "canny",
    steps: int | None = None,
    lr: float | None = None,
    batch: int | None = None,
    lora_rank: int | None = None,
) -> list[str]:
    """The Distill tab's choices as overrides of `preset`. teacher: preset | model (a registry name) | hub (an id) |
    folder, with a ControlNet (hub id or folder; "" = none) for hub and folder teachers; a method other than the
    preset's starts from that method's defaults (the preset's method options and per-role learning rates are
    dropped); data: "" (the preset's), synthetic, sketch_pairs (a prepared folder) or image_folder (a folder of
    images with optional .txt captions; `sketch` is its line extractor)."""
    base = load_preset(preset)
    out: list[str] = []
    if teacher == "model":
        try:
            out += teacher_overrides(registry.get(teacher_model))
        except ModelError as error:
            raise JobError(str(error)) from error
    elif teacher in ("hub", "folder"):
        if teacher_kind not in TEACHER_KINDS:
            raise JobError(f"teacher family {teacher_kind!r}: one of {', '.join(TEACHER_KINDS)}")
        if teacher_kind == "sketch_tiny" and controlnet_path.strip():
            raise JobError("a sketch_tiny teacher takes the sketch itself: it has no ControlNet")
        value = _model_source(teacher, teacher_path, "teacher")
        out += [
            f"--teacher.kind={teacher_kind}",
            '--teacher.random=""',
            f"--teacher.path={toml_string(value)}",
            '--teacher.licence=""',
        ]
        if controlnet_path.strip():
            source = "folder" if is_local(controlnet_path.strip()) else "hub"
            out += [
                "--teacher.controlnet=true",
                f"--teacher.controlnet_path={toml_string(_model_source(source, controlnet_path, 'ControlNet'))}",
            ]
        else:
            out.append("--teacher.controlnet=false")
    elif teacher != "preset":
        raise JobError(f"teacher source {teacher!r}: one of preset, model, hub, folder")
    if method and method != base.method.name:
        if method not in METHOD_TITLES:
            raise JobError(f"method {method!r}: one of {', '.join(METHOD_TITLES)}")
        out += [f"--method={{name = {toml_string(method)}}}", "--optim.role_lr={}"]
    if data == "synthetic":
        out.append("--data.kind=synthetic")
    elif data == "sketch_pairs":
        if not data_path.strip():
            raise JobError("data: give the prepared sketch-pairs folder (python -m distillation.data prepare)")
        path = str(Path(data_path.strip()).expanduser().resolve())
        out += ["--data.kind=sketch_pairs", f"--data.path={toml_string(path)}", f"--data.augment={augment!r}".lower()]
    elif data == "image_folder":
        if not data_path.strip():
            raise JobError("data: give the folder of your images (each with an optional same-name .txt caption)")
        if sketch not in DATA_SKETCHES:
            raise JobError(f"sketch extractor {sketch!r}: one of {', '.join(DATA_SKETCHES)}")
        path = str(Path(data_path.strip()).expanduser().resolve())
        out += [
            "--data.kind=image_folder",
            f"--data.path={toml_string(path)}",
            f"--data.sketch={toml_string(sketch)}",
            f"--data.augment={augment!r}".lower(),
        ]
    elif data:
        raise JobError(f"data {data!r}: synthetic, sketch_pairs or image_folder (the kinds the trainer reads)")
    numbers = {
        "max_steps": (steps, int),
        "optim.lr": (lr, float),
        "batch_size": (batch, int),
        "student.lora_rank": (lora_rank, int),
    }
    out += [f"--{key}={cast(value)!r}" for key, (value, cast) in numbers.items() if value is not None]
    return out


def load_preset_raw(name: str) -> dict[str, Any]:
    """A bundled preset's TOML as written (not checked, not merged with the defaults)."""
    return tomllib.loads(presets()[name].read_text())


def drawable(name: str) -> bool:
    """Whether a preset's student can be drawn with: a random-weight teacher (the pipeline checks) exports a student
    without the base model (text encoder, VAE) an engine needs."""
    return not load_preset_raw(name).get("teacher", {}).get("random")


def teacher_models(registry: Registry) -> tuple[list[str], str]:
    """Registry models the trainer can take as a teacher, and a note naming the others with the reason."""
    usable, notes = [], []
    for name, spec in sorted(registry.specs().items()):
        try:
            teacher_overrides(spec)
            usable.append(name)
        except JobError as error:
            notes.append(f"{name}: {error}")
    return usable, "; ".join(notes)


def preset_choices() -> list[tuple[str, str]]:
    """The Advanced preset picker: the presets whose students draw first, the pipeline checks last and labelled so;
    the fine-tune preset is the other path's."""
    names = [name for name in presets() if presets()[name] != FINETUNE_PRESET]
    good = [(name, name) for name in names if drawable(name)]
    checks = [
        (f"{name} (pipeline check: random weights, its student cannot draw)", name)
        for name in names
        if not drawable(name)
    ]
    return good + checks


def default_preset() -> str:
    """The bundled teacher's student recipe that can run here: with the prepared pairs (and teacher pool) the
    shipped recipe, else sCM on synthetic conditions."""
    for name in DEFAULT_PRESETS:
        if name in presets():
            try:
                check_data(load_preset(presets()[name]))
            except JobError:
                continue
            return name
    return next(name for _, name in preset_choices())


def preset_fields(name: str) -> dict[str, Any]:
    """A preset's values for the form (method, steps, learning rate, batch, LoRA rank, data kind), read as written:
    a preset whose data is not prepared here still fills the form (launching it says what is missing)."""
    raw, default = load_preset_raw(name), JobConfig()
    return {
        "method": raw.get("method", {}).get("name", default.method.name),
        "steps": raw.get("max_steps", default.max_steps),
        "lr": raw.get("optim", {}).get("lr", default.optim.lr),
        "batch": raw.get("batch_size", default.batch_size),
        "lora_rank": raw.get("student", {}).get("lora_rank", default.student.lora_rank),
        "data": raw.get("data", {}).get("kind", default.data.kind),
    }


def request(
    registry: Registry,
    preset: str,
    method: str,
    teacher: str,
    teacher_model: str,
    teacher_path: str,
    teacher_kind: str,
    controlnet_path: str,
    data: str,
    data_path: str,
    augment: bool,
    steps: float | None,
    lr: float | None,
    batch: float | None,
    lora_rank: float | None,
    folder_path: str = "",
    sketch: str = "canny",
) -> tuple[Path, list[str], str]:
    """The form -> (preset path, overrides, teacher model name or ""); JobError when a choice is invalid. `data_path`
    is the prepared-pairs folder, `folder_path` the image folder (data "image_folder") with its `sketch` extractor."""
    if preset not in presets():
        raise JobError(f"preset {preset!r}: one of {', '.join(presets())}")
    path = presets()[preset]
    overrides = job_overrides(
        path,
        registry,
        method=method,
        teacher=teacher,
        teacher_model=teacher_model or "",
        teacher_path=teacher_path or "",
        teacher_kind=teacher_kind,
        controlnet_path=controlnet_path or "",
        data=data,
        data_path=(folder_path if data == "image_folder" else data_path) or "",
        augment=bool(augment),
        sketch=sketch or "canny",
        steps=steps,
        lr=lr,
        batch=batch,
        lora_rank=lora_rank,
    )
    return path, overrides, teacher_model if teacher == "model" else ""
