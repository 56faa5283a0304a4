"""LADD: latent adversarial diffusion distillation with the frozen teacher as discriminator backbone (SD3-Turbo)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as nnf
from torch import Tensor

from distillation.heads import DiscHeads, hooked_features
from distillation.methods.base import Method, RoleSpec, student_cond, trigflow_noising
from pipelines.parameterization import HALF_PI, SIGMA_D, trigflow_denoise
from pipelines.schedules import get_lognormal_tan_timesteps


class LADD(Method):
    """Roles: student (trainable, from the teacher), backbone (the frozen teacher whose hooked layers feed the
    discriminator; a trainer may share the teacher's instance), heads (trainable DiscHeads, new).

    G step: x_hat0 from the student at t (pi/2 with probability `max_time_prob`, else the sCM proposal on real
    x0), re-noised at t_D; L_G = -mean D(fake). D step: hinge, 0.5 [relu(1 - D(real)) + relu(1 + D(fake))],
    real = batch["x0"] (teacher samples), real and fake re-noised at separate t_D (SANA-Sprint `diff_timesteps_D`).
    """

    min_batch = 2  # a batch-size-1 hinge loss collapses (notes/distillation.md sec. 2)

    def __init__(
        self,
        *,
        feature_layers: Sequence[str],
        feature_channels: Sequence[int],
        sigma_d: float = SIGMA_D,
        p_mean: float = 0.2,
        p_std: float = 1.6,
        p_mean_d: float = -0.6,
        p_std_d: float = 1.0,
        max_time_prob: float = 0.5,
        head_hidden: int = 64,
        head_kernel_size: int = 9,
    ):
        self.feature_layers = tuple(feature_layers)  # backbone submodules hooked (Sana blocks [2, 8, 14, 19])
        self.head_build = partial(DiscHeads, tuple(feature_channels), head_hidden, head_kernel_size)
        self.sigma_d = sigma_d
        self.p_mean, self.p_std = p_mean, p_std  # student input time proposal (shared with sCM)
        self.p_mean_d, self.p_std_d = p_mean_d, p_std_d  # discriminator re-noising, shifted to high noise
        self.max_time_prob = max_time_prob  # `train_largest_timestep`: the student sees pure noise at pi/2

    def roles(self) -> dict[str, RoleSpec]:
        return {
            "student": RoleSpec(trainable=True),
            "backbone": RoleSpec(trainable=False),
            "heads": RoleSpec(trainable=True, init="new", build=self.head_build),
        }

    def update_plan(self, step: int) -> list[str]:
        return ["student", "heads"]  # strict G/D alternation, one optimizer step each

    def loss(self, role: str, batch: dict, step: int) -> dict[str, Tensor]:
        if role == "student":
            loss_g = self.generator_loss(batch)
            return {"loss": loss_g, "adv_loss": loss_g.detach()}
        if role == "heads":
            return self.discriminator_loss(batch)
        raise ValueError(f"LADD has no role {role!r} to update")

    def _timesteps(self, x0: Tensor, p_mean: float, p_std: float) -> Tensor:
        return get_lognormal_tan_timesteps(
            x0.shape[0], p_mean=p_mean, p_std=p_std, sigma_d=self.sigma_d, device=x0.device, dtype=x0.dtype
        )

    def generate(self, batch: dict) -> Tensor:
        """x_hat0 = cos t x_t - sin t sigma_d F_theta at the student's training time (with grad)."""
        x0 = batch["x0"]
        t = self._timesteps(x0, self.p_mean, self.p_std)
        t = torch.where(torch.rand_like(t) < self.max_time_prob, torch.full_like(t, HALF_PI), t)
        x_t, _ = trigflow_noising(x0, t, self.sigma_d)
        return trigflow_denoise(
            x_t, self.models["student"](x_t / self.sigma_d, t, student_cond(batch)), t, self.sigma_d
        )

    def discriminate(self, x0: Tensor, cond) -> Tensor:
        """Re-noise at t_D ~ log-normal-tan(p_mean_d, p_std_d) and score with the heads on the backbone's features."""
        t_d = self._timesteps(x0, self.p_mean_d, self.p_std_d)
        x_t, _ = trigflow_noising(x0, t_d, self.sigma_d)
        backbone = self.models["backbone"]
        with hooked_features(backbone, self.feature_layers) as features:
            backbone(x_t / self.sigma_d, t_d, cond)
        return self.models["heads"]([features[name] for name in self.feature_layers])

    def generator_loss(self, batch: dict, fake: Tensor | None = None) -> Tensor:
        """L_G = -mean D(x_hat0); `fake` is an x_hat0 already generated (with grad) for this batch."""
        return -self.discriminate(self.generate(batch) if fake is None else fake, batch.get("cond")).mean()

    def discriminator_loss(self, batch: dict, fake: Tensor | None = None) -> dict[str, Tensor]:
        """Hinge: 0.5 [mean relu(1 - D(real)) + mean relu(1 + D(fake))]; fakes are detached student samples (`fake`:
        already generated for this batch)."""
        if fake is None:
            with torch.no_grad():
                fake = self.generate(batch)
        fake = fake.detach()
        cond = batch.get("cond")
        d_real, d_fake = self.discriminate(batch["x0"], cond), self.discriminate(fake, cond)
        loss = 0.5 * (nnf.relu(1 - d_real).mean() + nnf.relu(1 + d_fake).mean())
        accuracy = 0.5 * ((d_real > 0).float().mean() + (d_fake < 0).float().mean())
        return {"loss": loss, "d_real": d_real.mean().detach(), "d_fake": d_fake.mean().detach(), "d_acc": accuracy}
