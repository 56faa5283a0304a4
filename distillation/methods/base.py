"""The Method contract (roles, update plan, per-role losses) and the small helpers every method shares.

Models are callables `model(x, t, cond) -> F` in TrigFlow form: x = x_t / sigma_d, t in [0, pi/2] of shape (b,),
F with dx_t/dt = sigma_d F (pipelines.parameterization.FlowAsTrigFlow turns a flow-matching model into one).
A batch is a dict: "x0" (b, ...) clean samples in TrigFlow scale (sigma_d * latent; teacher samples for
distillation), and optionally "cond" (the condition the teacher sees), "uncond" (its null condition) with
"guidance" (b,) CFG scales, and "student_cond" (the student's condition, e.g. with the guidance embedded;
defaults to "cond").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from pipelines.parameterization import append_dims, trigflow_time_from_flow


@dataclass(frozen=True)
class RoleSpec:
    """One network a method needs; the trainer builds it, owns its optimizer (if trainable) and device.

    init: "teacher" = a copy of the teacher network (a frozen role may share the teacher's instance);
          "new" = `build()`.
    adapter: LoRA adapter name when roles share the teacher's frozen base (None = full weights).
    steps_with: another role whose update also steps this role's optimizer (e.g. sCM's log-variance head
          is trained by the student's loss); None = its own entry in `update_plan`.
    ema_of: for a frozen role, the role it tracks as an exponential moving average with decay `ema_decay`,
          updated by the trainer after every step (LCM's target network).
    """

    trainable: bool
    init: Literal["teacher", "new"] = "teacher"
    adapter: str | None = None
    build: Callable[[], nn.Module] | None = None
    steps_with: str | None = None
    ema_of: str | None = None
    ema_decay: float = 0.0


class Method:
    """Base of the distillation methods (ARCHITECTURE.md, Method contract). No optimizers, devices or I/O here."""

    min_batch: int = 1
    # how the trained "student" is sampled: "trigflow" (1-4 consistency steps) or "flow" (Euler on the flow ODE)
    sampler: str = "trigflow"
    # True when batch["x0"] must be real pictures paired with the batch's conditions (fine-tuning), not teacher samples
    needs_pairs: bool = False

    def roles(self) -> dict[str, RoleSpec]:
        """Role name -> RoleSpec."""
        raise NotImplementedError

    def bind(self, models: Mapping[str, nn.Module]) -> None:
        """Receive the built role networks (one per key of `roles()`)."""
        missing = set(self.roles()) - set(models)
        if missing:
            raise ValueError(f"{type(self).__name__} needs roles {sorted(missing)}")
        self.models = dict(models)

    def update_plan(self, step: int) -> list[str]:
        """Roles to update at this step, in order; each gets `loss(role, ...)` and one optimizer step."""
        raise NotImplementedError

    def loss(self, role: str, batch: dict, step: int) -> dict[str, Tensor]:
        """Losses for one role's update: "loss" is optimized, the other entries are logged."""
        raise NotImplementedError


def mean_flat(x: Tensor) -> Tensor:
    """Mean over all dimensions but the batch."""
    return x.flatten(1).mean(dim=1)


def norm_flat(x: Tensor) -> Tensor:
    """Per-sample L2 norm over all dimensions but the batch."""
    return x.flatten(1).norm(dim=1)


def student_cond(batch: dict):
    """The student's condition: batch["student_cond"] if given, else batch["cond"] (None when unconditional)."""
    return batch.get("student_cond", batch.get("cond"))


def teacher_F(teacher: nn.Module, x: Tensor, t: Tensor, batch: dict) -> Tensor:
    """Teacher output, with CFG F_u + w (F_c - F_u) when the batch carries "guidance" and "uncond"."""
    F_c = teacher(x, t, batch.get("cond"))
    if batch.get("guidance") is None:
        return F_c
    F_u = teacher(x, t, batch["uncond"])
    return F_u + append_dims(batch["guidance"], x) * (F_c - F_u)


def trigflow_noising(x0: Tensor, t: Tensor, sigma_d: float) -> tuple[Tensor, Tensor]:
    """x_t = cos t x0 + sin t z with fresh z ~ N(0, sigma_d^2 I); returns (x_t, z)."""
    z = sigma_d * torch.randn_like(x0)
    return torch.cos(append_dims(t, x0)) * x0 + torch.sin(append_dims(t, x0)) * z, z


def uniform_flow_timesteps(x: Tensor, s_min: float, s_max: float) -> Tensor:
    """TrigFlow times (b,) with flow time s ~ U[s_min, s_max] (DMD2's U[0.02T, 0.98T], TwinFlow's Beta(1, 1))."""
    s = s_min + (s_max - s_min) * torch.rand(x.shape[0], dtype=x.dtype, device=x.device)
    return trigflow_time_from_flow(s)
