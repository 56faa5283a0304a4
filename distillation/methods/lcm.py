"""LCM: skipping-step consistency distillation with the teacher's one-step ODE solver (Luo et al. 2023; LCM-LoRA).

For a flow teacher the DDIM step is the Euler step of the flow ODE (notes/distillation.md sec. 4), done here in
TrigFlow form. The consistency function lives in flow units, f(x_s, s) = c_skip x_s + c_out x_hat0(x_s, s),
with the LCM boundary scalings on the 1000-step clock, so `sample_lcm` runs it directly.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from distillation.methods.base import Method, RoleSpec, mean_flat, student_cond, teacher_F, trigflow_noising
from pipelines.parameterization import (
    SIGMA_D,
    append_dims,
    flow_input_from_trigflow,
    flow_time_from_trigflow,
    lcm_boundary_scalings,
    trigflow_denoise,
    trigflow_input_from_flow,
    trigflow_step,
    trigflow_time_from_flow,
)


def lcm_consistency(model: nn.Module, x_s: Tensor, s: Tensor, cond=None, *, sigma_d: float = SIGMA_D) -> Tensor:
    """f(x_s, s) = c_skip(s) x_s + c_out(s) x_hat0(x_s, s), flow units, for a TrigFlow model F(x_t / sigma_d, t)."""
    t = trigflow_time_from_flow(s)
    x = trigflow_input_from_flow(x_s, s)
    x0 = trigflow_denoise(sigma_d * x, model(x, t, cond), t, sigma_d) / sigma_d
    c_skip, c_out = lcm_boundary_scalings(1000 * s, sigma_d)
    return append_dims(c_skip, x_s) * x_s + append_dims(c_out, x_s) * x0


class LCM(Method):
    """Roles: student (trainable, from the teacher), teacher (frozen, with CFG) and, with `target_ema` > 0, target
    (frozen EMA of the student, the full-model LCM recipe's 0.95); with 0 the target is the online student without
    grad (LCM-LoRA). Pseudo-Huber loss sqrt(d^2 + c^2) - c."""

    def __init__(
        self,
        *,
        sigma_d: float = SIGMA_D,
        num_ddim_timesteps: int = 50,
        huber_c: float = 0.001,
        target_ema: float = 0.95,
    ):
        self.sigma_d = sigma_d
        self.num_ddim_timesteps = num_ddim_timesteps  # skipping-step grid: 50 points, skip k = 1000 / 50
        self.huber_c = huber_c  # pseudo-Huber c (diffusers LCM default 0.001)
        self.target_ema = target_ema  # EMA decay of the target network (0 = the online student)

    def roles(self) -> dict[str, RoleSpec]:
        roles = {"student": RoleSpec(trainable=True), "teacher": RoleSpec(trainable=False)}
        if self.target_ema > 0:
            roles["target"] = RoleSpec(trainable=False, ema_of="student", ema_decay=self.target_ema)
        return roles

    def update_plan(self, step: int) -> list[str]:
        return ["student"]

    def loss(self, role: str, batch: dict, step: int) -> dict[str, Tensor]:
        if role != "student":
            raise ValueError(f"LCM updates only the student, not {role!r}")
        student, cond, sigma_d, x0 = self.models["student"], student_cond(batch), self.sigma_d, batch["x0"]
        n = torch.randint(1, self.num_ddim_timesteps + 1, (x0.shape[0],), device=x0.device).to(x0.dtype)
        s_hi, s_lo = n / self.num_ddim_timesteps, (n - 1) / self.num_ddim_timesteps
        t_hi, t_lo = trigflow_time_from_flow(s_hi), trigflow_time_from_flow(s_lo)
        x_hi, _ = trigflow_noising(x0, t_hi, sigma_d)
        online = lcm_consistency(student, flow_input_from_trigflow(x_hi / sigma_d, t_hi), s_hi, cond, sigma_d=sigma_d)
        with torch.no_grad():
            F_teacher = teacher_F(self.models["teacher"], x_hi / sigma_d, t_hi, batch)
            x_lo = trigflow_step(x_hi, F_teacher, t_hi, t_lo, sigma_d)
            s_lo = flow_time_from_trigflow(t_lo)
            target_net = self.models.get("target", student)  # the EMA target, or the online student without grad
            target = lcm_consistency(
                target_net, flow_input_from_trigflow(x_lo / sigma_d, t_lo), s_lo, cond, sigma_d=sigma_d
            )
        loss = mean_flat(torch.sqrt((online - target) ** 2 + self.huber_c**2) - self.huber_c).mean()
        return {"loss": loss}
