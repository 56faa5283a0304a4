"""The SD-family Engine (SD-Turbo / SDXL-Turbo / SD1.5 + LCM-LoRA + ControlNet, optional TAESD): numbered stages as in
diffusers' ControlNet pipelines."""

# b batch, c channels, h w pixel height width, hl wl latent height width (h // vae_scale_factor), n tokens

from __future__ import annotations

import copy
import inspect
import time
from typing import Any

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderTiny,
    ControlNetModel,
    LCMScheduler,
    SchedulerMixin,
    UNet2DConditionModel,
)
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image
from transformers import CLIPTokenizer

from pipelines import accelerate
from pipelines.engine import LRU, ControlCond, GenResult, PromptCond, check_control_image, check_decoder, image_key
from pipelines.sd.config import DECODERS
from pipelines.sd.load import load_components
from pipelines.spec import ModelError, ModelSpec
from pipelines.testing import build_random_sd


def _place(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """Move to device, cast only when needed (diffusers warns on every dtype cast), freeze, eval mode."""
    module.to(device=device)
    if module.dtype != dtype:
        module.to(dtype=dtype)
    module.eval().requires_grad_(False)


def _rewind(scheduler: SchedulerMixin) -> None:
    """Reset a cached schedule's step counter; diffusers' set_timesteps does exactly this (and recomputes the
    timesteps and sigmas we keep)."""
    scheduler._step_index = None
    scheduler._begin_index = None


class SDControlNetEngine:
    """A distilled SD-family UNet + ControlNet sampled in 1-4 steps without CFG, decoded by the VAE or TAESD.
    Output equals StableDiffusion(XL)ControlNetPipeline's at guidance 0 (or 1) for the same weights and seed."""

    def __init__(
        self,
        *,
        name: str,
        unet: UNet2DConditionModel,
        controlnet: ControlNetModel,
        vae: AutoencoderKL,
        text_encoders: tuple[torch.nn.Module, ...],
        tokenizers: tuple[CLIPTokenizer, ...],
        scheduler: SchedulerMixin,
        taesd: AutoencoderTiny | None,
        device: str,
        dtype: torch.dtype,
        native_resolution: int = 512,
        default_steps: int = 1,
        allowed_steps: tuple[int, ...] = (1, 2, 3, 4),
        prompt_cache: int = 64,
        control_cache: int = 8,
    ):
        self.name = name
        self.native_resolution = native_resolution
        self.default_steps = default_steps
        self.allowed_steps = tuple(allowed_steps)
        self.device = torch.device(device)
        self.dtype = dtype
        self.sdxl = len(text_encoders) == 2
        for module in (unet, controlnet, *text_encoders, *([taesd] if taesd is not None else [])):
            _place(module, self.device, dtype)
        # SDXL's VAE overflows in float16; diffusers decodes it in float32 unless its config says otherwise
        _place(
            vae,
            self.device,
            torch.float32 if self.sdxl and dtype == torch.float16 and vae.config.force_upcast else dtype,
        )
        self.unet, self.controlnet, self.vae, self.taesd = unet, controlnet, vae, taesd
        self.text_encoders, self.tokenizers = tuple(text_encoders), tuple(tokenizers)
        self.scheduler = scheduler
        self.attention = accelerate.set_attention([unet, controlnet], str(self.device))
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.resolution_multiple, self.resolution_bins = 64, {}
        self.control_processor = VaeImageProcessor(
            vae_scale_factor=self.vae_scale_factor, do_convert_rgb=True, do_normalize=False
        )
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)
        self.guess_mode = bool(controlnet.config.global_pool_conditions)
        self._prompts = LRU(prompt_cache)
        self._controls = LRU(control_cache)
        self._schedules: dict[int, tuple[SchedulerMixin, dict[str, Any]]] = {}
        self._time_ids: dict[tuple[int, int], torch.Tensor] = {}
        self._encode_ms = {"prompt": 0.0, "control": 0.0}
        self._decoder = "vae"

    # --- construction ---------------------------------------------------------------------------------------

    @classmethod
    def from_components(
        cls,
        components: dict[str, Any],
        *,
        name: str,
        device: str,
        dtype: torch.dtype,
        lcm: bool = False,
        native_resolution: int = 512,
        default_steps: int = 1,
        allowed_steps: tuple[int, ...] = (1, 2, 3, 4),
    ) -> SDControlNetEngine:
        """An engine over diffusers components (as `load_components` or `build_random_components` return them);
        `lcm` swaps in LCMScheduler with the base scheduler's betas, as LCM-LoRA's model card does."""
        scheduler = components["scheduler"]
        if lcm and not isinstance(scheduler, LCMScheduler):
            scheduler = LCMScheduler.from_config(scheduler.config)
        sdxl = "text_encoder_2" in components
        return cls(
            name=name,
            unet=components["unet"],
            controlnet=components["controlnet"],
            vae=components["vae"],
            text_encoders=(components["text_encoder"], components["text_encoder_2"])
            if sdxl
            else (components["text_encoder"],),
            tokenizers=(components["tokenizer"], components["tokenizer_2"]) if sdxl else (components["tokenizer"],),
            scheduler=scheduler,
            taesd=components.get("taesd"),
            device=device,
            dtype=dtype,
            native_resolution=native_resolution,
            default_steps=default_steps,
            allowed_steps=allowed_steps,
        )

    @classmethod
    def load(cls, spec: ModelSpec, device: str, dtype: str) -> SDControlNetEngine:
        """Load a manifest's components (or build seeded random ones when `random_init` is set)."""
        torch_dtype = accelerate.torch_dtype(dtype)
        if spec.random_init:
            components = build_random_sd(spec.backend, spec.random_init, seed=0, device=device)
        else:
            components = load_components(spec, torch_dtype)
        return cls.from_components(
            components,
            name=spec.name,
            device=device,
            dtype=torch_dtype,
            lcm="lora" in spec.components,
            native_resolution=spec.resolution,
            default_steps=spec.steps,
            allowed_steps=spec.allowed_steps,
        )

    # --- knobs ----------------------------------------------------------------------------------------------

    @property
    def decoder(self) -> str:
        """Which decoder turns latents into pixels: "vae" (full quality) or "taesd" (fast preview)."""
        return self._decoder

    @decoder.setter
    def decoder(self, value: str) -> None:
        self._decoder = check_decoder(self.name, value, DECODERS, {} if self.taesd is not None else {"taesd": "TAESD"})

    def optimize(self, *, channels_last: bool = True, compile: bool = True) -> None:
        """channels_last and/or torch.compile(dynamic=False) of the UNet, ControlNet and both decoders."""
        decoders = [d for d in (self.vae, self.taesd) if d is not None]
        if channels_last:
            accelerate.channels_last([self.unet, self.controlnet, *decoders])
        if compile:
            self.unet = accelerate.compile_module(self.unet)
            self.controlnet = accelerate.compile_module(self.controlnet)
            for decoder in decoders:
                accelerate.compile_decode(decoder)

    def warmup(self, resolution: int) -> None:
        """Build every allowed step count's schedule and run one frame at `resolution` (kernels, compilation)."""
        for steps in self.allowed_steps:
            self._schedule(steps)
        size = (resolution, resolution)
        control = self.encode_control(np.zeros((*size, 3), np.uint8), size)
        self.generate(self.encode_prompt(""), control, seed=0, steps=self.default_steps, strength=1.0, resolution=size)

    # --- conditioning ---------------------------------------------------------------------------------------

    def encode_prompt(self, text: str) -> PromptCond:
        """Text embeddings as the diffusers pipeline's encode_prompt gives them (no CFG branch), LRU-cached."""
        start = time.perf_counter()
        cond = self._prompts.get_or_make(text, lambda: self._encode_prompt(text))
        self._encode_ms["prompt"] = (time.perf_counter() - start) * 1e3
        return cond

    @torch.inference_mode()
    def _encode_prompt(self, text: str) -> PromptCond:
        n_tokens = len(self.tokenizers[0](text).input_ids)
        embeds, pooled = [], None
        for tokenizer, encoder in zip(self.tokenizers, self.text_encoders, strict=True):
            ids = tokenizer(
                text, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
            ).input_ids.to(self.device)
            if not self.sdxl:
                embeds.append(encoder(ids)[0])
                continue
            out = encoder(ids, output_hidden_states=True)
            if pooled is None and out[0].ndim == 2:  # CLIPTextModelWithProjection's text_embeds
                pooled = out[0]
            embeds.append(out.hidden_states[-2])  # SDXL conditions on the penultimate layer of both encoders
        tensors = {"prompt_embeds": torch.cat(embeds, dim=-1).to(device=self.device, dtype=self.dtype)}
        if self.sdxl:
            tensors["pooled_prompt_embeds"] = pooled.to(device=self.device, dtype=self.dtype)
        max_length = self.tokenizers[0].model_max_length
        return PromptCond(
            text=text, tensors=tensors, truncated=n_tokens > max_length, n_tokens=min(n_tokens, max_length)
        )

    def encode_control(self, image: np.ndarray, resolution: tuple[int, int]) -> ControlCond:
        """The control image (white strokes on black, HxWx3 uint8) resized and scaled to [0, 1] exactly as the
        ControlNet pipelines prepare `image`; cached by pixel content and resolution."""
        check_control_image(image)
        start = time.perf_counter()
        h, w = int(resolution[0]), int(resolution[1])
        key = image_key(image)
        cond = self._controls.get_or_make((key, h, w), lambda: self._encode_control(image, key, (h, w)))
        self._encode_ms["control"] = (time.perf_counter() - start) * 1e3
        return cond

    @torch.inference_mode()
    def _encode_control(self, image: np.ndarray, key: str, resolution: tuple[int, int]) -> ControlCond:
        h, w = resolution
        pixels = self.control_processor.preprocess(Image.fromarray(image), height=h, width=w).to(dtype=torch.float32)
        pixels = pixels.to(device=self.device, dtype=self.dtype)  # b 3 h w in [0, 1]
        return ControlCond(key=key, resolution=(h, w), tensors={"image": pixels})

    # --- sampling -------------------------------------------------------------------------------------------

    def _schedule(self, steps: int) -> tuple[SchedulerMixin, dict[str, Any]]:
        """A scheduler with timesteps set for `steps`, kept per step count, and the step() kwargs it accepts."""
        if steps not in self._schedules:
            scheduler = copy.deepcopy(self.scheduler)
            scheduler.set_timesteps(steps, device=self.device)
            accepts = set(inspect.signature(scheduler.step).parameters)
            extra = {"eta": 0.0} if "eta" in accepts else {}
            self._schedules[steps] = (scheduler, {**extra, "generator": None} if "generator" in accepts else extra)
        return self._schedules[steps]

    def _size_ids(self, h: int, w: int) -> torch.Tensor:
        """SDXL's micro-conditioning: original size, crop top-left (0, 0), target size."""
        if (h, w) not in self._time_ids:
            self._time_ids[(h, w)] = torch.tensor([[h, w, 0, 0, h, w]], dtype=self.dtype, device=self.device)
        return self._time_ids[(h, w)]

    @torch.inference_mode()
    def _generate_array(
        self,
        prompt: PromptCond,
        control: ControlCond,
        *,
        seed: int,
        steps: int,
        strength: float,
        resolution: tuple[int, int],
    ) -> tuple[np.ndarray, dict[str, float]]:
        """One frame as float pixels (h w 3 in [0, 1], as diffusers' output_type="np") and stage timings in ms."""
        if steps not in self.allowed_steps:
            raise ValueError(f"{self.name} runs {self.allowed_steps} steps, not {steps}")
        if tuple(resolution) != tuple(control.resolution):
            raise ValueError(f"control was encoded at {control.resolution}, the frame asks for {tuple(resolution)}")
        device = str(self.device)
        accelerate.synchronize(device)
        start = time.perf_counter()

        # 1. conditioning: cached prompt tensors, control image and (SDXL) size ids
        image = control.tensors["image"]
        h, w = image.shape[-2:]
        embeds = prompt.tensors["prompt_embeds"]
        added = None
        if self.sdxl:
            added = {"text_embeds": prompt.tensors["pooled_prompt_embeds"], "time_ids": self._size_ids(h, w)}

        # 2. latents x_T ~ N(0, I) * init_noise_sigma, drawn like diffusers' prepare_latents
        scheduler, step_kwargs = self._schedule(steps)
        _rewind(scheduler)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        if "generator" in step_kwargs:  # ancestral / LCM steps draw their noise from the same generator
            step_kwargs = {**step_kwargs, "generator": generator}
        shape = (1, self.unet.config.in_channels, h // self.vae_scale_factor, w // self.vae_scale_factor)
        latents = randn_tensor(shape, generator=generator, device=self.device, dtype=embeds.dtype)
        latents = latents * scheduler.init_noise_sigma

        # 3. denoise: ControlNet residuals (scaled by strength) + UNet prediction + scheduler step, per timestep
        # a tensor, not a float: torch.compile would specialise on (and recompile for) every new strength value
        scale = torch.tensor(float(strength), device=self.device, dtype=self.dtype)
        for t in scheduler.timesteps:
            x_in = scheduler.scale_model_input(latents, t)
            down, mid = self.controlnet(
                x_in,
                t,
                encoder_hidden_states=embeds,
                controlnet_cond=image,
                conditioning_scale=scale,
                guess_mode=self.guess_mode,
                added_cond_kwargs=added,
                return_dict=False,
            )
            prediction = self.unet(
                x_in,
                t,
                encoder_hidden_states=embeds,
                down_block_additional_residuals=down,
                mid_block_additional_residual=mid,
                added_cond_kwargs=added,
                return_dict=False,
            )[0]
            latents = scheduler.step(prediction, t, latents, **step_kwargs, return_dict=False)[0]
        accelerate.synchronize(device)
        denoised = time.perf_counter()

        # 4. decode: latents / scaling_factor -> decoder -> [-1, 1] -> [0, 1] float pixels
        decoder = self.taesd if self._decoder == "taesd" else self.vae
        z = latents.to(decoder.dtype) / decoder.config.scaling_factor
        pixels = self.image_processor.postprocess(decoder.decode(z, return_dict=False)[0], output_type="np")[0]
        decoded = time.perf_counter()

        timings = {
            "prompt": self._encode_ms["prompt"],
            "control": self._encode_ms["control"],
            "denoise": (denoised - start) * 1e3,
            "decode": (decoded - denoised) * 1e3,
        }
        timings["total"] = sum(timings.values())
        return pixels, timings

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
        """One frame. Timings (ms): prompt and control are the latest encode calls (near zero on a cache hit),
        denoise covers latents + all steps, decode the chosen decoder, total their sum."""
        pixels, timings = self._generate_array(
            prompt, control, seed=seed, steps=steps, strength=strength, resolution=resolution
        )
        return GenResult(image=VaeImageProcessor.numpy_to_pil(pixels[None])[0], timings=timings)

    can_refine = False  # the SD family ships no multi-step teacher

    def refine(
        self, prompt: PromptCond, control: ControlCond, *, seed: int, strength: float, resolution: tuple[int, int]
    ) -> GenResult:
        raise ModelError(f"{self.name} has no refine pass: its manifest names no multi-step teacher")
