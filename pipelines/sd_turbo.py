"""SD-Turbo / SDXL-Turbo / SD1.5 + LCM-LoRA with a ControlNet and optional TAESD (diffusers): loading, seeded
random-weight builders, and the Engine whose numbered stages match diffusers' ControlNet pipelines."""

# b batch, c channels, h w pixel height width, hl wl latent height width (h // vae_scale_factor), n tokens

from __future__ import annotations

import copy
import inspect
import time
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderTiny,
    ControlNetModel,
    LCMScheduler,
    SchedulerMixin,
    StableDiffusionControlNetPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLControlNetPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from pipelines import accelerate
from pipelines.engine import LRU, ControlCond, GenResult, PromptCond, image_key
from pipelines.spec import ModelError, ModelSpec, guarded, hub_offline, is_local

KINDS = ("sd", "sd15", "sdxl")  # SD 2.1 (SD-Turbo), SD 1.5 (LCM-LoRA), SDXL (SDXL-Turbo)
SIZES = ("tiny", "full")
DECODERS = ("vae", "taesd")
TOKENIZER_MAX_LENGTH = 77


# ---------------------------------------------------------------------------------------------------------------
# Loading from the hub or from folders laid out like hub repos
# ---------------------------------------------------------------------------------------------------------------


def _load_part(role: str, path: str, cls: Any, *, subfolder: str = "", dtype: torch.dtype | None = None) -> Any:
    """`cls.from_pretrained` for a hub id or a folder; in float16 the repo's fp16 variant first, then the full one."""
    where = f"{path}/{subfolder}" if subfolder else path
    if is_local(path) and not Path(where).is_dir():
        raise ModelError(f"the {role} component is missing: no folder {where}")
    kwargs: dict[str, Any] = {"local_files_only": hub_offline()}
    if subfolder:
        kwargs["subfolder"] = subfolder
    attempts: list[dict[str, Any]] = [{}]
    if dtype is not None:
        kwargs["dtype"] = dtype
        if dtype == torch.float16:
            attempts = [{"variant": "fp16"}, {}]

    def make() -> Any:
        for extra in attempts[:-1]:
            try:
                return cls.from_pretrained(path, **kwargs, **extra)
            except (OSError, ValueError):  # no fp16 variant in this repo: fall back to the full-precision files
                continue
        return cls.from_pretrained(path, **kwargs, **attempts[-1])

    return guarded(role, where, cls.__name__, make)


def _load_scheduler(path: str) -> SchedulerMixin:
    """The scheduler class and config named in `<base>/scheduler/scheduler_config.json`."""

    def make() -> SchedulerMixin:
        config = LCMScheduler.load_config(path, subfolder="scheduler", local_files_only=hub_offline())
        return getattr(diffusers, config["_class_name"]).from_config(config)

    where = f"{path}/scheduler"
    if is_local(path) and not Path(where).is_dir():
        raise ModelError(f"the base component is missing: no folder {where}")
    return guarded("base", where, "a diffusers scheduler", make)


