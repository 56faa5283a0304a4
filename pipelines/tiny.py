"""The bundled offline model: a small pixel-space sketch+text -> image network, and its Engine.

# b batch, c channels, h w height width, p patch size, d embedding width, n tokens
Two architectures, told apart by config.json's "arch": "jit" (SketchJiT, 256 px: a small transformer on large
overlapping patches) and "unet" (SketchTinyNet, the 128 px U-Net of the first offline model; configs written before
"arch" existed are U-Nets). Either is a flow-matching velocity model v(x_s, s, cond) on 3xHxW images in [-1, 1]
(x_s = (1 - s) x0 + s eps).
The teacher is sampled with Euler steps on that ODE; the distilled student is the same network read as a TrigFlow
consistency model through pipelines.parameterization.FlowAsTrigFlow and sampled with `sample_trigflow`.
cond = {"sketch": (b, 1, h, w) ink in [0, 1], "text": (b, 384) MiniLM embedding, optionally "guidance": (b,)}.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from pipelines.engine import LRU, ControlCond, GenResult, PromptCond, image_key
from pipelines.parameterization import SIGMA_D, FlowAsTrigFlow
from pipelines.schedules import get_flow_timesteps, get_trigflow_timesteps, sample_euler, sample_trigflow
from pipelines.spec import ModelError, ModelSpec
from pipelines.strokes import ink_at
from pipelines.text import TEXT_DIM, TextEncoderMissing, encode_texts

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass(frozen=True)
class TinyConfig:
    """Architecture of the small network. kind: "flow" (teacher, Euler sampling) or "trigflow" (distilled student)."""

    resolution: int = 128
    patch: int = 4  # space-to-depth before the first conv: 128x128x(3+1) -> 32x32x64
    channels: tuple[int, ...] = (32, 64, 128)
    blocks: int = 2  # residual blocks per level
    attention: bool = True  # one self-attention block at the lowest resolution
    emb_dim: int = 256
    text_dim: int = TEXT_DIM
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


def timestep_embedding(s: Tensor, dim: int, scale: float = 1000.0) -> Tensor:
    """Sinusoidal features of the flow time s (b,); a negative s (TwinFlow's twin branch) gives other features."""
    half = dim // 2
    dtype = torch.promote_types(s.dtype, torch.float32)  # float64 stays float64 (finite-difference checks)
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=s.device, dtype=dtype) / half)
    angles = scale * s.to(dtype)[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


X_PRED_MIN_S = 0.05  # v = (x_s - x0_hat) / max(|s|, this): bounded near the data end (JiT clips the same way)


def velocity_from_clean(x_s: Tensor, x0_hat: Tensor, s: Tensor) -> Tensor:
    """Flow velocity eps - x0 implied by a clean-image prediction: x_s = (1 - s) x0 + s eps => v = (x_s - x0) / s.
    |s| because TwinFlow's twin branch passes -s (the sign is for the time embedding only)."""
    return (x_s - x0_hat) / s.abs().clamp_min(X_PRED_MIN_S).to(x_s.dtype)[:, None, None, None]


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
        self.guidance_mlp = (
            nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d)) if config.guidance_embed else None
        )
        self.stem = nn.Conv2d((3 + 1) * p * p, chans[0], 3, padding=1)
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
        emb = self.time_mlp(timestep_embedding(s, d)) + self.text_mlp(cond["text"].to(x.dtype))
        if self.guidance_mlp is not None:
            guidance = cond.get("guidance")
            if guidance is None:
                guidance = torch.full((x.shape[0],), self.config.default_guidance, device=x.device)
            emb = emb + self.guidance_mlp(timestep_embedding(guidance, d, scale=100.0))
        emb = F.silu(emb)
        h = self.stem(F.pixel_unshuffle(torch.cat([x, cond["sketch"].to(x.dtype)], dim=1), p))
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
        text = cond["text"].to(x.dtype)
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


