"""sCM: continuous-time consistency distillation in TrigFlow (Lu & Song 2024; SANA-Sprint train_scm_ladd.py)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from distillation.heads import LogVarHead
from distillation.jvp import jvp
from distillation.methods.base import (
    Method,
    RoleSpec,
    mean_flat,
    norm_flat,
    student_cond,
    teacher_F,
    trigflow_noising,
)
from pipelines.parameterization import SIGMA_D, append_dims
from pipelines.schedules import get_lognormal_tan_timesteps


class SCM(Method):
    """Roles: student (trainable, from the teacher), teacher (frozen), logvar (u_phi, trained with the student)."""

    def __init__(
        self,
        *,
        sigma_d: float = SIGMA_D,
        p_mean: float = 0.2,
        p_std: float = 1.6,
        tangent_warmup: int = 4000,
        tangent_norm_c: float = 0.1,
        adaptive_weighting: bool = True,
        jvp_mode: Literal["forward", "fd"] = "forward",
    ):
        self.sigma_d = sigma_d
        self.p_mean, self.p_std = p_mean, p_std  # log-normal proposal of sigma_d tan t (SANA-Sprint: 0.2, 1.6)
        self.tangent_warmup = tangent_warmup  # steps over which r ramps 0 -> 1 on the Jacobian term (Sprint: 4000)
        self.tangent_norm_c = tangent_norm_c  # g <- g / (||g|| + c) (sCM / Sana: c = 0.1)
        self.adaptive_weighting = adaptive_weighting  # learned u_phi(t) instead of a fixed weight
        self.jvp_mode = jvp_mode

    def roles(self) -> dict[str, RoleSpec]:
        roles = {"student": RoleSpec(trainable=True), "teacher": RoleSpec(trainable=False)}
        if self.adaptive_weighting:
            roles["logvar"] = RoleSpec(trainable=True, init="new", build=LogVarHead, steps_with="student")
        return roles

    def update_plan(self, step: int) -> list[str]:
        return ["student"]

    def loss(self, role: str, batch: dict, step: int) -> dict[str, Tensor]:
        if role != "student":
            raise ValueError(f"SCM updates only the student, not {role!r}")
        return self.consistency_loss(batch, step)

    def consistency_loss(self, batch: dict, step: int) -> dict[str, Tensor]:
        """sCM loss with tangent warm-up and normalisation, in the MSE form ||F_theta - F^- - g||^2."""
        student, cond, sigma_d = self.models["student"], student_cond(batch), self.sigma_d
        x0 = batch["x0"]
        t = get_lognormal_tan_timesteps(
            x0.shape[0], p_mean=self.p_mean, p_std=self.p_std, sigma_d=sigma_d, device=x0.device, dtype=x0.dtype
        )
        x_t, _ = trigflow_noising(x0, t, sigma_d)
        cos_t, sin_t = torch.cos(append_dims(t, x0)), torch.sin(append_dims(t, x0))
        with torch.no_grad():
            dxt_dt = sigma_d * teacher_F(self.models["teacher"], x_t / sigma_d, t, batch)
            # JVP rearrangement: tangents scaled by cos t sin t, so the JVP returns cos t sin t dF^-/dt.
            F_minus, F_jvp = jvp(
                lambda x, t: student(x, t, cond),
                (x_t / sigma_d, t),
                (cos_t * sin_t * dxt_dt / sigma_d, torch.cos(t) * torch.sin(t)),
                mode=self.jvp_mode,
            )
            r = min(1.0, step / self.tangent_warmup) if self.tangent_warmup > 0 else 1.0
            # g = cos t df^-/dt = -cos^2 t (sigma_d F^- - dx_t/dt) - r (cos t sin t x_t + sigma_d cos t sin t dF^-/dt)
            g = -(cos_t**2) * (sigma_d * F_minus - dxt_dt) - r * (cos_t * sin_t * x_t + sigma_d * F_jvp)
            g_norm = norm_flat(g)
            g = g / (append_dims(g_norm, g) + self.tangent_norm_c)
        F_theta = student(x_t / sigma_d, t, cond)
        weight = 1 / (sigma_d * torch.tan(t))  # prior weight w(t) = 1 / (sigma_d tan t)
        sq = mean_flat((F_theta - F_minus - g) ** 2)
        loss_no_logvar = (weight * sq).mean()
        if self.adaptive_weighting:
            logvar = self.models["logvar"](t)
            loss = (
                weight * torch.exp(-logvar) * sq + logvar
            ).mean()  # (w / e^u) ||.||^2 + u   (sCM adaptive weighting)
        else:
            loss = loss_no_logvar
        return {"loss": loss, "loss_no_logvar": loss_no_logvar.detach(), "g_norm": g_norm.mean()}
