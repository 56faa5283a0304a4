"""The SD family's sizes and architectures (SD 2.1 / SD 1.5 / SDXL, published or tiny): text encoders, UNet, VAE,
TAESD and the scheduler each kind ships with."""

from __future__ import annotations

from typing import Any

import diffusers
from diffusers import (
    SchedulerMixin,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

KINDS = ("sd", "sd15", "sdxl")  # SD 2.1 (SD-Turbo), SD 1.5 (LCM-LoRA), SDXL (SDXL-Turbo)
SIZES = ("tiny", "full")
DECODERS = ("vae", "taesd")
TOKENIZER_MAX_LENGTH = 77


def text_configs(kind: str, size: str, vocab_size: int) -> list[tuple[type, CLIPTextConfig]]:
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


def unet_config(kind: str, size: str) -> dict[str, Any]:
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


def vae_config(kind: str, size: str) -> dict[str, Any]:
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


def taesd_config(size: str) -> dict[str, Any]:
    if size == "tiny":
        return {
            "encoder_block_out_channels": (4, 4, 4, 4),
            "decoder_block_out_channels": (4, 4, 4, 4),
            "num_encoder_blocks": (1, 1, 1, 1),
            "num_decoder_blocks": (1, 1, 1, 1),
        }
    return {}  # AutoencoderTiny's defaults are madebyollin/taesd's (and taesdxl's) config


def scheduler_for(kind: str) -> SchedulerMixin:
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
