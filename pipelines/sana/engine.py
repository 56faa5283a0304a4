"""The Sana-Sprint Engine: SCM in 1-4 steps on the live path, the HED teacher on refine, CUDA graphs when optimized."""

# b batch, c latent channels (32), h w pixel height width, hl wl latent height width (h // 32), n text tokens (300),
# d transformer width, s flow time in [0, 1], t TrigFlow time in [0, pi/2], N sampling steps

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderDC, SanaTransformer2DModel
from diffusers.image_processor import PixArtImageProcessor
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image
from torch import Tensor, nn

from pipelines import accelerate
from pipelines.engine import LRU, ControlCond, GenResult, PromptCond, check_control_image, check_decoder, image_key
from pipelines.parameterization import SIGMA_D, FlowAsTrigFlow
from pipelines.resolution import notice as resolution_notice
from pipelines.resolution import snap
from pipelines.sana.config import (
    CHI,
    DECODERS,
    DEFAULT_GUIDANCE,
    T_MAX,
    TEACHER_GIB,
    TEACHER_GUIDANCE,
    TEACHER_SHIFT,
    TEACHER_STEPS,
)
from pipelines.sana.controlnet import SprintControlNet
from pipelines.sana.flow import SanaFlow
from pipelines.sana.load import load_components, place
from pipelines.sana.memory import check_gpu_memory, gpu_memory_need_gib, model_size, resolution_bins
from pipelines.sana.sampling import cfg_flow, sample_scm, sprint_timesteps
from pipelines.sana.text import encode_text, text_bias
from pipelines.schedules import get_flow_timesteps, sample_euler
from pipelines.spec import ModelError, ModelSpec, guarded, hub_offline
from pipelines.testing import build_random_sana


