"""EMA student -> a weights folder + a `<name>.toml` manifest beside it that pipelines.registry parses.

    export_student(teacher=..., student=merged_student(role_module, ema), models_dir=Path("assets/models"), ...)

writes models_dir/<name>/ (the teacher family's format: diffusers folders for Sana and UNets, safetensors +
config.json for registered modules) and models_dir/<name>.toml, then asks the registry whether it lists the model.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import tomli_w
import torch
from torch import Tensor, nn

from distillation.config import JobConfig
from distillation.roles import AdapterView
from distillation.teachers.base import DTYPES, Teacher
from pipelines.registry import Registry

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class ExportError(RuntimeError):
    """The student cannot be exported; the message says why."""


@dataclass(frozen=True)
class ExportResult:
    """Where the export went; registry: "listed", or the registry's reason for not listing the manifest."""

    manifest: Path
    weights: Path
    registry: str


def merge_lora(model: nn.Module, adapter: str) -> nn.Module:
    """Fold LoRA `adapter` into the base weights and put every peft layer's base layer back in its place."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer):
            if adapter in module.lora_A:
                module.merge(adapter_names=[adapter])
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, module.get_base_layer())
    for attribute in ("peft_config", "_hf_peft_config_loaded"):
        if hasattr(model, attribute):
            delattr(model, attribute)
    return model


def merged_student(module: nn.Module, ema: Mapping[str, Tensor]) -> nn.Module:
    """A float32 copy of the student shaped like the teacher, with `ema` (names as in the role's parameters) loaded:
    a full copy, or for a LoRA role the base with that adapter merged in. An empty `ema` keeps current weights."""
    if isinstance(module, AdapterView):
        student, adapter = copy.deepcopy(module.base).float(), module.adapter
    else:
        student, adapter = copy.deepcopy(module).float(), None
    params = dict(student.named_parameters())
    missing = set(ema) - set(params)
    if missing:
        raise ExportError(f"EMA tensors without a student parameter: {sorted(missing)[:3]}")
    with torch.no_grad():
        for name, value in ema.items():
            params[name].copy_(value)
    if adapter is not None:
        merge_lora(student, adapter)
    return student.eval().requires_grad_(False)


def provenance(cfg: JobConfig) -> tuple[str, str]:
    """(where from, licence) of a job's student for its manifest: the teacher's weights, the weights the student
    started from and the data it was trained on, each named."""
    tc, dc = cfg.teacher, cfg.data
    teacher = f"random weights ({tc.random}, seed {tc.random_seed})" if tc.random else tc.path
    where = [f"teacher {tc.kind} {teacher}"]
    if cfg.student.init:
        where.append(f"student initialised from {cfg.student.init}")
    data = {
        "synthetic": "synthetic conditions (no pictures)",
        "sketch_pairs": f"prepared pairs in {dc.path} (split {dc.split})",
        "image_folder": f"the pictures in {dc.path}",
    }[dc.kind]
    where.append(f"data: {data}")
    if tc.random and dc.kind == "synthetic":
        licence = "no weights (random initialisation)"
    elif tc.random:  # pre-training from scratch: the weights are the data's
        licence = f"trained from random initialisation on {data}: {tc.licence or 'the licences of that data apply'}"
    else:
        licence = f"teacher weights ({tc.path}): {tc.licence or 'the licence of those weights applies'}"
    if cfg.student.init:
        licence += f"; starting weights ({cfg.student.init}): their licence applies"
    if dc.kind == "image_folder":
        licence += f"; fine-tuned on the pictures in {dc.path}: their owner's terms apply"
    return "; ".join(where), licence


NOTES = {
    "trigflow": "A distilled TrigFlow consistency student (1-4 steps, no CFG: the guidance is distilled in).",
    "flow": "A multi-step flow-matching model (Euler steps with classifier-free guidance): a teacher to distill.",
}


def export_student(
    *,
    teacher: Teacher,
    student: nn.Module,
    models_dir: Path,
    name: str,
    title: str = "",
    dtype: str = "float32",
    steps: int = 1,
    allowed_steps: Sequence[int] = (1, 2, 3, 4),
    guidance: float = 0.0,
    source: str = "",
    licence: str = "",
    components: Mapping[str, str] | None = None,
    sampler: str = "trigflow",
) -> ExportResult:
    """Write models_dir/<name>/ (replacing an older export atomically) and models_dir/<name>.toml; `components`
    adds manifest entries the student shares with its base model (hub ids or folders: text encoder, decoder)."""
    if not NAME.fullmatch(name):
        raise ExportError(f"export name {name!r}: use letters, digits, '.', '_' and '-'")
    if dtype not in DTYPES:
        raise ExportError(f"export dtype {dtype!r}: one of {sorted(DTYPES)}")
    models_dir.mkdir(parents=True, exist_ok=True)
    weights = models_dir / name
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=models_dir))
    try:
        written = teacher.export(student.to(DTYPES[dtype]), tmp, sampler)
        config = tmp / "config.json"
        if sampler == "flow" and guidance > 0 and config.is_file():  # a flow model samples with its own CFG default
            data = json.loads(config.read_text())
            if "default_guidance" in data:
                config.write_text(json.dumps({**data, "default_guidance": guidance}, indent=2))
        if weights.exists():
            old = Path(tempfile.mkdtemp(prefix=f".old-{name}-", dir=models_dir))
            os.replace(weights, old / name)
            os.replace(tmp, weights)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, weights)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    manifest = {
        "name": name,
        "title": title or f"{name} ({teacher.kind} student)",
        "backend": teacher.backend,
        "steps": steps,
        "allowed_steps": list(allowed_steps),
        "dtype": dtype,
        "guidance": guidance,
        "source": source,
        "licence": licence or "inherits the teacher's licence",
        "notes": NOTES[sampler],
    }
    if teacher.resolution:
        manifest["resolution"] = teacher.resolution
    manifest["components"] = {
        **(components or {}),
        **{role: f"./{name}" if sub in ("", ".") else f"./{name}/{sub}" for role, sub in written.items()},
    }
    path = models_dir / f"{name}.toml"
    tmp_manifest = models_dir / f".{name}.toml.tmp"
    tmp_manifest.write_text(tomli_w.dumps(manifest))
    os.replace(tmp_manifest, path)
    registry = Registry(models_dir)
    spec = registry.specs().get(name)
    if spec is None:
        status = registry.errors().get(path.name, "not listed")
    else:
        verdict = registry.status(spec)
        status = "listed" if verdict.state != "missing" else f"not usable: {verdict.reason}"
    return ExportResult(manifest=path, weights=weights, registry=status)


def export_run(
    cfg: JobConfig, teacher: Teacher, student: nn.Module, *, step: int, out: Path, sampler: str, picked: str = ""
) -> ExportResult:
    """A job's chosen student (merged, shaped like the teacher) -> weights + manifest where the job's [export] table
    says (default <out>/export), its source naming the method, the steps, `picked` (how it was chosen) and the run."""
    ec = cfg.export
    origin, licence = provenance(cfg)
    verb = "distilled" if sampler == "trigflow" else "trained"
    verb = "fine-tuned" if cfg.student.init else verb
    return export_student(
        teacher=teacher,
        student=student,
        models_dir=Path(ec.models_dir) if ec.models_dir else out / "export",
        name=ec.name or cfg.name,
        title=ec.title,
        dtype=ec.dtype,
        steps=ec.steps,
        allowed_steps=ec.allowed_steps,
        guidance=ec.guidance,
        components=ec.components,
        source=f"{verb} by distillation.train ({cfg.method.name}, {step} steps{picked}) from {origin}; "
        f"run folder {out}",
        sampler=sampler,
        licence=licence,
    )
