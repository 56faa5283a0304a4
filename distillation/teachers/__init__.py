"""Frozen teachers as TrigFlow models F(x_t / sigma_d, t, cond): `build_teacher`, one entry point over the families.

Families: "sana" (teachers/sana.py: the Sana engine's transformer + control branch flow), "unet" (teachers/unet.py:
SD-style diffusers UNet2DConditionModel, epsilon or v prediction, optionally with a ControlNetModel), "sketch_tiny"
(teachers/sketch_tiny.py: the project's small pixel-space model, pipelines/tiny/) and any nn.Module factory given to
`register_teacher` (teachers/registered.py). Every family is a flow or VP velocity model turned into TrigFlow form
without retraining (SanaMSCM; VP with alpha = cos t, sigma = sin t is TrigFlow on unit-scale data), so one Method code
path serves all of them; each returns the same record (teachers/base.py: Teacher).
"""

from __future__ import annotations

import torch

from distillation.teachers import sketch_tiny  # noqa: F401  (registers "sketch_tiny")
from distillation.teachers.base import DTYPES, Teacher, TeacherError
from distillation.teachers.registered import REGISTERED, build_registered
from pipelines.sana.config import DEFAULT_GUIDANCE


def teacher_kinds() -> list[str]:
    """Every `teacher.kind` this build accepts."""
    return ["sana", "unet", *sorted(REGISTERED)]


def build_teacher(
    *,
    kind: str,
    path: str = "",
    random: str = "",
    random_seed: int = 0,
    controlnet: bool = False,
    controlnet_path: str = "",
    conditioning_scale: float = 1.0,
    dense_time: bool = True,
    default_guidance: float = DEFAULT_GUIDANCE,
    text_tokens: int = 8,
    dtype: str = "float32",
    vae: str = "",
    device: torch.device | str = "cpu",
) -> Teacher:
    """Build a frozen teacher (requires_grad False, eval, `dtype` on `device`); TeacherError names what is wrong."""
    device = torch.device(device)
    if kind == "sana":  # the diffusers families are imported when used: a sketch_tiny job starts seconds sooner
        from distillation.teachers.sana import build_sana

        teacher = build_sana(
            path=path,
            random=random,
            random_seed=random_seed,
            controlnet=controlnet,
            controlnet_path=controlnet_path,
            dense_time=dense_time,
            conditioning_scale=conditioning_scale,
            default_guidance=default_guidance,
            text_tokens=text_tokens,
            vae=vae,
            device=device,
        )
    elif kind == "unet":
        from distillation.teachers.unet import build_unet

        teacher = build_unet(
            path=path,
            random=random,
            random_seed=random_seed,
            controlnet=controlnet,
            controlnet_path=controlnet_path,
            conditioning_scale=conditioning_scale,
        )
    elif kind in REGISTERED:
        if controlnet:
            raise TeacherError(f"teacher.controlnet: teacher kind {kind!r} takes its conditions from its own factory")
        teacher = build_registered(kind, path=path, random=random, random_seed=random_seed)
    else:
        raise TeacherError(f"teacher.kind: unknown teacher {kind!r}; known: {', '.join(teacher_kinds())}")
    teacher.model.to(device=device, dtype=DTYPES[dtype]).eval().requires_grad_(False)
    return teacher