TinyNet = SketchTinyNet | SketchJiT
ARCHS: dict[str, tuple[type, type]] = {"unet": (TinyConfig, SketchTinyNet), "jit": (JiTConfig, SketchJiT)}


def build_tiny(config: TinyConfig | JiTConfig) -> TinyNet:
    """The network a config describes (random weights)."""
    return SketchJiT(config) if isinstance(config, JiTConfig) else SketchTinyNet(config)


def save_tiny(model: TinyNet, folder: Path | str, *, extra: dict | None = None) -> Path:
    """Weights (safetensors, fp16 to halve the repo size) + config.json (with the architecture's name)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_NAME))
    config = {"arch": model.arch, **asdict(model.config), **(extra or {})}
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2))
    return folder


def load_tiny(folder: Path | str, device: str = "cpu", dtype: torch.dtype = torch.float32) -> TinyNet:
    """Inverse of `save_tiny`; a missing or partial folder, or an unknown architecture, is a ModelError."""
    from safetensors.torch import load_file

    folder = Path(folder)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / name).is_file():
            raise ModelError(f"{folder}: {name} is missing")
    raw = json.loads((folder / CONFIG_NAME).read_text())
    arch = raw.get("arch", "unet")  # written before the 256 px model: the U-Net
    if arch not in ARCHS:
        raise ModelError(f"{folder}: unknown architecture {arch!r} in {CONFIG_NAME} (known: {', '.join(ARCHS)})")
    config_cls, net_cls = ARCHS[arch]
    model = net_cls(config_cls.from_dict({k: v for k, v in raw.items() if k in config_cls.__dataclass_fields__}))
    model.load_state_dict({k: v.float() for k, v in load_file(str(folder / WEIGHTS_NAME)).items()})
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


@torch.no_grad()
def sample(
    model: TinyNet,
    cond: dict,
    *,
    steps: int,
    noise: Tensor,
    guidance: float | None = None,
    null_text: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Images in [-1, 1] from x_1 = noise. Teachers: Euler on the flow ODE with CFG over the text (guidance > 1);
    students: TrigFlow consistency steps (x_T = sigma_d * noise, TrigFlow works on sigma_d-scaled images)."""
    if model.config.kind == "trigflow":
        trig = FlowAsTrigFlow(model)
        x0 = sample_trigflow(lambda x, t: trig(x, t, cond), SIGMA_D * noise, get_trigflow_timesteps(steps),
                             generator=generator)  # fmt: skip
        return (x0 / SIGMA_D).clamp(-1, 1)
    w = model.config.default_guidance if guidance is None else guidance
    if w == 1.0 or null_text is None:
        velocity = lambda x, s: model(x, s, cond)  # noqa: E731
    else:
        uncond = {**cond, "text": null_text.expand_as(cond["text"])}

        def velocity(x: Tensor, s: Tensor) -> Tensor:
            v = model(torch.cat([x, x]), torch.cat([s, s]), {k: torch.cat([cond[k], uncond[k]]) for k in cond})
            v_c, v_u = v.chunk(2)
            return v_u + w * (v_c - v_u)

    return sample_euler(velocity, noise, get_flow_timesteps(steps).to(noise.dtype)).clamp(-1, 1)


