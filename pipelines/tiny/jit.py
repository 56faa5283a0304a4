"""SketchJiT, the 256 px network: a small transformer on large overlapping patches that predicts the clean image
(JiT, Li & He 2025), with text cross-attention and a full-resolution head that redraws edges against the sketch.

# b batch, c channels, h w height width, p patch size, d embedding width, n tokens
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipelines.text import TEXT_DIM
from pipelines.tiny.flow import timestep_embedding, velocity_from_clean


def sincos_positions(side: int, dim: int) -> Tensor:
    """Fixed 2-D sine-cosine position features (side * side, dim) in raster order (half the channels per axis)."""
    quarter = dim // 4
    freqs = torch.exp(-math.log(10_000) * torch.arange(quarter, dtype=torch.float32) / quarter)
    axis = torch.arange(side, dtype=torch.float32)
    rows, cols = torch.meshgrid(axis, axis, indexing="ij")
    angles = [grid.reshape(-1, 1) * freqs[None] for grid in (rows, cols)]
    return torch.cat([f(a) for a in angles for f in (torch.sin, torch.cos)], dim=1)


def blend_window(size: int, overlap: int) -> Tensor:
    """(size * size,) weights of one painted window: 1 inside, a raised-cosine ramp across the 2 * overlap pixels two
    neighbouring windows share (the two ramps sum to 1 there), so the overlap-add of the windows is smooth: no patch
    grid and no kinks along it."""
    i = torch.arange(size, dtype=torch.float32) + 0.5
    ramp = (torch.minimum(i, size - i) / max(2 * overlap, 1)).clamp(max=1.0)
    line = torch.sin(0.5 * math.pi * ramp) ** 2
    return (line[:, None] * line[None, :]).flatten()


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: x * (1 + scale) + shift, per sample (DiT)."""
    return x * (1 + scale) + shift


class Attention(nn.Module):
    """Multi-head attention of n query tokens on m key tokens (self-attention when `context` is None), SDPA."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        b, n, d = x.shape
        context = x if context is None else context
        q = self.q(x).reshape(b, n, self.heads, d // self.heads).transpose(1, 2)
        k, v = self.kv(context).reshape(b, -1, 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class JiTBlock(nn.Module):
    """DiT block with adaLN-Zero from (time + text), plus cross-attention of the tokens on the caption tokens."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.cross = Attention(dim, heads)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.ada = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.ada.weight)  # adaLN-Zero: every block starts as the identity
        nn.init.zeros_(self.ada.bias)

    def forward(self, h: Tensor, c: Tensor, text: Tensor) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c)[:, None].chunk(6, dim=-1)
        h = h + gate1 * self.attn(modulate(self.norm1(h), shift1, scale1))
        h = h + self.cross(self.norm2(h), text)
        return h + gate2 * self.mlp(modulate(self.norm3(h), shift2, scale2))


@dataclass(frozen=True)
class JiTConfig:
    """Architecture of the 256 px network: a small transformer on a grid of large overlapping patches that predicts
    the clean image (JiT, Li & He 2025). kind, guidance_embed, default_guidance and prediction as in TinyConfig."""

    resolution: int = 256
    patch: int = 16  # token stride in pixels: 256 px -> a 16x16 token grid
    overlap: int = 4  # each token reads and paints a (patch + 2 overlap)^2 window; shared borders blend (no grid)
    width: int = 256  # token width d
    depth: int = 6
    heads: int = 4
    mlp_ratio: float = 3.0
    bottleneck: int = 128  # JiT's bottleneck patch embedding: window pixels -> bottleneck -> width
    text_dim: int = TEXT_DIM
    text_tokens: int = 4  # keys of the cross-attention: the caption embedding projected to this many tokens
    refine_channels: int = 12  # the full-resolution head that redraws edges against the sketch
    guidance_embed: bool = False
    kind: str = "flow"
    default_guidance: float = 2.0
    prediction: str = "x"

    @classmethod
    def from_dict(cls, data: dict) -> JiTConfig:
        return cls(**data)


