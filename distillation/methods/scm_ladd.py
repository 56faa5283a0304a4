"""SANA-Sprint's hybrid: sCM + LADD sharing one student and one frozen teacher (L_G = 1.0 L_sCM + 0.5 L_adv), with
an optional third term, ADD's discriminator on a frozen pretrained feature network (L_G += feature_weight L_feat)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from distillation.methods.base import Method, RoleSpec
from distillation.methods.feature_adv import feature_adversary, joint_heads_loss
from distillation.methods.ladd import LADD
from distillation.methods.scm import SCM
from pipelines.parameterization import SIGMA_D
from pipelines.text import PROMPT_DIM


class SCMLADD(Method):
    """Roles: student, teacher (sCM targets), logvar (with adaptive weighting), backbone (LADD features; share the
    teacher where it is a network), heads; with `feature_net`, also feature_net (frozen) and feature_heads (stepped
    with heads). update_plan alternates the generator (student + logvar) and the discriminator (heads [+ feature
    heads]); one x_hat0 per update feeds every adversarial term."""

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
        feature_net: str = "",
        feature_weight: float = 0.5,
        feature_resolution: int = 192,
        feature_text_dim: int = PROMPT_DIM,
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
        # "" = off; "efficientnet_lite1" | "efficientnet_lite2": ADD's frozen feature network (pixel-space students)
        self.feature = feature_adversary(
            feature_net, resolution=feature_resolution, text_dim=feature_text_dim, sigma_d=sigma_d
        )
        self.feature_weight = feature_weight  # its weight in L_G (ADD: lambda = 2.5 against a distillation loss)

    def roles(self) -> dict[str, RoleSpec]:
        roles = self.scm.roles() | self.ladd.roles()
        return roles | self.feature.roles() if self.feature is not None else roles

    def bind(self, models: dict[str, nn.Module]) -> None:
        super().bind(models)
        self.scm.bind({name: models[name] for name in self.scm.roles()})
        self.ladd.bind({name: models[name] for name in self.ladd.roles()})
        if self.feature is not None:
            self.feature.bind(models)

    def update_plan(self, step: int) -> list[str]:
        return self.ladd.update_plan(step)

    def loss(self, role: str, batch: dict, step: int) -> dict[str, Tensor]:
        if role == "student":
            scm = self.scm.consistency_loss(batch, step)
            fake = self.ladd.generate(batch)
            adv = self.ladd.generator_loss(batch, fake)
            logs = {
                "scm_loss": scm["loss"].detach(),
                "loss_no_logvar": scm["loss_no_logvar"],
                "g_norm": scm["g_norm"],
                "adv_loss": adv.detach(),
            }
            loss = self.scm_weight * scm["loss"] + self.adv_weight * adv
            if self.feature is not None:
                feature = self.feature.generator_loss(fake, batch.get("cond"))
                loss = loss + self.feature_weight * feature
                logs["feature_adv_loss"] = feature.detach()
            return {"loss": loss, **logs}
        if role == "heads" and self.feature is not None:
            with torch.no_grad():
                fake = self.ladd.generate(batch)
            ladd = self.ladd.discriminator_loss(batch, fake)
            return joint_heads_loss(ladd, self.feature.discriminator_loss(batch["x0"], fake, batch.get("cond")))
        return self.ladd.loss(role, batch, step)
