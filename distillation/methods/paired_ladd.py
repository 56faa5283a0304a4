"""Paired LADD: adversarial fine-tuning of a student against a folder's pictures (LADD with the folder as "real")
plus pix2pix's paired reconstruction term, for fine-tuning on your own pictures.

Each folder picture x0 comes with its own sketch and caption (the condition), so the student's picture for that
condition has a target: L_G = -mean D(x_hat0) + recon_weight * mean |x_hat0 - x0| / sigma_d (Isola et al. 2017,
pix2pix, eq. 4: a GAN loss plus L1 to the paired target, weight 100 there for a conditional PatchGAN; here the
teacher-feature heads of LADD (SD3-Turbo, Sauer et al. 2024) are the discriminator). The L1 term pulls colours and
paper towards the folder's at once; the adversarial term keeps the pictures sharp where L1 alone blurs. L1 averages
texture away (paper grain, brush marks: noise no sketch predicts), so an optional texture term matches the spread of
each band of a Laplacian pyramid, per colour channel, between the student's picture and its pair (a first-order,
outline-robust version of Portilla & Simoncelli's texture statistics): the amount of grain at each scale, not where
it falls. LADD's discriminator reads re-noised pictures, which hides that grain too; the optional feature term is
ADD's discriminator (methods/feature_adv.py: heads on a frozen EfficientNet-Lite1 reading clean pictures), with the
folder's pictures as "real".
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

from distillation.methods.base import RoleSpec, mean_flat
from distillation.methods.feature_adv import feature_adversary, joint_heads_loss
from distillation.methods.ladd import LADD
from pipelines.parameterization import SIGMA_D
from pipelines.text import PROMPT_DIM


def paired_l1(x_hat0: Tensor, x0: Tensor, *, pool: int = 1) -> Tensor:
    """Mean |x_hat0 - x0| over the batch, on images (b, c, h, w) average-pooled by `pool` first when pool > 1 (a
    difference that averages out within pool x pool pixels, like texture, costs nothing)."""
    diff = x_hat0 - x0
    if pool > 1:
        diff = nnf.avg_pool2d(diff, pool)
    return mean_flat(diff.abs()).mean()


def band_spreads(x: Tensor, levels: int, *, cap: float = 0.9) -> Tensor:
    """(b, levels, c): how much each Laplacian-pyramid band of images x (b, c, h, w) varies, finest first (band =
    picture - its 2x average-pooled copy upsampled; the pooled copy is the next level). The spread is the mean |band|
    with values above its `cap` quantile clipped there, so that outlines (a few large values) do not hide the grain of
    the paper (many small ones); every pixel under the cap gets a gradient, unlike a median."""
    spreads = []
    for _ in range(levels):
        low = nnf.avg_pool2d(x, 2)
        band = (x - nnf.interpolate(low, size=x.shape[-2:], mode="bilinear", align_corners=False)).abs().flatten(2)
        top = torch.quantile(band.detach().float(), cap, dim=-1, keepdim=True).to(band.dtype)
        spreads.append(torch.minimum(band, top).mean(-1))
        x = low
    return torch.stack(spreads, 1)


def texture_l1(x_hat0: Tensor, x0: Tensor, *, levels: int = 3) -> Tensor:
    """Mean |band_spreads(x_hat0) - band_spreads(x0)|: how far the grain at each scale is from the pair's."""
    return (band_spreads(x_hat0, levels) - band_spreads(x0, levels)).abs().mean()


class PairedLADD(LADD):
    """Roles as LADD: student (trainable; start it from a distilled student with `student.init`), backbone (the
    frozen teacher feeding the discriminator), heads (new). batch["x0"] must be the real pictures of the batch's
    conditions (data.kind = "image_folder" or "sketch_pairs"), not teacher samples."""

    needs_pairs = True

    def __init__(
        self,
        *,
        feature_layers: Sequence[str],
        feature_channels: Sequence[int],
        sigma_d: float = SIGMA_D,
        recon_weight: float = 10.0,
        adv_weight: float = 1.0,
        p_mean: float = 0.2,
        p_std: float = 1.6,
        p_mean_d: float = -2.0,
        p_std_d: float = 1.0,
        max_time_prob: float = 0.75,
        recon_pool: int = 1,
        texture_weight: float = 0.0,
        texture_levels: int = 3,
        head_hidden: int = 64,
        head_kernel_size: int = 9,
        feature_net: str = "",
        feature_weight: float = 1.0,
        feature_resolution: int = 128,
        feature_text_dim: int = PROMPT_DIM,
    ):
        super().__init__(
            feature_layers=feature_layers,
            feature_channels=feature_channels,
            sigma_d=sigma_d,
            p_mean=p_mean,
            p_std=p_std,
            p_mean_d=p_mean_d,
            p_std_d=p_std_d,
            max_time_prob=max_time_prob,
            head_hidden=head_hidden,
            head_kernel_size=head_kernel_size,
        )
        self.recon_weight = recon_weight  # L1 to the paired picture (pix2pix's lambda, per pixel in unit scale)
        self.adv_weight = adv_weight  # the adversarial term's weight
        # L1 between the pictures average-pooled by this factor: colours and layout from the pair, the texture below
        # that scale (paper grain, brush marks) left to the adversarial term; 1 = per pixel (pix2pix)
        self.recon_pool = recon_pool
        self.texture_weight, self.texture_levels = texture_weight, texture_levels  # band-spread matching (0 = off)
        # max_time_prob: share of student passes from pure noise (t = pi/2), the 1-step sampling the app uses
        # "" = off; "efficientnet_lite1" | "efficientnet_lite2": ADD's discriminator on clean pictures, folder = real
        self.feature = feature_adversary(
            feature_net, resolution=feature_resolution, text_dim=feature_text_dim, sigma_d=sigma_d
        )
        self.feature_weight = feature_weight

    def roles(self) -> dict[str, RoleSpec]:
        roles = super().roles()
        return roles | self.feature.roles() if self.feature is not None else roles

    def bind(self, models: dict[str, nn.Module]) -> None:
        super().bind(models)
        if self.feature is not None:
            self.feature.bind(models)

    def loss(self, role: str, batch: dict, step: int) -> dict[str, Tensor]:
        if role == "heads" and self.feature is not None:
            with torch.no_grad():
                fake = self.generate(batch)
            ladd = self.discriminator_loss(batch, fake)
            return joint_heads_loss(ladd, self.feature.discriminator_loss(batch["x0"], fake, batch.get("cond")))
        if role != "student":
            return super().loss(role, batch, step)
        x_hat0 = self.generate(batch)
        adv = -self.discriminate(x_hat0, batch.get("cond")).mean()
        recon = paired_l1(x_hat0, batch["x0"], pool=self.recon_pool) / self.sigma_d
        loss = self.adv_weight * adv + self.recon_weight * recon
        logs = {"adv_loss": adv.detach(), "recon_loss": recon.detach(), "x_std": x_hat0.std().detach()}
        if self.texture_weight:
            texture = texture_l1(x_hat0, batch["x0"], levels=self.texture_levels) / self.sigma_d
            loss = loss + self.texture_weight * texture
            logs["texture_loss"] = texture.detach()
        if self.feature is not None:
            feature = self.feature.generator_loss(x_hat0, batch.get("cond"))
            loss = loss + self.feature_weight * feature
            logs["feature_adv_loss"] = feature.detach()
        return {"loss": loss, **logs}
