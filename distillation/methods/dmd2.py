"""DMD2: distribution matching distillation with a two-time-scale fake score (Yin et al. 2024; tianweiy/DMD2)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as nnf
from torch import Tensor

from distillation.heads import DiscHeads, hooked_features
from distillation.methods.base import (
    Method,
    RoleSpec,
    mean_flat,
    student_cond,
    teacher_F,
    trigflow_noising,
    uniform_flow_timesteps,
)
from pipelines.parameterization import SIGMA_D, append_dims, trigflow_denoise, trigflow_target
from pipelines.schedules import get_trigflow_timesteps


class DMD2(Method):
    """Roles: student (trainable, from the teacher), teacher (frozen real score, with CFG), fake (trainable fake
    score, from the teacher). The student is a `num_student_steps`-step TrigFlow consistency sampler trained by
    backward simulation; the fake score trains `fake_updates` times per student update (TTUR).

    GAN term (optional, on when `gan_feature_layers` names fake-score layers): a classifier "cls" (DiscHeads on the
    fake score's hooked features of noised samples) trains with the fake score (`steps_with="fake"`) on
    softplus(D_fake) + softplus(-D_real) (weight `guidance_cls_weight`, DMD2: 1e-2); the student adds
    `gen_cls_weight` softplus(-D_fake) (DMD2: 5e-3). Real = batch["x0"]. The classifier's noise level is flow time
    s ~ U[cls_s_min, cls_s_max] (defaults: the DM range).
    """

    def __init__(
        self,
        *,
        sigma_d: float = SIGMA_D,
        fake_updates: int = 5,
        num_student_steps: int = 1,
        s_min: float = 0.02,
        s_max: float = 0.98,
        gan_feature_layers: Sequence[str] = (),
        gan_feature_channels: Sequence[int] = (),
        gen_cls_weight: float = 5e-3,
        guidance_cls_weight: float = 1e-2,
        cls_s_min: float | None = None,
        cls_s_max: float | None = None,
        head_hidden: int = 64,
        head_kernel_size: int = 1,
    ):
        self.sigma_d = sigma_d
        self.fake_updates = fake_updates  # TTUR: fake-score updates per generator update (DMD2: 5, SD1.5: 10)
        self.student_times = get_trigflow_timesteps(num_student_steps)
        self.s_min, self.s_max = s_min, s_max  # DM times t ~ U[0.02 T, 0.98 T], here in flow time s
        # fake-score layers the classifier reads (DMD2: the bottleneck)
        self.gan_feature_layers = tuple(gan_feature_layers)
        self.cls_build = partial(DiscHeads, tuple(gan_feature_channels), head_hidden, head_kernel_size)
        self.gen_cls_weight, self.guidance_cls_weight = gen_cls_weight, guidance_cls_weight
        self.cls_s_min = s_min if cls_s_min is None else cls_s_min
        self.cls_s_max = s_max if cls_s_max is None else cls_s_max

    @property
    def gan(self) -> bool:
        return bool(self.gan_feature_layers)

    def roles(self) -> dict[str, RoleSpec]:
        roles = {
            "student": RoleSpec(trainable=True),
            "teacher": RoleSpec(trainable=False),
            "fake": RoleSpec(trainable=True),
        }
        if self.gan:
            roles["cls"] = RoleSpec(trainable=True, init="new", build=self.cls_build, steps_with="fake")
        return roles

    def update_plan(self, step: int) -> list[str]:
        return ["student", "fake"] if step % self.fake_updates == 0 else ["fake"]

    def loss(self, role: str, batch: dict, step: int) -> dict[str, Tensor]:
        if role == "student":
            return self.distribution_matching_loss(batch)
        if role == "fake":
            with torch.no_grad():
                x = self.generate(batch)
            denoise = self.fake_score_loss(x, batch)
            if not self.gan:
                return {"loss": denoise}
            cond = batch.get("cond")
            d_fake, d_real = self.classify(x, cond), self.classify(batch["x0"], cond)
            cls = (nnf.softplus(d_fake) + nnf.softplus(-d_real)).mean()
            loss = denoise + self.guidance_cls_weight * cls
            return {"loss": loss, "denoise_loss": denoise.detach(), "cls_loss": cls}
        raise ValueError(f"DMD2 has no role {role!r} to update")

    def generate(self, batch: dict) -> Tensor:
        """Backward simulation: roll the student k steps from noise without grad (k shared by the batch), then
        denoise once with grad. Needs only batch["x0"]'s shape, never its values."""
        student, cond, sigma_d = self.models["student"], student_cond(batch), self.sigma_d
        ref = batch["x0"]
        x_t = sigma_d * torch.randn_like(ref)
        k, grad_enabled = int(torch.randint(len(self.student_times), ())), torch.is_grad_enabled()
        for i in range(k + 1):
            t = torch.full((ref.shape[0],), self.student_times[i].item(), dtype=ref.dtype, device=ref.device)
            with torch.set_grad_enabled(grad_enabled and i == k):
                x0 = trigflow_denoise(x_t, student(x_t / sigma_d, t, cond), t, sigma_d)
            if i < k:
                x_t, _ = trigflow_noising(x0, torch.full_like(t, self.student_times[i + 1].item()), sigma_d)
        return x0

    def distribution_matching_loss(self, batch: dict) -> dict[str, Tensor]:
        """grad = (x_hat_fake - x_hat_real) / mean|x - x_hat_real|, L_DM = 0.5 ||x - sg(x - grad)||^2."""
        x = self.generate(batch)
        sigma_d = self.sigma_d
        with torch.no_grad():
            t = uniform_flow_timesteps(x, self.s_min, self.s_max)
            x_t, _ = trigflow_noising(x, t, sigma_d)
            x_real = trigflow_denoise(x_t, teacher_F(self.models["teacher"], x_t / sigma_d, t, batch), t, sigma_d)
            x_fake = trigflow_denoise(x_t, self.models["fake"](x_t / sigma_d, t, batch.get("cond")), t, sigma_d)
            normalizer = mean_flat((x - x_real).abs()).clamp_min(1e-8)
            grad = (x_fake - x_real) / append_dims(normalizer, x)
        loss = 0.5 * mean_flat((x - (x - grad).detach()) ** 2).mean()
        out = {"loss": loss, "dm_grad_norm": grad.flatten(1).norm(dim=1).mean()}
        if self.gan:
            gen_cls = nnf.softplus(-self.classify(x, batch.get("cond"))).mean()
            out.update(loss=loss + self.gen_cls_weight * gen_cls, dm_loss=loss.detach(), gen_cls_loss=gen_cls.detach())
        return out

    def classify(self, x: Tensor, cond) -> Tensor:
        """GAN logits: re-noise x at s ~ U[cls_s_min, cls_s_max], run the fake score, heads on its hooked layers."""
        t = uniform_flow_timesteps(x, self.cls_s_min, self.cls_s_max)
        x_t, _ = trigflow_noising(x, t, self.sigma_d)
        fake = self.models["fake"]
        with hooked_features(fake, self.gan_feature_layers) as features:
            fake(x_t / self.sigma_d, t, cond)
        return self.models["cls"]([features[name] for name in self.gan_feature_layers])

    def fake_score_loss(self, x: Tensor, batch: dict) -> Tensor:
        """Denoising (TrigFlow F) regression of the fake score on detached student samples."""
        t = uniform_flow_timesteps(x, self.s_min, self.s_max)
        x_t, z = trigflow_noising(x, t, self.sigma_d)
        F_fake = self.models["fake"](x_t / self.sigma_d, t, batch.get("cond"))
        return mean_flat((F_fake - trigflow_target(x, z, t, self.sigma_d)) ** 2).mean()
