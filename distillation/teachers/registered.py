"""Teacher families registered by name: any nn.Module factory of a flow-matching velocity model, with its shapes,
LADD features, previews and export format, becomes `teacher.kind = name` (FlowAsTrigFlow turns it to TrigFlow)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from distillation.teachers.base import Teacher, TeacherError, latent_to_images, pixels_to_images
from pipelines.parameterization import FlowAsTrigFlow
from pipelines.registry import is_local

Shape = tuple[int, ...]


@dataclass(frozen=True)
class TeacherEntry:
    """A registered teacher family built from an nn.Module factory.

    factory(path) -> a flow-matching velocity model v(x_s, s, cond) (path None: random weights; the trainer seeds
    torch first). sample_shape / cond_shapes: per-sample shapes, or functions of the built model giving them;
    uncond_keys: zeroed for CFG's null branch; features: (layer name in the flow model, channels) a LADD
    discriminator may hook (token features (b, n, c)); to_images: unit-scale samples -> uint8 (b, h, w, 3);
    save(flow_model, folder[, sampler]) -> manifest components (relative folders); samplers: what save can write
    ("trigflow" students; "flow" for multi-step models from the flow_matching method); random_factory(size): the
    module for teacher.random = size; backend: the registry backend.
    """

    factory: Callable[[str | None], nn.Module]
    sample_shape: Shape | Callable[[nn.Module], Shape]
    cond_shapes: Mapping[str, Shape] | Callable[[nn.Module], Mapping[str, Shape]] = field(default_factory=dict)
    uncond_keys: tuple[str, ...] = ()
    features: tuple[tuple[str, int], ...] | Callable[[nn.Module], tuple[tuple[str, int], ...]] = ()
    lora_targets: tuple[str, ...] = ()
    resolution: int = 0
    backend: str = ""
    to_images: Callable[[Tensor], Tensor] | None = None
    random_factory: Callable[[str], nn.Module] | None = None  # random ("tiny" | "full") -> module; None: factory(None)
    save: Callable[..., dict[str, str]] | None = None
    samplers: tuple[str, ...] = ("trigflow",)  # save(flow_model, folder, sampler) is called for the others


REGISTERED: dict[str, TeacherEntry] = {}


def register_teacher(name: str, factory: Callable[[str | None], nn.Module], **entry: Any) -> None:
    """Make `teacher.kind = name` build `factory(path)`; keyword arguments are TeacherEntry fields."""
    if name in ("sana", "unet"):
        raise ValueError(f"{name!r} is a built-in teacher family")
    REGISTERED[name] = TeacherEntry(factory=factory, **entry)


def _save_module(kind: str) -> Callable[[nn.Module, Path], dict[str, str]]:
    def save(student: nn.Module, folder: Path) -> dict[str, str]:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in student.flow_model.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps({"teacher_kind": kind, "parameterization": "flow"}, indent=2))
        return {"weights": "."}

    return save


def build_registered(name: str, *, path: str, random: str, random_seed: int) -> Teacher:
    """A teacher from a registered factory."""
    entry = REGISTERED[name]
    if path and is_local(path) and not Path(path).expanduser().exists():
        raise TeacherError(f"teacher.path: {path} does not exist")
    torch.manual_seed(random_seed)
    if random and entry.random_factory is not None:
        flow = entry.random_factory(random)
    else:
        flow = entry.factory(None if random else path)
    sample_shape = tuple(entry.sample_shape(flow) if callable(entry.sample_shape) else entry.sample_shape)
    cond_shapes = entry.cond_shapes(flow) if callable(entry.cond_shapes) else entry.cond_shapes
    features = entry.features(flow) if callable(entry.features) else entry.features
    decode = entry.to_images
    if decode is None:
        decode = pixels_to_images if len(sample_shape) == 3 and sample_shape[0] == 3 else latent_to_images
    save = _save_module(name)
    if entry.save is not None:
        save = lambda student, folder, *sampler: entry.save(student.flow_model, folder, *sampler)  # noqa: E731
    return Teacher(
        kind=name,
        model=FlowAsTrigFlow(flow),
        sample_shape=sample_shape,
        cond_shapes={k: tuple(v) for k, v in cond_shapes.items()},
        uncond_keys=tuple(entry.uncond_keys),
        backend=entry.backend,
        resolution=entry.resolution or (sample_shape[-1] if len(sample_shape) == 3 else 0),
        lora_targets=tuple(entry.lora_targets),
        layers={f"flow_model.{layer}": channels for layer, channels in features},
        decode=decode,
        save=save,
        samplers=tuple(entry.samplers),
    )
