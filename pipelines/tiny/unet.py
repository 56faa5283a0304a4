"""SketchTinyNet, the offline models' U-Net: 128 px with 4 px patches (the first model), 256 px with 8 px patches (the
second: distillation/teachers/sketch_tiny.full_config). Configs without "arch" are U-Nets.

# b batch, c channels, h w height width, p patch size, d embedding width
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipelines.text import COLOUR_TERMS, TEXT_DIM
from pipelines.tiny.flow import timestep_embedding, velocity_from_clean
from pipelines.tiny.silhouette import silhouette


@dataclass(frozen=True)
class TinyConfig:
    """Architecture of the small network. kind: "flow" (teacher, Euler sampling) or "trigflow" (distilled student)."""

    resolution: int = 128
    patch: int = 4  # space-to-depth before the first conv: 128x128x(3+1) -> 32x32x64
    channels: tuple[int, ...] = (32, 64, 128)
    blocks: int = 2  # residual blocks per level
    attention: bool = True  # one self-attention block at the lowest resolution
    emb_dim: int = 256
    text_dim: int = TEXT_DIM  # the sentence embedding's width: the first text_dim entries of cond["text"]
    # read the prompt's colour words too (pipelines/text.py colour_words: the entries after the embedding), through
    # their own MLP into the embedding every block's FiLM sees
    colour_words: bool = False
    # a third input channel: the sketch's silhouette (pipelines/tiny/silhouette.py: inside the outlines = 1), so the
    # network need not flood-fill to tell the apple from the paper around it
    silhouette: bool = False
    guidance_embed: bool = False  # students may take the CFG scale as an input (SANA-Sprint embeds it)
    kind: str = "flow"
    default_guidance: float = 2.0  # CFG scale the teacher is sampled with (and the student learns)
    # "x": the network's output is the clean image and v = (x_s - x0_hat) / s (JiT, Li & He 2025): the 4x4 patch
    # stem squeezes 48 pixel values into 32 channels, too few to carry the noise a v-output must reproduce (v-trained
    # teachers kept visible noise at 32 steps), while clean images fit. "v": the output is the velocity itself.
    prediction: str = "x"

    @classmethod
    def from_dict(cls, data: dict) -> TinyConfig:
        data = dict(data)
        data["channels"] = tuple(data.get("channels", cls.channels))
        data.setdefault("prediction", "v")  # configs written before x-prediction existed
        return cls(**data)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the embedding as a per-channel scale and shift (FiLM)."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(8, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(F.silu(h))


class SelfAttention(nn.Module):
    """Multi-head self-attention over the h*w positions (PyTorch SDPA)."""

    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(8, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        y = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(y.transpose(-1, -2).reshape(b, c, h, w))


class SketchTinyNet(nn.Module):
    """A U-Net over space-to-depth patches; the sketch is concatenated to the input, text and time enter by FiLM."""

    arch = "unet"

    def __init__(self, config: TinyConfig):
        super().__init__()
        self.config = config
        p, chans, d = config.patch, config.channels, config.emb_dim
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.text_mlp = nn.Sequential(nn.Linear(config.text_dim, d), nn.SiLU(), nn.Linear(d, d))
        n_colours = len(COLOUR_TERMS)
        self.colour_mlp = (
            nn.Sequential(nn.Linear(n_colours, d), nn.SiLU(), nn.Linear(d, d)) if config.colour_words else None
        )
        self.guidance_mlp = (
            nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d)) if config.guidance_embed else None
        )
        self.stem = nn.Conv2d((3 + 1 + int(config.silhouette)) * p * p, chans[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips = []
        c = chans[0]
        for level, c_out in enumerate(chans):
            blocks = nn.ModuleList()
            for _ in range(config.blocks):
                blocks.append(ResBlock(c, c_out, d))
                c = c_out
                skips.append(c)
            self.down.append(blocks)
            self.downsample.append(
                nn.Conv2d(c, c, 3, stride=2, padding=1) if level + 1 < len(chans) else nn.Identity()
            )
        self.mid = nn.ModuleList([ResBlock(c, c, d), ResBlock(c, c, d)])
        self.mid_attn = SelfAttention(c) if config.attention else nn.Identity()
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level, c_out in reversed(list(enumerate(chans))):
            blocks = nn.ModuleList()
            for _ in range(config.blocks):
                blocks.append(ResBlock(c + skips.pop(), c_out, d))
                c = c_out
            self.up.append(blocks)
            self.upsample.append(nn.Conv2d(c, c, 3, padding=1) if level > 0 else nn.Identity())
        self.out_norm = nn.GroupNorm(8, c)
        self.out = nn.Conv2d(c, 3 * p * p, 3, padding=1)
        # a cheap full-resolution head: smooths patch seams and sharpens strokes against the sketch
        self.refine = nn.Sequential(nn.Conv2d(4, 16, 3, padding=1), nn.SiLU(), nn.Conv2d(16, 3, 3, padding=1))
        for layer in (self.out, self.refine[-1]):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, s: Tensor, cond: dict) -> Tensor:
        """Velocity v(x_s, s) for images x (b, 3, h, w), flow times s (b,), cond as in the module docstring."""
        p, d = self.config.patch, self.config.emb_dim
        text, n = cond["text"].to(x.dtype), self.config.text_dim
        emb = self.time_mlp(timestep_embedding(s, d)) + self.text_mlp(text[:, :n])
        if self.colour_mlp is not None:
            emb = emb + self.colour_mlp(text[:, n : n + len(COLOUR_TERMS)])
        if self.guidance_mlp is not None:
            guidance = cond.get("guidance")
            if guidance is None:
                guidance = torch.full((x.shape[0],), self.config.default_guidance, device=x.device)
            emb = emb + self.guidance_mlp(timestep_embedding(guidance, d, scale=100.0))
        emb = F.silu(emb)
        ink = cond["sketch"].to(x.dtype)
        inputs = [x, ink, silhouette(ink)] if self.config.silhouette else [x, ink]
        h = self.stem(F.pixel_unshuffle(torch.cat(inputs, dim=1), p))
        skips = []
        for blocks, down in zip(self.down, self.downsample, strict=True):
            for block in blocks:
                h = block(h, emb)
                skips.append(h)
            h = down(h)
        h = self.mid_attn(self.mid[0](h, emb))
        h = self.mid[1](h, emb)
        for blocks, up in zip(self.up, self.upsample, strict=True):
            for block in blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), emb)
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        y = F.pixel_shuffle(self.out(F.silu(self.out_norm(h))), p)
        y = y + self.refine(torch.cat([y, cond["sketch"].to(x.dtype)], dim=1))
        if self.config.prediction == "x":
            return velocity_from_clean(x, y, s)
        return y
