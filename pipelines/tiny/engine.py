"""TinyEngine: the Engine protocol over either tiny network (prompt and control caches, fixed noise per seed, the
teacher's refine pass)."""

from __future__ import annotations

import time

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from pipelines.engine import LRU, ControlCond, GenResult, PromptCond, image_key
from pipelines.spec import ModelError, ModelSpec
from pipelines.strokes import ink_at
from pipelines.text import PROMPT_DIM, TextEncoderMissing, encode_prompts
from pipelines.tiny.sampling import sample, to_pil
from pipelines.tiny.weights import TinyNet, load_tiny


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
        self.null_text = torch.zeros(1, PROMPT_DIM, device=device, dtype=self.dtype)

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
        self.generate(
            prompt,
            self.encode_control(blank, size),
            seed=0,
            steps=self.allowed_steps[0],
            strength=1.0,
            resolution=size,
        )

    def encode_prompt(self, text: str) -> PromptCond:
        return self._prompts.get_or_make(text, lambda: self._encode_prompt(text))

    def _encode_prompt(self, text: str) -> PromptCond:
        if not text.strip():
            return PromptCond(text, {"text": self.null_text}, n_tokens=0)
        try:
            embedding, counts = encode_prompts([text])
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

    def generate(
        self,
        prompt: PromptCond,
        control: ControlCond,
        *,
        seed: int,
        steps: int,
        strength: float,
        resolution: tuple[int, int],
    ) -> GenResult:
        return self._sample(
            self.model, prompt, control, seed=seed, steps=steps, strength=strength, resolution=resolution
        )

    def refine(
        self,
        prompt: PromptCond,
        control: ControlCond,
        *,
        seed: int,
        strength: float,
        resolution: tuple[int, int],
        steps: int | None = None,
    ) -> GenResult:
        """The refine-on-pen-up pass: the teacher's multi-step Euler sample (with CFG) from the seed's noise."""
        if self.teacher is None:
            raise ModelError(f"{self.name} has no teacher component for the refine pass")
        return self._sample(
            self.teacher,
            prompt,
            control,
            seed=seed,
            steps=steps or self.refine_steps,
            strength=strength,
            resolution=resolution,
        )

    def _sample(
        self,
        model: TinyNet,
        prompt: PromptCond,
        control: ControlCond,
        *,
        seed: int,
        steps: int,
        strength: float,
        resolution: tuple[int, int],
    ) -> GenResult:
        t0 = time.perf_counter()
        cond = {"sketch": control.tensors["sketch"] * strength, "text": prompt.tensors["text"]}
        generator = torch.Generator("cpu").manual_seed(seed + 1)
        image = sample(
            model, cond, steps=steps, noise=self._noise_for(seed), null_text=self.null_text, generator=generator
        )
        t1 = time.perf_counter()
        picture = to_pil(image[0])
        if picture.size != (resolution[1], resolution[0]):
            picture = picture.resize((resolution[1], resolution[0]), Image.Resampling.BICUBIC)
        t2 = time.perf_counter()
        timings = {"denoise": (t1 - t0) * 1e3, "decode": (t2 - t1) * 1e3, "total": (t2 - t0) * 1e3}
        return GenResult(picture, timings)
