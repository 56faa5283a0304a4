"""Guidance distillation: one network pass that already is the teacher's classifier-free-guided output.

Stage 1 of Meng et al. 2023 ("On distillation of guided diffusion models"): the student, a copy of the teacher,
regresses the teacher's guided output F_u + w (F_c - F_u) at every noise level, so afterwards a single conditional
call gives what CFG needed two for. Why the project needs it: an sCM student starts as the teacher's *unguided*
network, and at one step (the highest noise) that network barely listens to the prompt; the 256 px offline student
of issue 20 kept that deafness through 450 sCM + LADD steps (bench/results/freehand_v2_staged.json). Starting sCM
from a guidance-distilled copy (`student.init`) gives it a prompt-following start; the consistency stage then only
has to shorten the path.

Loss: E_t,x0,z || F_theta(x_t / sigma_d, t, c) - F_guided(x_t / sigma_d, t, c) ||^2 with x_t = cos t x0 + sin t z,
t from the flow time s ~ U[s_min, s_max]. The result is sampled like its teacher (Euler on the flow ODE) but without
CFG (`sampler = "flow"`, exported with guidance 1: the conditional pass alone).
"""

from __future__ import annotations

import torch
from torch import Tensor

from distillation.methods.base import (
    Method,
    RoleSpec,
    mean_flat,
    student_cond,
    teacher_F,
    trigflow_noising,
    uniform_flow_timesteps,
)
from pipelines.parameterization import SIGMA_D


class GuidanceDistillation(Method):
    """Roles: student (trainable, a copy of the teacher), teacher (frozen). The batch must carry "guidance" and
    "uncond" (the data's `guidance` list), or there is nothing to distil."""

    sampler = "flow"

    def __init__(self, *, sigma_d: float = SIGMA_D, s_min: float = 0.0, s_max: float = 1.0):
        self.sigma_d = sigma_d
        self.s_min, self.s_max = s_min, s_max  # flow-time range trained (all of it: every Euler step is guided)

    def roles(self) -> dict[str, RoleSpec]:
        return {"student": RoleSpec(trainable=True), "teacher": RoleSpec(trainable=False)}

    def update_plan(self, step: int) -> list[str]:
        return ["student"]

    def loss(self, role: str, batch: dict, step: int) -> dict[str, Tensor]:
        if role != "student":
            raise ValueError(f"guidance distillation trains only 'student', not {role!r}")
        if batch.get("guidance") is None or batch.get("uncond") is None:
            raise ValueError(
                "guidance distillation needs the data's guidance scales (data.guidance) and a null condition"
            )
        x0, sigma_d = batch["x0"], self.sigma_d
        t = uniform_flow_timesteps(x0, max(self.s_min, 1e-3), min(self.s_max, 1 - 1e-3))
        x_t, _ = trigflow_noising(x0, t, sigma_d)
        with torch.no_grad():
            target = teacher_F(self.models["teacher"], x_t / sigma_d, t, batch)
        F_theta = self.models["student"](x_t / sigma_d, t, student_cond(batch))
        loss = mean_flat((F_theta - target) ** 2).mean()
        return {"loss": loss, "t_mean": t.mean().detach()}
