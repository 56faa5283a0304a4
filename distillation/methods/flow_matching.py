"""Flow matching (rectified flow) pre-training of a teacher, with condition dropout for classifier-free guidance.

Not a distillation method, but the same contract, so the one trainer also trains the project's own teachers.
Loss (Lipman et al. 2023; Liu et al. 2023): E || v_theta(x_s, s, c) - (eps - x0) ||^2, x_s = (1 - s) x0 + s eps,
s from the logit-normal of SD3 (Esser et al. 2024, eq. 19) mixed with a little uniform mass.
"""

from __future__ import annotations

import torch
from torch import Tensor

from distillation.methods.base import Method, RoleSpec, mean_flat
from pipelines.parameterization import (
    SIGMA_D,
    append_dims,
    flow_velocity_from_trigflow,
    trigflow_input_from_flow,
    trigflow_time_from_flow,
)


def drop_condition(cond, uncond, keep: Tensor):
    """Per-sample choice between cond and uncond (tensors or dicts of tensors); keep is a (b,) bool mask."""
    if isinstance(cond, dict):
        return {k: drop_condition(v, uncond[k], keep) if k in uncond else v for k, v in cond.items()}
    mask = keep.reshape(keep.shape + (1,) * (cond.dim() - 1))
    return torch.where(mask, cond, uncond.to(cond.dtype).expand_as(cond))


def logit_normal_times(b: int, *, mean: float, std: float, uniform: float, like: Tensor) -> Tensor:
    """s = sigmoid(N(mean, std^2)) with probability 1 - uniform, else U(0, 1); shape (b,)."""
    s = torch.sigmoid(mean + std * torch.randn(b, device=like.device, dtype=like.dtype))
    flat = torch.rand(b, device=like.device, dtype=like.dtype)
    return torch.where(torch.rand(b, device=like.device) < uniform, flat, s).clamp(1e-4, 1 - 1e-4)


class FlowMatching(Method):
    """Role: student (trainable, a float32 copy of the teacher network). Pre-training starts from a teacher built with
    `teacher.random = "full"` (seeded random weights of the real architecture) or fine-tunes a trained one. The model
    has the methods' TrigFlow signature F(x_t / sigma_d, t, cond); the loss is read back in flow units so the
    objective is exactly rectified flow's. The result is a multi-step flow model: previews and exports use Euler
    sampling with CFG (`sampler = "flow"`), not consistency steps."""

    sampler = "flow"

    def __init__(
        self,
        *,
        p_uncond: float = 0.1,
        time_mean: float = 0.0,
        time_std: float = 1.0,
        uniform: float = 0.1,
        sigma_d: float = SIGMA_D,
    ):
        self.p_uncond = p_uncond  # condition dropout, so CFG can be used at sampling time
        self.time_mean, self.time_std = time_mean, time_std  # logit-normal location and scale
        self.uniform = uniform  # share of uniformly drawn times, so both ends of [0, 1] are trained
        self.sigma_d = sigma_d

    def roles(self) -> dict[str, RoleSpec]:
        return {"student": RoleSpec(trainable=True, init="teacher")}

    def update_plan(self, step: int) -> list[str]:
        return ["student"]

    def loss(self, role: str, batch: dict, step: int) -> dict[str, Tensor]:
        if role != "student":
            raise ValueError(f"flow matching trains only 'student', not {role!r}")
        x0 = batch["x0"] / self.sigma_d  # back to unit scale: x_s = (1 - s) x0 + s eps
        b = x0.shape[0]
        cond = batch.get("cond")
        if batch.get("uncond") is not None and self.p_uncond > 0:
            cond = drop_condition(cond, batch["uncond"], torch.rand(b, device=x0.device) >= self.p_uncond)
        s = logit_normal_times(b, mean=self.time_mean, std=self.time_std, uniform=self.uniform, like=x0)
        eps = torch.randn_like(x0)
        x_s = (1 - append_dims(s, x0)) * x0 + append_dims(s, x0) * eps
        F = self.models["student"](trigflow_input_from_flow(x_s, s), trigflow_time_from_flow(s), cond)
        v = flow_velocity_from_trigflow(x_s, F, s)
        loss = mean_flat((v - (eps - x0)) ** 2).mean()
        return {"loss": loss, "s_mean": s.mean().detach()}
