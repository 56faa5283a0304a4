"""Small trainable heads the methods add: sCM's log-variance u_phi(t), the LADD discriminator heads and the
text-conditioned heads on a frozen feature network's maps (ADD's discriminator)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

# b batch, n tokens, c channels


class LogVarHead(nn.Module):
    """sCM's adaptive weight u_phi(t): a zero-initialised linear map of Fourier features of t (u = 0 at the start)."""

    def __init__(self, num_frequencies: int = 16, max_frequency: float = 32.0):
        super().__init__()
        self.register_buffer("frequencies", torch.logspace(0, math.log10(max_frequency), num_frequencies))
        self.linear = nn.Linear(2 * num_frequencies, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, t: Tensor) -> Tensor:
        angles = t[:, None].to(self.frequencies.dtype) * self.frequencies
        return self.linear(torch.cat([angles.cos(), angles.sin()], dim=1)).squeeze(1).to(t.dtype)


class DiscHead(nn.Module):
    """StyleGAN-T-style token head (SanaMSCMDiscriminator): SN 1x1, residual SN conv over tokens, SN 1x1 to a logit.

    Unconditional (c_dim = 0, text enters through the teacher's features). The 1x1 convolutions are Linear layers on
    (b, n, c) tokens. No local BatchNorm: it needs a virtual batch of tokens the toy's one-token features lack.
    """

    def __init__(self, channels: int, hidden: int = 64, kernel_size: int = 9):
        super().__init__()
        self.proj = spectral_norm(nn.Linear(channels, hidden))
        pad = dict(padding=kernel_size // 2, padding_mode="circular")
        self.res = spectral_norm(
            nn.Conv1d(hidden, hidden, kernel_size, **pad) if kernel_size > 1 else nn.Linear(hidden, hidden)
        )
        self.out = spectral_norm(nn.Linear(hidden, 1))
        self.act = nn.LeakyReLU(0.2)

    def forward(self, features: Tensor) -> Tensor:
        """(b, n, c) -> (b, n) logits."""
        h = self.act(self.proj(features))
        r = self.res(h.transpose(1, 2)).transpose(1, 2) if isinstance(self.res, nn.Conv1d) else self.res(h)
        h = (h + self.act(r)) / math.sqrt(2)
        return self.out(h).squeeze(-1)


class DiscHeads(nn.Module):
    """One DiscHead per hooked teacher layer; token logits concatenated across heads."""

    def __init__(self, channels: Sequence[int], hidden: int = 64, kernel_size: int = 9):
        super().__init__()
        self.heads = nn.ModuleList(DiscHead(c, hidden, kernel_size) for c in channels)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """Features (b, n, c), (b, c) or conv maps (b, c, h, w) (raster-order tokens) per layer -> (b, total
        tokens) logits."""
        tokens = [
            f[:, None] if f.dim() == 2 else f.flatten(2).transpose(1, 2) if f.dim() == 4 else f for f in features
        ]
        return torch.cat([head(f) for head, f in zip(self.heads, tokens, strict=True)], dim=1)


class ProjectedMapHead(nn.Module):
    """A discriminator head on one feature map (b, c, h, w): SN 1x1, residual SN 3x3, SN 1x1 to a logit per location,
    plus a projection term <h, W e> with the caption embedding e (projection discriminator, Miyato & Koyama 2018;
    ADD / StyleGAN-T condition their heads the same way), so a picture whose colours do not fit its caption scores
    as fake even when it looks real."""

    def __init__(self, channels: int, hidden: int, text_dim: int):
        super().__init__()
        self.proj = spectral_norm(nn.Conv2d(channels, hidden, 1))
        self.res = spectral_norm(nn.Conv2d(hidden, hidden, 3, padding=1))
        self.out = spectral_norm(nn.Conv2d(hidden, 1, 1))
        self.embed = spectral_norm(nn.Linear(text_dim, hidden)) if text_dim else None
        self.act = nn.LeakyReLU(0.2)

    def forward(self, feature: Tensor, text: Tensor | None) -> Tensor:
        """(b, c, h, w), (b, text_dim) -> (b, h * w) logits."""
        h = self.act(self.proj(feature))
        h = (h + self.act(self.res(h))) / math.sqrt(2)
        logits = self.out(h).flatten(1)
        if self.embed is not None and text is not None:
            e = self.embed(text.to(h.dtype))
            logits = logits + (h * e[:, :, None, None]).sum(dim=1).flatten(1) / math.sqrt(h.shape[1])
        return logits


class FeatureNetHeads(nn.Module):
    """One ProjectedMapHead per tapped feature map of a frozen feature network; logits concatenated."""

    def __init__(self, channels: Sequence[int], hidden: int = 64, text_dim: int = 0):
        super().__init__()
        self.heads = nn.ModuleList(ProjectedMapHead(c, hidden, text_dim) for c in channels)

    def forward(self, features: Sequence[Tensor], text: Tensor | None = None) -> Tensor:
        """Maps (b, c_i, h_i, w_i) and the caption embedding (b, text_dim) -> (b, sum of h_i w_i) logits."""
        return torch.cat([head(f, text) for head, f in zip(self.heads, features, strict=True)], dim=1)


@contextmanager
def hooked_features(module: nn.Module, layer_names: Sequence[str]) -> Iterator[dict[str, Tensor]]:
    """Collect the outputs of named submodules during the forward passes inside the block (last call wins)."""
    features: dict[str, Tensor] = {}

    def hook(name):
        def store(_module, _inputs, output):
            features[name] = output[0] if isinstance(output, tuple) else output

        return store

    handles = [module.get_submodule(name).register_forward_hook(hook(name)) for name in layer_names]
    try:
        yield features
    finally:
        for handle in handles:
            handle.remove()