def _loader_pipeline(components: dict[str, Any]) -> Any:
    """A diffusers pipeline over our components, used only for its LoRA loader (same key mapping as diffusers)."""
    if "text_encoder_2" in components:
        return StableDiffusionXLControlNetPipeline(
            vae=components["vae"],
            text_encoder=components["text_encoder"],
            text_encoder_2=components["text_encoder_2"],
            tokenizer=components["tokenizer"],
            tokenizer_2=components["tokenizer_2"],
            unet=components["unet"],
            controlnet=components["controlnet"],
            scheduler=components["scheduler"],
            add_watermarker=False,
        )
    return StableDiffusionControlNetPipeline(
        vae=components["vae"],
        text_encoder=components["text_encoder"],
        tokenizer=components["tokenizer"],
        unet=components["unet"],
        controlnet=components["controlnet"],
        scheduler=components["scheduler"],
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def fuse_lora(components: dict[str, Any], path: str) -> None:
    """Load a diffusers-format LoRA (e.g. LCM-LoRA) into the UNet / text encoders and fuse it into their weights."""
    if is_local(path) and not Path(path).exists():
        raise ModelError(f"the lora component is missing: nothing at {path}")

    def make() -> None:
        pipe = _loader_pipeline(components)
        pipe.load_lora_weights(path, adapter_name="fused", local_files_only=hub_offline())
        pipe.fuse_lora()
        pipe.unload_lora_weights()  # the fused weights stay; the adapter layers go

    guarded("lora", path, "a diffusers LoRA", make)


def load_components(spec: ModelSpec, dtype: torch.dtype) -> dict[str, Any]:
    """Every component a manifest names, from hub ids or local folders (roles: base, controlnet, vae, taesd, lora)."""
    for role in ("base", "controlnet"):
        if role not in spec.components:
            raise ModelError(f"{spec.name}: the manifest names no {role!r} component")
    base = spec.component_path("base")
    components: dict[str, Any] = {
        "tokenizer": _load_part("base", base, CLIPTokenizer, subfolder="tokenizer"),
        "text_encoder": _load_part("base", base, CLIPTextModel, subfolder="text_encoder", dtype=dtype),
    }
    if spec.backend == "sdxl":
        components["tokenizer_2"] = _load_part("base", base, CLIPTokenizer, subfolder="tokenizer_2")
        components["text_encoder_2"] = _load_part(
            "base", base, CLIPTextModelWithProjection, subfolder="text_encoder_2", dtype=dtype
        )
    components["unet"] = _load_part("base", base, UNet2DConditionModel, subfolder="unet", dtype=dtype)
    if "vae" in spec.components:
        components["vae"] = _load_part("vae", spec.component_path("vae"), AutoencoderKL, dtype=dtype)
    else:
        components["vae"] = _load_part("base", base, AutoencoderKL, subfolder="vae", dtype=dtype)
    components["scheduler"] = _load_scheduler(base)
    components["controlnet"] = _load_part(
        "controlnet", spec.component_path("controlnet"), ControlNetModel, dtype=dtype
    )
    if "taesd" in spec.components:
        components["taesd"] = _load_part("taesd", spec.component_path("taesd"), AutoencoderTiny, dtype=dtype)
    if "lora" in spec.components:
        fuse_lora(components, spec.component_path("lora"))
    return components


# ---------------------------------------------------------------------------------------------------------------
# Seeded random-weight components: the published architectures ("full") or tiny ones for tests and CPU demos
# ---------------------------------------------------------------------------------------------------------------


def _byte_unicode() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for bytes (GPT-2 / CLIP convention)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = (b for b in range(256) if b not in printable)
    return [chr(b) for b in printable] + [chr(256 + i) for i, _ in enumerate(extra)]


def make_tokenizer() -> CLIPTokenizer:
    """A CLIP tokenizer with a generated byte-level vocab (each char, each char + </w>, BOS, EOS) and no merges:
    real CLIP text handling without downloading a vocabulary; EOS has the largest id, as in CLIP."""
    vocab: dict[str, int] = {}
    for suffix in ("", "</w>"):
        for char in _byte_unicode():
            vocab[char + suffix] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=TOKENIZER_MAX_LENGTH)


def _text_configs(kind: str, size: str, vocab_size: int) -> list[tuple[type, CLIPTextConfig]]:
    tokens = {
        "vocab_size": vocab_size,
        "max_position_embeddings": TOKENIZER_MAX_LENGTH,
        "bos_token_id": vocab_size - 2,
        "eos_token_id": vocab_size - 1,
        "pad_token_id": vocab_size - 1,
    }
    if size == "tiny":
        layer = {
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "projection_dim": 32,
            "hidden_act": "quick_gelu",
        }
        encoders = [CLIPTextModel] + ([CLIPTextModelWithProjection] if kind == "sdxl" else [])
        return [(cls, CLIPTextConfig(**layer, **tokens)) for cls in encoders]
    tokens["vocab_size"] = 49408
    # published config.json values: CLIP ViT-L/14 (SD 1.5, SDXL 1st), OpenCLIP ViT-H/14 (SD 2.1), bigG/14 (SDXL 2nd)
    vit_l = {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_attention_heads": 12,
        "num_hidden_layers": 12,
        "projection_dim": 768,
        "hidden_act": "quick_gelu",
    }
    vit_h = {
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_attention_heads": 16,
        "num_hidden_layers": 23,
        "projection_dim": 512,
        "hidden_act": "gelu",
    }
    big_g = {
        "hidden_size": 1280,
        "intermediate_size": 5120,
        "num_attention_heads": 20,
        "num_hidden_layers": 32,
        "projection_dim": 1280,
        "hidden_act": "gelu",
    }
    if kind == "sd":
        return [(CLIPTextModel, CLIPTextConfig(**vit_h, **tokens))]
    if kind == "sd15":
        return [(CLIPTextModel, CLIPTextConfig(**vit_l, **tokens))]
    return [
        (CLIPTextModel, CLIPTextConfig(**vit_l, **tokens)),
        (CLIPTextModelWithProjection, CLIPTextConfig(**big_g, **tokens)),
    ]


