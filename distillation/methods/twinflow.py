"""TwinFlow: one model, self-adversarial twin flows on t in [-pi/2, pi/2] (Cheng et al. 2025; inclusionAI/TwinFlow).

Adapted to (x_t, t, cond) models, which have no target-time input: the one-step generator is the model at
t = pi/2, and the twin flows are trained for flow times s <= s_max < 1, so the two uses of the network stay apart
(the reference code separates them with a second time argument and adds RCGM any-step targets, which this
one-step version leaves out).
"""

from __future__ import annotations

import torch
from torch import Tensor

from distillation.methods.base import (
    Method,
    RoleSpec,
    mean_flat,
    student_cond,
    trigflow_noising,
    uniform_flow_timesteps,
)
from pipelines.parameterization import HALF_PI, SIGMA_D, trigflow_denoise, trigflow_target


class TwinFlow(Method):
    """Role: student (trainable, from the teacher). No teacher and no discriminator: batch["x0"] (teacher samples)
    is the data. Each batch is split in four: e2e (distribution matching of the one-step generator with
    dv = F(x_t, -t) - F(x_t, t), clamped), two real-flow groups (flow matching on x0 at t > 0) and adv (flow
    matching of the generator's own samples at -t, the fake twin)."""

    min_batch = 4  # one sample per group at least

    def __init__(
        self,
        *,
        sigma_d: float = SIGMA_D,
        s_min: float = 0.0,
        s_max: float = 0.95,
        dm_weight: float = 0.5,
        dm_clamp: float = 1.0,
    ):
        self.sigma_d = sigma_d
        self.s_min, self.s_max = s_min, s_max  # twin-flow times, uniform in flow time (TwinFlow: Beta(1, 1))
        self.dm_weight = dm_weight  # TwinFlow `dist_match_cof`
        self.dm_clamp = dm_clamp  # velocity difference clamp (TwinFlow clamps to +-1)

    def roles(self) -> dict[str, RoleSpec]:
        return {"student": RoleSpec(trainable=True)}

    def update_plan(self, step: int) -> list[str]:
        return ["student"]

    def generate(self, noise: Tensor, cond) -> tuple[Tensor, Tensor]:
        """One-step generator from noise ~ N(0, sigma_d^2 I): (F at t = pi/2, x_hat0 = -sigma_d F)."""
        t = torch.full((noise.shape[0],), HALF_PI, dtype=noise.dtype, device=noise.device)
        F = self.models["student"](noise / self.sigma_d, t, cond)
        return F, trigflow_denoise(noise, F, t, self.sigma_d)

    def loss(self, role: str, batch: dict, step: int) -> dict[str, Tensor]:
        if role != "student":
            raise ValueError(f"TwinFlow updates only the student, not {role!r}")
        model, sigma_d, x0 = self.models["student"], self.sigma_d, batch["x0"]
        cond = student_cond(batch)
        groups = torch.arange(x0.shape[0], device=x0.device) % 4  # 0 e2e, 1-2 real flow, 3 adv (fake flow)
        e2e, adv = groups == 0, groups == 3
        sign = torch.where(adv, -1.0, 1.0).to(x0.dtype)

        F_gen, x_gen = self.generate(sigma_d * torch.randn_like(x0), cond)
        data = torch.where(adv.view(-1, *[1] * (x0.dim() - 1)), x_gen.detach(), x0)
        t = uniform_flow_timesteps(x0, self.s_min, self.s_max)
        x_t, z = trigflow_noising(data, t, sigma_d)
        F_theta = model(x_t / sigma_d, sign * t, cond)
        flow = mean_flat((F_theta - trigflow_target(data, z, t, sigma_d)) ** 2)
        flow_loss = flow[~e2e].mean()

        with torch.no_grad():
            x = x_gen[e2e]
            t_dm = uniform_flow_timesteps(x, self.s_min, self.s_max)
            x_dm, _ = trigflow_noising(x, t_dm, sigma_d)
            cond_e2e = cond[e2e] if isinstance(cond, Tensor) else cond
            dv = model(x_dm / sigma_d, -t_dm, cond_e2e) - model(x_dm / sigma_d, t_dm, cond_e2e)
        # TwinFlow's e2e target F - dv: x_hat0 = -sigma_d F moves by sigma_d dv = (x_hat_real - x_hat_fake) / sin t.
        F_e2e = F_gen[e2e]
        dm_loss = mean_flat((F_e2e - (F_e2e - dv.clamp(-self.dm_clamp, self.dm_clamp)).detach()) ** 2).mean()
        return {
            "loss": flow_loss + self.dm_weight * dm_loss,
            "flow_loss": flow_loss.detach(),
            "dm_loss": dm_loss.detach(),
            "real_flow_loss": flow[(~e2e) & (~adv)].mean().detach(),
            "fake_flow_loss": flow[adv].mean().detach(),
        }
