"""Pictures of a run: the teacher's Euler samples with CFG, the student's samples with chosen weights swapped in for
a look and restored, and rows of uint8 tiles as one grid image."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from distillation.methods.base import teacher_F
from pipelines.parameterization import SIGMA_D, trigflow_step, trigflow_time_from_flow
from pipelines.schedules import get_flow_timesteps, get_trigflow_timesteps, sample_trigflow


@torch.no_grad()
def sample_teacher(teacher: nn.Module, x_T: Tensor, batch: Mapping[str, Any], steps: int) -> Tensor:
    """Euler on the teacher's flow ODE (uniform in flow time, = DDIM in TrigFlow) with the batch's CFG."""
    ts = trigflow_time_from_flow(get_flow_timesteps(steps)).to(x_T.dtype)
    x = x_T
    for t, t_next in zip(ts[:-1], ts[1:], strict=True):
        t_batch = torch.full((x.shape[0],), t.item(), dtype=x.dtype, device=x.device)
        x = trigflow_step(x, teacher_F(teacher, x / SIGMA_D, t_batch, batch), t_batch, t_next.item(), SIGMA_D)
    return x


def image_grid(rows: Sequence[Tensor], gap: int = 2, min_side: int = 64) -> Image.Image:
    """uint8 image rows, each (n, h, w, 3), as one picture: tiles enlarged (nearest) to at least `min_side` pixels,
    `gap` white pixels apart."""
    scale = max(1, -(-min_side // rows[0].shape[1]))
    tiles = [row.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2).cpu().numpy() for row in rows]
    n, h, w, _ = tiles[0].shape
    grid = np.full((len(rows) * (h + gap) - gap, n * (w + gap) - gap, 3), 255, np.uint8)
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            grid[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = tile
    return Image.fromarray(grid)


@contextmanager
def swapped_weights(params: Mapping[str, nn.Parameter], values: Mapping[str, Tensor]) -> Iterator[None]:
    """Parameters temporarily set to `values` (the EMA), restored exactly afterwards."""
    saved = {name: p.detach().clone() for name, p in params.items()}
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(values[name])
    try:
        yield
    finally:
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(saved[name])


@torch.no_grad()
def student_images(
    student: Any,
    sampler: str,
    teacher: Any,
    batch: Mapping[str, Any],
    noise: Tensor,
    steps: int,
    weights: Mapping[str, Tensor],
) -> Tensor:
    """uint8 pictures (b, h, w, 3) of the student role (roles.AdapterView) with `weights` swapped in, from unit noise
    (b, ...): Euler with the batch's CFG for a flow model in training ("flow"), TrigFlow steps for a distilled one;
    `teacher` (a teachers.Teacher) turns samples into pictures."""
    cond = batch.get("student_cond", batch["cond"])
    with swapped_weights(student.params, weights):
        if sampler == "flow":
            x0 = sample_teacher(student.module, SIGMA_D * noise, batch, steps)
        else:
            generator = torch.Generator(noise.device).manual_seed(0)
            x0 = sample_trigflow(
                lambda x, t: student.module(x, t, cond),
                SIGMA_D * noise,
                get_trigflow_timesteps(steps),
                generator=generator,
            )
        return teacher.to_images(x0)