def _unet_config(kind: str, size: str) -> dict[str, Any]:
    sd_blocks = {
        "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    }
    xl_blocks = {
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    }
    if size == "tiny":  # attention only at the 1/2-resolution level: CPU SDPA is slow on 1024 tokens
        common = {
            "sample_size": 32,
            "block_out_channels": (16, 32),
            "layers_per_block": 1,
            "norm_num_groups": 8,
            "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
            "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
            "use_linear_projection": kind != "sd15",
        }
        if kind == "sdxl":
            return {
                **common,
                "attention_head_dim": (2, 4),
                "cross_attention_dim": 64,
                "addition_embed_type": "text_time",
                "addition_time_embed_dim": 8,
                "projection_class_embeddings_input_dim": 6 * 8 + 32,
            }
        return {**common, "attention_head_dim": 8, "cross_attention_dim": 32}
    common = {"layers_per_block": 2, "norm_num_groups": 32, "sample_size": 64}
    if kind == "sd":  # stabilityai/sd-turbo unet/config.json (SD 2.1 architecture)
        return {
            **common,
            **sd_blocks,
            "block_out_channels": (320, 640, 1280, 1280),
            "attention_head_dim": (5, 10, 20, 20),
            "cross_attention_dim": 1024,
            "use_linear_projection": True,
        }
    if kind == "sd15":  # stable-diffusion-v1-5 unet/config.json
        return {
            **common,
            **sd_blocks,
            "block_out_channels": (320, 640, 1280, 1280),
            "attention_head_dim": 8,
            "cross_attention_dim": 768,
        }
    # stabilityai/sdxl-turbo unet/config.json (SDXL architecture)
    return {
        **common,
        **xl_blocks,
        "block_out_channels": (320, 640, 1280),
        "attention_head_dim": (5, 10, 20),
        "transformer_layers_per_block": (1, 2, 10),
        "cross_attention_dim": 2048,
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 256,
        "projection_class_embeddings_input_dim": 2816,
    }


def _vae_config(kind: str, size: str) -> dict[str, Any]:
    scaling = {"scaling_factor": 0.13025 if kind == "sdxl" else 0.18215, "force_upcast": kind == "sdxl"}
    blocks = {
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "latent_channels": 4,
    }
    if size == "tiny":  # four blocks keep the scale factor at 8
        return {
            **scaling,
            **blocks,
            "block_out_channels": (4, 4, 8, 8),
            "layers_per_block": 1,
            "norm_num_groups": 4,
            "mid_block_add_attention": False,  # CPU SDPA on 1024 one-head tokens costs more than the rest
            "sample_size": 256,
        }
    return {
        **scaling,
        **blocks,
        "block_out_channels": (128, 256, 512, 512),
        "layers_per_block": 2,
        "norm_num_groups": 32,
        "sample_size": 1024 if kind == "sdxl" else 512,
    }


def _taesd_config(size: str) -> dict[str, Any]:
    if size == "tiny":
        return {
            "encoder_block_out_channels": (4, 4, 4, 4),
            "decoder_block_out_channels": (4, 4, 4, 4),
            "num_encoder_blocks": (1, 1, 1, 1),
            "num_decoder_blocks": (1, 1, 1, 1),
        }
    return {}  # AutoencoderTiny's defaults are madebyollin/taesd's (and taesdxl's) config


def _scheduler(kind: str) -> SchedulerMixin:
    """The base repo's scheduler: Euler trailing (SD-Turbo), Euler ancestral trailing (SDXL-Turbo), PNDM (SD 1.5)."""
    betas = {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "prediction_type": "epsilon",
        "steps_offset": 1,
    }
    if kind == "sd":
        return diffusers.EulerDiscreteScheduler(**betas, timestep_spacing="trailing")
    if kind == "sdxl":
        return diffusers.EulerAncestralDiscreteScheduler(**betas, timestep_spacing="trailing")
    return diffusers.PNDMScheduler(**betas, skip_prk_steps=True, set_alpha_to_one=False)


def build_random_components(kind: str, size: str, seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Seeded random diffusers components (unet, controlnet, vae, taesd, text encoder(s), tokenizer(s), scheduler).
    `full` uses the published architectures, so timings are real-size; `tiny` runs a 256 px frame in milliseconds."""
    if kind not in KINDS or size not in SIZES:
        raise ValueError(f"kind must be one of {KINDS} and size one of {SIZES}, got {kind!r}, {size!r}")
    torch.manual_seed(seed)
    tokenizer = make_tokenizer()
    components: dict[str, Any] = {}
    with torch.device(device):
        for i, (cls, config) in enumerate(_text_configs(kind, size, len(tokenizer))):
            suffix = f"_{i + 1}" if i else ""
            components[f"text_encoder{suffix}"] = cls(config).eval()
            components[f"tokenizer{suffix}"] = tokenizer
        components["unet"] = UNet2DConditionModel(**_unet_config(kind, size))
        embedding = (4, 4, 8, 8) if size == "tiny" else (16, 32, 96, 256)  # three stride-2 convs: 8x, as the VAE
        controlnet = ControlNetModel.from_unet(
            components["unet"], conditioning_embedding_out_channels=embedding, load_weights_from_unet=False
        )
        # ControlNet's zero convolutions would make random residuals vanish, and PyTorch's default init fades the
        # sketch out over the conditioning embedding's eight convolutions: He init keeps the sketch's effect visible
        for conv in (*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block):
            conv.reset_parameters()
        for module in controlnet.controlnet_cond_embedding.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight)
                torch.nn.init.zeros_(module.bias)
        components["controlnet"] = controlnet
        components["vae"] = AutoencoderKL(**_vae_config(kind, size))
        components["taesd"] = AutoencoderTiny(**_taesd_config(size))
    components["scheduler"] = _scheduler(kind)
    return components


def save_random_model(kind: str, size: str, folder: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write seeded random components like the hub repos: base/ (a pipeline folder with model_index.json),
    controlnet/ and taesd/. Returns each role's folder."""
    folder = Path(folder)
    c = build_random_components(kind, size, seed)
    if kind == "sdxl":
        pipe = StableDiffusionXLPipeline(
            vae=c["vae"],
            text_encoder=c["text_encoder"],
            text_encoder_2=c["text_encoder_2"],
            tokenizer=c["tokenizer"],
            tokenizer_2=c["tokenizer_2"],
            unet=c["unet"],
            scheduler=c["scheduler"],
            add_watermarker=False,
        )
    else:
        pipe = StableDiffusionPipeline(
            vae=c["vae"],
            text_encoder=c["text_encoder"],
            tokenizer=c["tokenizer"],
            unet=c["unet"],
            scheduler=c["scheduler"],
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    paths = {"base": folder / "base", "controlnet": folder / "controlnet", "taesd": folder / "taesd"}
    pipe.save_pretrained(paths["base"])
    c["controlnet"].save_pretrained(paths["controlnet"])
    c["taesd"].save_pretrained(paths["taesd"])
    return paths


# ---------------------------------------------------------------------------------------------------------------
# The Engine
# ---------------------------------------------------------------------------------------------------------------


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
            components = build_random_components(spec.backend, spec.random_init, seed=0, device=device)
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
        if value not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {value!r}")
        if value == "taesd" and self.taesd is None:
            raise ValueError(f"{self.name} has no TAESD component")
        self._decoder = value

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
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"control image must be HxWx3 uint8, got shape {image.shape} dtype {image.dtype}")
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
