"""ADD's adversarial term: trainable heads on a frozen pretrained feature network judge clean pictures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

from distillation.feature_net import VARIANTS, build_feature_net
from distillation.heads import FeatureNetHeads
from distillation.methods.base import RoleSpec
from pipelines.parameterization import SIGMA_D
from pipelines.text import PROMPT_DIM

# b batch, c channels, h w height width


def caption_vector(cond: Mapping[str, Tensor] | None, text_key: str = "text") -> Tensor | None:
    """The caption embedding (b, d) a conditional head projects on: cond[text_key], mean-pooled over tokens when it
    is a token sequence (b, n, d); None without a condition."""
    if not isinstance(cond, Mapping) or text_key not in cond:
        return None
    text = cond[text_key]
    return text.mean(dim=1) if text.dim() == 3 else text


class FeatureAdversary:
    """Adversarial Diffusion Distillation's discriminator (Sauer et al. 2023, sec. 3.2) for pixel-space students.

    D(x, e) = heads(F(x), e): F a frozen pretrained EfficientNet-Lite1/2 (distillation.feature_net; ADD uses DINOv2),
    x a clean picture in [-1, 1] (no re-noising, unlike LADD), e the caption embedding (projection heads, so colour
    that contradicts the caption is fake). Hinge losses as LADD's: L_G = -mean D(x_hat0, e);
    L_D = 0.5 [mean relu(1 - D(x0, e)) + mean relu(1 + D(x_hat0, e))]. ADD adds an R1 penalty on the heads; here
    spectral norm bounds them instead (as in SanaMSCMDiscriminator), which costs no double backward on a CPU.

    Roles: "feature_net" (frozen, new) and "feature_heads" (trainable, new, stepped with `steps_with`'s optimizer, so
    a method's one discriminator update trains LADD's heads and these together, at the discriminator's own
    learning rate: TTUR, Heusel et al. 2017, is `optim.role_lr.heads`).
    """

    def __init__(
        self,
        *,
        network: str = "efficientnet_lite1",
        resolution: int = 192,
        stages: Sequence[int] = (2, 4, 6),
        hidden: int = 64,
        text_dim: int = PROMPT_DIM,
        sigma_d: float = SIGMA_D,
        steps_with: str = "heads",
    ):
        if network not in VARIANTS:
            raise ValueError(f"feature network {network!r} is not one of {', '.join(VARIANTS)}")
        self.network = network  # Lite1/Lite2; never Lite0, the FD metric's own network
        self.resolution = resolution  # pictures are resized to this side for F (its cost grows with the square)
        self.stages = tuple(stages)  # F's stages whose last maps the heads read (2, 4, 6: strides 8, 16, 32)
        self.hidden = hidden  # head width
        self.text_dim = text_dim  # caption embedding width for the projection term; 0 = unconditional heads
        self.sigma_d = sigma_d  # x0 in the batch is sigma_d * picture
        self.steps_with = steps_with

    def roles(self) -> dict[str, RoleSpec]:
        channels = [VARIANTS[self.network].stages[s][4] for s in self.stages]
        net = partial(build_feature_net, self.network, stages=self.stages, resolution=self.resolution)
        heads = partial(FeatureNetHeads, channels, self.hidden, self.text_dim)
        return {
            "feature_net": RoleSpec(trainable=False, init="new", build=net),
            "feature_heads": RoleSpec(trainable=True, init="new", build=heads, steps_with=self.steps_with),
        }

    def bind(self, models: Mapping[str, nn.Module]) -> None:
        self.models = {name: models[name] for name in ("feature_net", "feature_heads")}

    def discriminate(self, x0: Tensor, cond) -> Tensor:
        """(b, total locations) logits for TrigFlow-scale pictures x0 (b, 3, h, w)."""
        if x0.shape[1] != 3:
            channels = x0.shape[1]
            raise ValueError(f"the feature-network discriminator judges RGB pictures, not {channels}-channel latents")
        features = self.models["feature_net"]((x0 / self.sigma_d).clamp(-1, 1))
        return self.models["feature_heads"](features, caption_vector(cond) if self.text_dim else None)

    def generator_loss(self, fake: Tensor, cond) -> Tensor:
        """L_G = -mean D(x_hat0, e); gradients reach the student through F."""
        return -self.discriminate(fake, cond).mean()

    def discriminator_loss(self, real: Tensor, fake: Tensor, cond) -> dict[str, Tensor]:
        """Hinge on real x0 and detached fakes; F runs without grad (only the heads learn)."""
        with torch.no_grad():
            real_maps = self.models["feature_net"]((real / self.sigma_d).clamp(-1, 1))
            fake_maps = self.models["feature_net"]((fake.detach() / self.sigma_d).clamp(-1, 1))
        text = caption_vector(cond) if self.text_dim else None
        d_real = self.models["feature_heads"](real_maps, text)
        d_fake = self.models["feature_heads"](fake_maps, text)
        loss = 0.5 * (nnf.relu(1 - d_real).mean() + nnf.relu(1 + d_fake).mean())
        accuracy = 0.5 * ((d_real > 0).float().mean() + (d_fake < 0).float().mean())
        return {"loss": loss, "d_real": d_real.mean().detach(), "d_fake": d_fake.mean().detach(), "d_acc": accuracy}


def feature_adversary(network: str, *, resolution: int, text_dim: int, sigma_d: float) -> FeatureAdversary | None:
    """A method's optional feature discriminator: None when `network` is "" (off)."""
    if not network:
        return None
    return FeatureAdversary(network=network, resolution=resolution, text_dim=text_dim, sigma_d=sigma_d)


def joint_heads_loss(ladd: dict[str, Tensor], feature: dict[str, Tensor]) -> dict[str, Tensor]:
    """One discriminator update for LADD's heads and the feature heads: the losses summed, both sets of logs kept
    (the feature ones prefixed "feature_")."""
    return {**ladd, "loss": ladd["loss"] + feature["loss"], **{f"feature_{k}": v.detach() for k, v in feature.items()}}