class SanaSprintEngine:
    """SANA-Sprint (+ control branch) sampled in 1-4 SCM steps with embedded guidance, decoded by DC-AE or
    DC-AE-Lite; with a teacher, `refine` runs the multi-step SANA 1.0 + HED flow model with CFG.

    Real-time path (`optimize`, automatic at load on CUDA): channels_last + torch.compile(dynamic=False) of the
    DC-AE, and one CUDA graph per (stage, static shape) over static buffers: control encode, denoise (per step
    count), decode (per decoder). Prompt embeddings, control latents (keyed by canvas content) and noise (keyed by
    seed) are cached, so a frame with an unchanged canvas is denoise + decode replays and one device-to-host copy."""

    attention = "sdpa"

    def __init__(
        self,
        *,
        name: str,
        transformer: SanaTransformer2DModel,
        vae: AutoencoderDC,
        text_encoder: nn.Module,
        tokenizer: Any,
        device: str,
        dtype: torch.dtype,
        controlnet: SprintControlNet | None = None,
        vae_lite: AutoencoderDC | None = None,
        teacher: SanaFlow | None = None,
        size: str = "tiny",
        native_resolution: int = 1024,
        default_steps: int = 1,
        allowed_steps: tuple[int, ...] = (1, 2, 3, 4),
        guidance: float = DEFAULT_GUIDANCE,
        offload_text_encoder: bool | None = None,
        prompt_cache: int = 64,
        control_cache: int = 8,
        noise_cache: int = 8,
    ):
        self.name, self.size = name, size
        self.native_resolution = native_resolution
        self.default_steps, self.allowed_steps = default_steps, tuple(allowed_steps)
        self.device, self.dtype = torch.device(device), dtype
        cuda = self.device.type == "cuda"
        # Gemma (2.6 B) stays in host memory between prompt changes and visits the GPU to encode one
        self.offload_text_encoder = cuda if offload_text_encoder is None else offload_text_encoder
        for module in (transformer, controlnet, vae, vae_lite):
            place(module, self.device, dtype)
        place(text_encoder, "cpu" if self.offload_text_encoder else self.device, dtype)
        self.transformer, self.controlnet, self.vae, self.vae_lite = transformer, controlnet, vae, vae_lite
        self.text_encoder, self.tokenizer = text_encoder, tokenizer
        self.teacher = teacher
        if teacher is not None:  # on the host until the first refine
            place(teacher.transformer, "cpu" if cuda else self.device, dtype)
            if teacher.controlnet is not controlnet:
                place(teacher.controlnet, "cpu" if cuda else self.device, dtype)
        self.flow = SanaFlow(transformer, controlnet, dense_time=True)
        self.F = FlowAsTrigFlow(self.flow)  # training-free flow -> TrigFlow transform (SanaMSCM)
        self.vae_scale_factor = 2 ** (len(vae.config.encoder_block_out_channels) - 1)
        self.resolution_multiple = 64
        self.resolution_bins = resolution_bins(native_resolution, self.vae_scale_factor)  # SANA's aspect bins
        self.latent_channels = transformer.config.in_channels
        self.image_processor = PixArtImageProcessor(vae_scale_factor=self.vae_scale_factor)
        self._guidance = DEFAULT_GUIDANCE
        self.guidance = guidance
        self._prompts, self._controls, self._noise = LRU(prompt_cache), LRU(control_cache), LRU(noise_cache)
        self._scalars: dict[float, Tensor] = {}
        self._schedules: dict[tuple[float, ...], Tensor] = {}
        self._decoder = "dc-ae"
        self._graphs: dict[tuple, accelerate.CudaGraph] = {}
        self._graph_pool = None
        self.cuda_graphs = False
        self._optimized = False
        self._encode_ms = {"prompt": 0.0}
        self._control_clock: accelerate.StageClock | None = None
        self._no_control = torch.zeros((), device=self.device)

    # --- construction ---------------------------------------------------------------------------------------

    @classmethod
    def from_components(cls, components: dict[str, Any], **kwargs: Any) -> SanaSprintEngine:
        """An engine over components as `load_components` / `build_random_sana` return them; a random
        teacher pair (teacher_transformer, teacher_controlnet) becomes the teacher flow."""
        teacher = components.get("teacher")
        if teacher is None and "teacher_transformer" in components:
            teacher = SanaFlow(
                components["teacher_transformer"], components.get("teacher_controlnet"), dense_time=False
            )
        parts = ("transformer", "vae", "text_encoder", "tokenizer", "controlnet", "vae_lite")
        return cls(**{k: components.get(k) for k in parts}, teacher=teacher, **kwargs)

    @classmethod
    def load(cls, spec: ModelSpec, device: str, dtype: str, *, optimize: bool | None = None) -> SanaSprintEngine:
        """Check GPU memory against the measured need, then load the manifest's components (or seeded random ones for
        `random_init`: tiny, or full = 0.6B). On CUDA the real-time path is switched on (and warmed at half the native
        resolution) unless optimize=False."""
        torch_dtype = accelerate.torch_dtype(dtype)
        if spec.random_init:
            size = "tiny" if spec.random_init == "tiny" else "0.6b"
        else:
            if "base" not in spec.components:
                raise ModelError(f"{spec.name}: the manifest names no 'base' component (text encoder, VAE)")
            # a distilled student names its own transformer folder; the base supplies the rest
            role = "transformer" if "transformer" in spec.components else "base"
            where = spec.component_path(role)
            subfolder = "" if role == "transformer" else "transformer"
            config = guarded(
                role,
                where,
                "a transformer config",
                lambda: SanaTransformer2DModel.load_config(where, subfolder=subfolder, local_files_only=hub_offline()),
            )
            size = model_size(config)
        if str(device).startswith("cuda"):
            free, _ = torch.cuda.mem_get_info(torch.device(device))
            check_gpu_memory(spec.title, gpu_memory_need_gib(size, spec.resolution), free)
        if spec.random_init:
            components = build_random_sana(size, seed=0, device=device)
        else:
            components = load_components(spec, torch_dtype)
        engine = cls.from_components(
            components,
            name=spec.name,
            device=device,
            dtype=torch_dtype,
            size=size,
            native_resolution=spec.resolution,
            default_steps=spec.steps,
            allowed_steps=spec.allowed_steps,
            guidance=spec.guidance or DEFAULT_GUIDANCE,
        )
        if optimize if optimize is not None else str(device).startswith("cuda"):
            engine.optimize()
            # the host warms the native bin; the half-scale square bin (the UI's 256-512 px) is compiled and
            # captured here, so that no resolution the UI offers compiles on a stroke
            engine.warmup(spec.resolution // 2)
        return engine

    # --- knobs ----------------------------------------------------------------------------------------------

    @property
    def decoder(self) -> str:
        """Which decoder turns latents into pixels: "dc-ae" (DC-AE 1.1) or "lite" (DC-AE-Lite, same latent space)."""
        return self._decoder

    @decoder.setter
    def decoder(self, value: str) -> None:
        self._decoder = check_decoder(
            self.name, value, DECODERS, {} if self.vae_lite is not None else {"lite": "DC-AE-Lite"}
        )

    @property
    def guidance(self) -> float:
        """The embedded guidance scale w (the model sees w x guidance_embeds_scale; trained with w in [4, 5])."""
        return self._guidance

    @guidance.setter
    def guidance(self, value: float) -> None:
        self._guidance = float(value)
        self._guidance_tensor = torch.full((1,), self._guidance, device=self.device)

    def optimize(self, *, channels_last: bool = True, compile: bool = True, cuda_graphs: bool = True) -> None:
        """The real-time path: channels_last DC-AE, torch.compile(dynamic=False) of its encode/decode (one compiled
        graph per static shape) and, on CUDA, one CUDA graph per stage and shape. Graphs are captured by `warmup`
        (or on the first frame at a resolution that was not warmed). Idempotent."""
        if self._optimized:
            return
        self._optimized = True
        autoencoders = [v for v in (self.vae, self.vae_lite) if v is not None]
        if channels_last:
            accelerate.channels_last(autoencoders)
        if compile:
            for autoencoder in autoencoders:
                accelerate.compile_method(autoencoder, "encode")
                accelerate.compile_method(autoencoder, "decode")
        if cuda_graphs and self.device.type == "cuda":
            self.cuda_graphs = True
            self._graph_pool = torch.cuda.graph_pool_handle()

    @property
    def can_refine(self) -> bool:
        """A teacher is loaded: `refine` draws the multi-step pen-up pass."""
        return self.teacher is not None

    def warmup(self, resolution: int) -> None:
        """Run (and with `optimize`, compile and capture) the control encode, every allowed step count's denoise and
        the current decoder at `resolution`'s bin, so that no stroke pays for it."""
        size = (resolution, resolution)
        control = self.encode_control(np.zeros((*size, 3), np.uint8), size)
        prompt = self.encode_prompt("")
        for steps in self.allowed_steps:
            self.generate(prompt, control, seed=0, steps=steps, strength=1.0, resolution=size)

    def snap(self, resolution: tuple[int, int]) -> tuple[tuple[int, int], str]:
        """The aspect-ratio bin a requested (h, w) runs at, and a notice when it differs."""
        h, w = int(resolution[0]), int(resolution[1])
        binned = snap(
            h, w, native=self.native_resolution, multiple=self.resolution_multiple, bins=self.resolution_bins
        )
        return binned, resolution_notice((h, w), binned)

    # --- conditioning ---------------------------------------------------------------------------------------

    def encode_prompt(self, text: str) -> PromptCond:
        """Gemma-2 embeddings with the CHI prefix (LRU-cached); truncated / n_tokens say what the model kept."""
        start = time.perf_counter()
        cond = self._prompts.get_or_make(text, lambda: self._encode_prompt(text))
        self._encode_ms["prompt"] = (time.perf_counter() - start) * 1e3
        return cond

    @torch.inference_mode()
    def _encode_prompt(self, text: str, chi: Sequence[str] = CHI) -> PromptCond:
        if self.offload_text_encoder:
            self.text_encoder.to(self.device)
        try:
            embeds, mask, n_tokens, truncated = encode_text(self.tokenizer, self.text_encoder, text, chi=chi)
        finally:
            if self.offload_text_encoder:
                self.text_encoder.to("cpu")
        bias = text_bias(mask, self.dtype).to(self.device)
        tensors = {"text": embeds.to(device=self.device, dtype=self.dtype), "text_bias": bias}
        return PromptCond(text=text, tensors=tensors, truncated=truncated, n_tokens=n_tokens)

    def negative_prompt(self) -> PromptCond:
        """The CFG branch's condition: "" without the CHI prefix (SANA's null caption at inference), cached."""
        return self._prompts.get_or_make(("", "no-chi"), lambda: self._encode_prompt("", chi=()))

    def encode_control(self, image: np.ndarray, resolution: tuple[int, int]) -> ControlCond:
        """The sketch (white strokes on black, HxWx3 uint8) resized to the resolution's bin, scaled to [-1, 1] and
        DC-AE-encoded x scaling_factor (SanaControlNetPipeline); cached by pixel content and bin, so an unchanged
        canvas is never re-encoded."""
        check_control_image(image)
        (h, w), _ = self.snap(resolution)
        key = image_key(image)
        clock = accelerate.StageClock(str(self.device))
        cond = self._controls.get_or_make((key, h, w), lambda: self._encode_control(image, key, (h, w)))
        clock.mark("control")
        self._control_clock = clock
        return cond

    @torch.inference_mode()
    def _encode_control(self, image: np.ndarray, key: str, size: tuple[int, int]) -> ControlCond:
        pixels = self.image_processor.preprocess(Image.fromarray(image), height=size[0], width=size[1])
        pixels = pixels.to(device=self.device, dtype=self.vae.dtype)  # 1 3 h w in [-1, 1]
        if self._optimized:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        latent = self._call_graphed(("encode", *size), self._encode_fn, pixels).clone()
        return ControlCond(key=key, resolution=size, tensors={"latent": latent})

    def _encode_fn(self, pixels: Tensor) -> Tensor:
        return self.vae.encode(pixels).latent * self.vae.config.scaling_factor

    # --- sampling -------------------------------------------------------------------------------------------

    def _call_graphed(self, key: tuple, fn: Callable[..., Tensor], *inputs: Tensor) -> Tensor:
        """fn(*inputs), through this shape's CUDA graph when the real-time path is on."""
        if not self.cuda_graphs:
            return fn(*inputs)
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._graphs[key] = accelerate.CudaGraph(fn, inputs, pool=self._graph_pool)
        return graph(*inputs)

    def _scalar(self, value: float) -> Tensor:
        """One cached 0-dim device tensor per value (immutable, so a CUDA graph can skip copying it)."""
        value = round(float(value), 4)
        if value not in self._scalars:
            self._scalars[value] = torch.tensor(value, device=self.device)
        return self._scalars[value]

    def _schedule(self, steps: int, timesteps: Sequence[float] | None) -> Tensor:
        key = tuple(float(t) for t in timesteps) if timesteps is not None else (float(steps),)
        if key not in self._schedules:
            ts = torch.tensor(key, dtype=torch.float32) if timesteps is not None else sprint_timesteps(steps)
            self._schedules[key] = ts.to(self.device)
        return self._schedules[key]

    def noise(self, seed: int, steps: int, latent_size: tuple[int, int]) -> Tensor:
        """(N, 1, c, hl, wl) unit normals for one seed, drawn in diffusers' order (the starting latent, then one per
        step), cached: the same seed reuses the same tensor, frame after frame."""

        def draw() -> Tensor:
            generator = torch.Generator(device=self.device).manual_seed(seed)
            shape = (1, self.latent_channels, *latent_size)
            draws = [
                randn_tensor(shape, generator=generator, device=self.device, dtype=torch.float32) for _ in range(steps)
            ]
            return torch.stack(draws)

        return self._noise.get_or_make((seed, steps, *latent_size), draw)

    def _denoise_fn(
        self, noise: Tensor, ts: Tensor, text: Tensor, bias: Tensor, guidance: Tensor, control: Tensor, scale: Tensor
    ) -> Tensor:
        cond = {"text": text, "text_bias": bias, "guidance": guidance}
        if self.controlnet is not None and control.dim() == 4:
            cond.update(control=control, scale=scale)
        return sample_scm(lambda x, t: self.F(x, t, cond), noise, ts) / SIGMA_D

    def _decode_fn(self, latents: Tensor) -> Tensor:
        """Latents (unit scale) -> h w 3 uint8 pixels on the device, rounded as diffusers' numpy_to_pil."""
        vae = self.vae_lite if self._decoder == "lite" else self.vae
        image = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample[0].float()
        return ((image / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0)

    @torch.inference_mode()
    def _sample(
        self,
        prompt: PromptCond,
        control: ControlCond | None,
        *,
        seed: int,
        steps: int,
        strength: float = 1.0,
        resolution: tuple[int, int],
        timesteps: Sequence[float] | None = None,
    ) -> Tensor:
        """x_hat0 / sigma_d (1, c, hl, wl); with CUDA graphs this is the graph's buffer, valid until the next call."""
        if timesteps is not None:
            steps = len(timesteps)
            if not all(0 < t <= T_MAX for t in timesteps) or list(timesteps) != sorted(timesteps, reverse=True):
                raise ValueError(f"custom timesteps must decrease within (0, {T_MAX}], got {list(timesteps)}")
        elif steps not in self.allowed_steps:
            raise ValueError(f"{self.name} runs {self.allowed_steps} steps, not {steps}")
        (h, w), _ = self.snap(resolution)
        if control is not None and tuple(control.resolution) != (h, w):
            raise ValueError(f"control was encoded at {control.resolution}, the frame runs at {(h, w)}")
        latent_size = (h // self.vae_scale_factor, w // self.vae_scale_factor)
        noise = self.noise(seed, steps, latent_size)
        control_latent = control.tensors["latent"] if control is not None else self._no_control
        return self._call_graphed(
            ("denoise", steps, *latent_size),
            self._denoise_fn,
            noise,
            self._schedule(steps, timesteps),
            prompt.tensors["text"],
            prompt.tensors["text_bias"],
            self._guidance_tensor,
            control_latent,
            self._scalar(strength),
        )

    @torch.inference_mode()
    def sample_latents(
        self,
        prompt: PromptCond,
        control: ControlCond | None,
        *,
        seed: int,
        steps: int,
        strength: float = 1.0,
        resolution: tuple[int, int],
        timesteps: Sequence[float] | None = None,
    ) -> Tensor:
        """x_hat0 / sigma_d (1, c, hl, wl): the latents the decoder gets. timesteps: N custom TrigFlow times in
        (0, T_MAX], decreasing, instead of the default schedule for `steps` = N."""
        kwargs = dict(seed=seed, steps=steps, strength=strength, resolution=resolution, timesteps=timesteps)
        return self._sample(prompt, control, **kwargs).clone()

    @torch.inference_mode()
    def generate(
        self,
        prompt: PromptCond,
        control: ControlCond,
        *,
        seed: int,
        steps: int,
        strength: float,
        resolution: tuple[int, int],
        timesteps: Sequence[float] | None = None,
    ) -> GenResult:
        """One frame: SCM denoise (ControlNet + transformer per step) and decode. Timings (ms): prompt and control
        are the latest encode calls (near zero on a cache hit), denoise and decode this frame's, total their sum."""
        (h, w), notice = self.snap(resolution)
        clock = accelerate.StageClock(str(self.device))
        # 1-2. conditioning (cached prompt, control latent, per-seed noise) and SCM denoising
        latents = self._sample(
            prompt, control, seed=seed, steps=steps, strength=strength, resolution=(h, w), timesteps=timesteps
        )
        clock.mark("denoise")
        # 3. decode: latents / scaling_factor -> DC-AE(-Lite) -> uint8 pixels, then the frame's one host copy
        pixels = self._call_graphed(("decode", self._decoder, *latents.shape[-2:]), self._decode_fn, latents)
        clock.mark("decode")
        image = Image.fromarray(pixels.cpu().numpy())
        control_ms = self._control_clock.ms()["control"] if self._control_clock is not None else 0.0
        timings = {"prompt": self._encode_ms["prompt"], "control": control_ms, **clock.ms()}
        timings["total"] = sum(timings.values())
        return GenResult(image=image, timings=timings, notice=notice)

    # --- teacher --------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def refine_latents(
        self,
        prompt: PromptCond,
        control: ControlCond | None,
        *,
        seed: int,
        steps: int = TEACHER_STEPS,
        guidance: float = TEACHER_GUIDANCE,
        strength: float = 1.0,
        resolution: tuple[int, int],
        timesteps: Sequence[float] | None = None,
    ) -> Tensor:
        """The teacher's sample (1, c, hl, wl): Euler on the flow ODE from x_1 = eps (the seed's first draw) over
        flow times 1 -> 0 shifted by the model's flow_shift (or `timesteps`, N + 1 entries), CFG against the empty
        prompt."""
        if self.teacher is None:
            raise ModelError(f"{self.name} has no teacher component for the refine pass")
        if self.device.type == "cuda" and self.teacher.transformer.device.type != "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            check_gpu_memory(f"{self.name} teacher", TEACHER_GIB.get(self.size, 0.0), free)
            self.teacher.to(self.device)
        (h, w), _ = self.snap(resolution)
        latent_size = (h // self.vae_scale_factor, w // self.vae_scale_factor)
        if timesteps is None:
            ts = get_flow_timesteps(steps, shift=TEACHER_SHIFT.get(self.size, 3.0))
        else:
            ts = torch.tensor([float(t) for t in timesteps], dtype=torch.float64)
        empty = self.negative_prompt()
        cond = {"text": prompt.tensors["text"], "text_bias": prompt.tensors["text_bias"]}
        if control is not None and self.teacher.controlnet is not None:
            cond.update(control=control.tensors["latent"], scale=self._scalar(strength))
        v = cfg_flow(self.teacher, cond, empty.tensors["text"], empty.tensors["text_bias"], guidance)
        return sample_euler(v, self.noise(seed, 1, latent_size)[0], ts)

    @torch.inference_mode()
    def refine(
        self,
        prompt: PromptCond,
        control: ControlCond,
        *,
        seed: int,
        steps: int = TEACHER_STEPS,
        guidance: float = TEACHER_GUIDANCE,
        strength: float = 1.0,
        resolution: tuple[int, int],
    ) -> GenResult:
        """The refine-on-pen-up pass: the teacher's multi-step sample, decoded like a live frame."""
        (h, w), notice = self.snap(resolution)
        clock = accelerate.StageClock(str(self.device))
        latents = self.refine_latents(
            prompt, control, seed=seed, steps=steps, guidance=guidance, strength=strength, resolution=(h, w)
        )
        clock.mark("denoise")
        pixels = self._decode_fn(latents)
        clock.mark("decode")
        image = Image.fromarray(pixels.cpu().numpy())
        timings = clock.ms()
        timings["total"] = sum(timings.values())
        return GenResult(image=image, timings=timings, notice=notice)
