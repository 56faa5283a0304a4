"""SANA-Sprint's hybrid: sCM + LADD sharing one student and one frozen teacher (L_G = 1.0 L_sCM + 0.5 L_adv)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from distillation.methods.base import Method, RoleSpec
from distillation.methods.ladd import LADD
from distillation.methods.scm import SCM
from pipelines.parameterization import SIGMA_D


class SCMLADD(Method):
    """Roles: student, teacher (sCM targets), logvar (with adaptive weighting), backbone (LADD features; share the
    teacher where it is a network), heads. update_plan alternates the generator (student + logvar) and the heads."""

    min_batch = LADD.min_batch

    def __init__(
        self,
        *,
        feature_layers: Sequence[str],
        feature_channels: Sequence[int],
        sigma_d: float = SIGMA_D,
        scm_weight: float = 1.0,
        adv_weight: float = 0.5,
        p_mean: float = 0.2,
        p_std: float = 1.6,
        p_mean_d: float = -0.6,
        p_std_d: float = 1.0,
        tangent_warmup: int = 4000,
        adaptive_weighting: bool = True,
        jvp_mode: Literal["forward", "fd"] = "forward",
        max_time_prob: float = 0.5,
        head_kernel_size: int = 9,
    ):
        self.scm = SCM(
            sigma_d=sigma_d,
            p_mean=p_mean,
            p_std=p_std,
            tangent_warmup=tangent_warmup,
            adaptive_weighting=adaptive_weighting,
            jvp_mode=jvp_mode,
        )
        self.ladd = LADD(
            feature_layers=feature_layers,
            feature_channels=feature_channels,
            sigma_d=sigma_d,
            p_mean=p_mean,
            p_std=p_std,
            p_mean_d=p_mean_d,
            p_std_d=p_std_d,
            max_time_prob=max_time_prob,
            head_kernel_size=head_kernel_size,
        )
        self.scm_weight, self.adv_weight = scm_weight, adv_weight  # SANA-Sprint: 1.0 and 0.5

    def roles(self) -> dict[str, RoleSpec]:
        return self.scm.roles() | self.ladd.roles()

    def bind(self, models: dict[str, nn.Module]) -> None:
        super().bind(models)
        self.scm.bind({name: models[name] for name in self.scm.roles()})
        self.ladd.bind({name: models[name] for name in self.ladd.roles()})

    def update_plan(self, step: int) -> list[str]:
        return self.ladd.update_plan(step)

    def loss(self, role: str, batch: dict, step: int) -> dict[str, Tensor]:
        if role == "student":
            scm = self.scm.consistency_loss(batch, step)
            adv = self.ladd.generator_loss(batch)
            return {
                "loss": self.scm_weight * scm["loss"] + self.adv_weight * adv,
                "scm_loss": scm["loss"].detach(),
                "loss_no_logvar": scm["loss_no_logvar"],
                "g_norm": scm["g_norm"],
                "adv_loss": adv.detach(),
            }
        return self.ladd.loss(role, batch, step)