@torch.no_grad()
def sample_images(
    model: TinyNet,
    sketches: np.ndarray,
    text: Tensor,
    *,
    steps: int,
    seeds: Sequence[int],
    batch: int = 16,
    progress: str | None = None,
) -> np.ndarray:
    """uint8 pictures (n, h, w, 3) for black-on-white uint8 sketches (n, h, w) and text embeddings (n, d): the noise
    of item i is seeded by seeds[i] (results do not depend on `batch` for Euler teachers), CFG at the model's
    default scale against zeroed text. `progress` names a tqdm bar (None: no bar). Runs on the model's device; the
    initial noise is always drawn on the CPU, so a GPU sees the same x_1 as a CPU."""
    from tqdm import tqdm

    size = model.config.resolution
    device = next(model.parameters()).device
    null_text = torch.zeros(1, text.shape[1], device=device)
    out = np.empty((len(sketches), size, size, 3), np.uint8)
    for start in tqdm(range(0, len(sketches), batch), desc=progress, unit="batch", disable=progress is None):
        stop = min(start + batch, len(sketches))
        ink = torch.from_numpy(1.0 - sketches[start:stop].astype(np.float32) / 255.0)[:, None].to(device)
        if ink.shape[-1] != size:
            ink = F.interpolate(ink, size=(size, size), mode="area")
        noise = torch.stack([torch.randn(3, size, size, generator=torch.Generator().manual_seed(int(seed)))
                             for seed in seeds[start:stop]]).to(device)  # fmt: skip
        generator = torch.Generator(device).manual_seed(start)  # multi-step students' re-noising
        images = sample(model, {"sketch": ink, "text": text[start:stop].to(device)}, steps=steps, noise=noise,
                        null_text=null_text, generator=generator)  # fmt: skip
        pixels = ((images.permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        out[start:stop] = pixels.cpu().numpy()
    return out


def to_pil(image: Tensor) -> Image.Image:
    """(3, h, w) in [-1, 1] -> PIL RGB."""
    array = ((image.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)


class TinyEngine:
    """Engine protocol over either network: MiniLM prompt cache, control cache, fixed noise per seed."""

    refine_steps = 32  # Euler steps of the teacher's refine-on-pen-up pass
    decoder = "none"  # pixel space: no VAE
    attention = "sdpa"

    def __init__(
        self,
        model: TinyNet,
        *,
        name: str,
        allowed_steps: tuple[int, ...],
        device: str,
        teacher: TinyNet | None = None,
    ):
        self.model = model
        self.default_steps = allowed_steps[0] if allowed_steps else 1
        self.teacher = teacher  # the multi-step flow model the student was distilled from (refine pass), if shipped
        self.name = name
        self.native_resolution = model.config.resolution
        self.resolution_multiple, self.resolution_bins = 64, {}  # any size: the sketch is resized
        self.allowed_steps = allowed_steps
        self.device = device
        self._prompts = LRU(64)
        self._controls = LRU(4)
        self._noise = LRU(8)
        self.dtype = next(model.parameters()).dtype  # compute dtype: inputs are cast to it
        self.null_text = torch.zeros(1, model.config.text_dim, device=device, dtype=self.dtype)

    @classmethod
    def load(cls, spec: ModelSpec, device: str, dtype: str = "float32") -> TinyEngine:
        if "weights" not in spec.components:
            raise ModelError(f"{spec.name}: the manifest names no 'weights' component")
        torch_dtype = getattr(torch, dtype or "float32")
        if torch.device(device).type == "cpu" and torch_dtype == torch.float16:
            torch_dtype = torch.float32  # fp16 is the weights' storage; CPUs compute in float32
        model = load_tiny(spec.component_path("weights"), device, torch_dtype)
        teacher = None
        if "teacher" in spec.components and model.config.kind == "trigflow":
            teacher = load_tiny(spec.component_path("teacher"), device, torch_dtype)
        engine = cls(model, name=spec.name, allowed_steps=spec.allowed_steps, device=device, teacher=teacher)
        engine.default_steps = spec.steps
        return engine

    def optimize(self) -> None:
        """channels_last for the convolutions (the CPU path's only cheap win; torch.compile is not worth its start)."""
        for model in (self.model, self.teacher):
            if model is not None:
                model.to(memory_format=torch.channels_last)

    @property
    def can_refine(self) -> bool:
        """The flow teacher shipped beside the student is loaded: `refine` draws the multi-step pen-up pass."""
        return self.teacher is not None

    def warmup(self, resolution: int) -> None:
        size = (self.native_resolution, self.native_resolution)
        blank = np.zeros((*size, 3), np.uint8)
        prompt = PromptCond("", {"text": self.null_text}, n_tokens=0)
        self.generate(prompt, self.encode_control(blank, size), seed=0, steps=self.allowed_steps[0], strength=1.0,
                      resolution=size)  # fmt: skip

    def encode_prompt(self, text: str) -> PromptCond:
        return self._prompts.get_or_make(text, lambda: self._encode_prompt(text))

    def _encode_prompt(self, text: str) -> PromptCond:
        if not text.strip():
            return PromptCond(text, {"text": self.null_text}, n_tokens=0)
        try:
            embedding, counts = encode_texts([text])
        except TextEncoderMissing as error:
            raise ModelError(str(error)) from error
        tensor = torch.from_numpy(embedding).to(self.device, self.dtype)
        return PromptCond(text, {"text": tensor}, truncated=counts[0] > 256, n_tokens=min(counts[0], 256))

    def encode_control(self, image: np.ndarray, resolution: tuple[int, int]) -> ControlCond:
        """White-on-black scribble (uint8 HxWx3) -> ink (1, 1, h, w) at the native size (the model's only size)."""
        key = image_key(image)
        return self._controls.get_or_make(key, lambda: self._encode_control(image, key))

    def _encode_control(self, image: np.ndarray, key: str) -> ControlCond:
        size = self.native_resolution
        # the training sketches' rasteriser: area average, then threshold (a canvas stroke stays a full-strength line)
        ink = torch.from_numpy(ink_at(image[..., 0], size).astype(np.float32) / 255.0)[None, None]
        return ControlCond(key, (size, size), {"sketch": ink.to(self.device, self.dtype)})

    def _noise_for(self, seed: int) -> Tensor:
        def make() -> Tensor:
            generator = torch.Generator("cpu").manual_seed(seed)
            size = self.native_resolution
            return torch.randn(1, 3, size, size, generator=generator).to(self.device, self.dtype)

        return self._noise.get_or_make(seed, make)

    def generate(self, prompt: PromptCond, control: ControlCond, *, seed: int, steps: int, strength: float,
                 resolution: tuple[int, int]) -> GenResult:  # fmt: skip
        return self._run(self.model, prompt, control, seed=seed, steps=steps, strength=strength, resolution=resolution)

    def refine(self, prompt: PromptCond, control: ControlCond, *, seed: int, strength: float,
               resolution: tuple[int, int], steps: int | None = None) -> GenResult:  # fmt: skip
        """The refine-on-pen-up pass: the teacher's multi-step Euler sample (with CFG) from the seed's noise."""
        if self.teacher is None:
            raise ModelError(f"{self.name} has no teacher component for the refine pass")
        return self._run(self.teacher, prompt, control, seed=seed, steps=steps or self.refine_steps,
                         strength=strength, resolution=resolution)  # fmt: skip

    def _run(self, model: TinyNet, prompt: PromptCond, control: ControlCond, *, seed: int, steps: int,
             strength: float, resolution: tuple[int, int]) -> GenResult:  # fmt: skip
        t0 = time.perf_counter()
        cond = {"sketch": control.tensors["sketch"] * strength, "text": prompt.tensors["text"]}
        generator = torch.Generator("cpu").manual_seed(seed + 1)
        image = sample(model, cond, steps=steps, noise=self._noise_for(seed), null_text=self.null_text,
                       generator=generator)  # fmt: skip
        t1 = time.perf_counter()
        picture = to_pil(image[0])
        if picture.size != (resolution[1], resolution[0]):
            picture = picture.resize((resolution[1], resolution[0]), Image.Resampling.BICUBIC)
        t2 = time.perf_counter()
        timings = {"denoise": (t1 - t0) * 1e3, "decode": (t2 - t1) * 1e3, "total": (t2 - t0) * 1e3}
        return GenResult(picture, timings)