class SketchJiT(nn.Module):
    """The 256 px model: x_s and the sketch enter as overlapping full-resolution windows, one token each; time and
    text modulate every block (adaLN), the tokens cross-attend to caption tokens; the painted windows are blended
    back (overlap-add) and a small conv head at full resolution sharpens them against the sketch."""

    arch = "jit"

    def __init__(self, config: JiTConfig):
        super().__init__()
        self.config = config
        p, o, d = config.patch, config.overlap, config.width
        if config.resolution % p or config.width % 4:
            raise ValueError(f"resolution {config.resolution} must be a multiple of patch {p}, width of 4")
        self.window = p + 2 * o
        side = config.resolution // p
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.text_mlp = nn.Sequential(nn.Linear(config.text_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.guidance_mlp = (
            nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d)) if config.guidance_embed else None
        )
        self.text_tokens = nn.Linear(config.text_dim, config.text_tokens * d)
        self.text_norm = nn.LayerNorm(d, eps=1e-6)
        pixels = 4 * self.window**2  # x_s and the sketch, one window per token
        self.embed = nn.Sequential(nn.Linear(pixels, config.bottleneck, bias=False), nn.Linear(config.bottleneck, d))
        self.register_buffer("positions", sincos_positions(side, d)[None], persistent=False)
        # unfold/fold order channels-major: the window's weights once per colour channel, (1, 3 k^2, 1)
        self.register_buffer("blend", blend_window(self.window, o).repeat(3)[None, :, None], persistent=False)
        self.blocks = nn.ModuleList(JiTBlock(d, config.heads, config.mlp_ratio) for _ in range(config.depth))
        self.out_norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.out_ada = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, 3 * self.window**2)
        r = config.refine_channels
        self.refine = nn.Sequential(nn.Conv2d(4, r, 3, padding=1), nn.SiLU(), nn.Conv2d(r, 3, 3, padding=1))
        for layer in (self.out_ada, self.out, self.refine[-1]):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _fold(self, windows: Tensor) -> Tensor:
        """(b, 3 k^2, n) painted windows -> (b, 3, h, w): the blend-weighted overlap-add, normalised."""
        size, p, o = self.config.resolution, self.config.patch, self.config.overlap
        fold = dict(output_size=(size, size), kernel_size=self.window, stride=p, padding=o)
        weight = self.blend.expand(1, -1, windows.shape[-1]).to(windows.dtype)
        return F.fold(windows * weight, **fold) / F.fold(weight, **fold)

    def forward(self, x: Tensor, s: Tensor, cond: dict) -> Tensor:
        """Velocity v(x_s, s) for images x (b, 3, h, w), flow times s (b,), cond as in the module docstring."""
        cfg, d = self.config, self.config.width
        text = cond["text"].to(x.dtype)[:, : cfg.text_dim]  # the sentence embedding (colour words not read)
        c = self.time_mlp(timestep_embedding(s, d).to(x.dtype)) + self.text_mlp(text)
        if self.guidance_mlp is not None:
            guidance = cond.get("guidance")
            if guidance is None:
                guidance = torch.full((x.shape[0],), cfg.default_guidance, device=x.device)
            c = c + self.guidance_mlp(timestep_embedding(guidance, d, scale=100.0).to(x.dtype))
        c = F.silu(c)
        words = self.text_norm(self.text_tokens(text).reshape(x.shape[0], cfg.text_tokens, d))
        sketch = cond["sketch"].to(x.dtype)
        windows = F.unfold(torch.cat([x, sketch], dim=1), self.window, stride=cfg.patch, padding=cfg.overlap)
        h = self.embed(windows.transpose(1, 2)) + self.positions.to(x.dtype)
        for block in self.blocks:
            h = block(h, c, words)
        shift, scale = self.out_ada(c)[:, None].chunk(2, dim=-1)
        y = self._fold(self.out(modulate(self.out_norm(h), shift, scale)).transpose(1, 2))
        # channels_last: the CPU convolution kernels run this thin, wide map 2-3x faster in that layout
        y = y + self.refine(torch.cat([y, sketch], dim=1).contiguous(memory_format=torch.channels_last))
        if cfg.prediction == "x":
            return velocity_from_clean(x, y, s)
        return y
