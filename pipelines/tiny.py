"""The bundled offline model: a small pixel-space sketch+text -> image network, and its Engine.

# b batch, c channels, h w height width, p patch size, d embedding width
The network is a flow-matching velocity model v(x_s, s, cond) on 3xHxW images in [-1, 1] (x_s = (1 - s) x0 + s eps).
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
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=s.device, dtype=torch.float32) / half)
    angles = scale * s.float()[:, None] * freqs[None]
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


def save_tiny(model: SketchTinyNet, folder: Path | str, *, extra: dict | None = None) -> Path:
    """Weights (safetensors, fp16 to halve the repo size) + config.json."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_NAME))
    (folder / CONFIG_NAME).write_text(json.dumps({**asdict(model.config), **(extra or {})}, indent=2))
    return folder


def load_tiny(folder: Path | str, device: str = "cpu", dtype: torch.dtype = torch.float32) -> SketchTinyNet:
    """Inverse of `save_tiny`; a missing or partial folder is a ModelError naming what is missing."""
    from safetensors.torch import load_file

    folder = Path(folder)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / name).is_file():
            raise ModelError(f"{folder}: {name} is missing")
    raw = json.loads((folder / CONFIG_NAME).read_text())
    config = TinyConfig.from_dict({k: v for k, v in raw.items() if k in TinyConfig.__dataclass_fields__})
    model = SketchTinyNet(config)
    model.load_state_dict({k: v.float() for k, v in load_file(str(folder / WEIGHTS_NAME)).items()})
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


@torch.no_grad()
def sample(
    model: SketchTinyNet,
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
    model: SketchTinyNet,
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
    """Engine protocol over SketchTinyNet: MiniLM prompt cache, control cache, fixed noise per seed."""

    refine_steps = 32  # Euler steps of the teacher's refine-on-pen-up pass
    decoder = "none"  # pixel space: no VAE
    attention = "sdpa"

    def __init__(
        self,
        model: SketchTinyNet,
        *,
        name: str,
        allowed_steps: tuple[int, ...],
        device: str,
        teacher: SketchTinyNet | None = None,
    ):
        self.model = model
        self.default_steps = allowed_steps[0] if allowed_steps else 1
        self.teacher = teacher  # the multi-step flow model the student was distilled from (refine pass), if shipped
        self.name = name
        self.native_resolution = model.config.resolution
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

    def _run(self, model: SketchTinyNet, prompt: PromptCond, control: ControlCond, *, seed: int, steps: int,
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
