"""Sana sizes and their configurations (transformer, control branch, DC-AE, Gemma) and the backend's constants
(sampling times, guidance, measured memory; notes/sana_sprint.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import Gemma2Config

SIZES = ("tiny", "0.6b", "1.6b")
WIRINGS = ("nvlabs", "diffusers")
DECODERS = ("dc-ae", "lite")
T_MAX = 1.57080  # diffusers SCMScheduler max_timesteps (pi/2 rounded, as the Sprint pipeline ships it)
T_INTERMEDIATE = 1.3  # SCMScheduler's second time for 2 steps
MAX_SEQUENCE_LENGTH = 300  # Gemma tokens the transformer sees (BOS + the last 299 positions)
DEFAULT_GUIDANCE = 4.5  # embedded CFG scale (Sprint trains with w in {4, 4.5, 5})
TEACHER_STEPS = 20  # the NVlabs HED demo's sampling steps
TEACHER_GUIDANCE = 4.5  # the NVlabs HED demo's CFG scale
TEACHER_SHIFT = {"tiny": 3.0, "0.6b": 4.0, "1.6b": 3.0}  # flow_shift of Sana_600M / Sana_1600M ControlNet configs
# The complex human instruction SANA prepends to every prompt (diffusers SanaSprintPipeline default, NVlabs chi_prompt)
CHI = (
    "Given a user prompt, generate an 'Enhanced prompt' that provides detailed visual descriptions suitable for image "
    "generation. Evaluate the level of detail in the user prompt:",
    "- If the prompt is simple, focus on adding specifics about colors, shapes, sizes, textures, and spatial "
    "relationships to create vivid and concrete scenes.",
    "- If the prompt is already detailed, refine and enhance the existing details slightly without overcomplicating.",
    "Here are examples of how to transform or refine prompts:",
    "- User Prompt: A cat sleeping -> Enhanced: A small, fluffy white cat curled up in a round shape, sleeping "
    "peacefully on a warm sunny windowsill, surrounded by pots of blooming red flowers.",
    "- User Prompt: A busy city street -> Enhanced: A bustling city street scene at dusk, featuring glowing street "
    "lamps, a diverse crowd of people in colorful clothing, and a double-decker bus passing by towering glass "
    "skyscrapers.",
    "Please generate only the enhanced description for the prompt below and avoid including any additional "
    "commentary or evaluations:",
    "User Prompt: ",
)

# Peak GPU memory of one 1024px-family frame (DC-AE encode + ControlNet + transformer + DC-AE decode), bf16, batch 1,
# measured on an H200 (shared/bench/baseline_arch_latency_h200.json); Gemma-2-2B's bf16 weights (2.61 G params), which
# visit the GPU while a new prompt is encoded; the teacher's SANA 1.0 base in bf16 (its HED branch is the live one).
MEASURED_FRAME_PEAK_GIB = {"0.6b": {512: 2.48, 1024: 3.80}, "1.6b": {512: 6.76, 1024: 8.07}}
GEMMA_GIB = 2.614e9 * 2 / 2**30
TEACHER_GIB = {"0.6b": 0.592e9 * 2 / 2**30, "1.6b": 1.604e9 * 2 / 2**30}


# heads of 32 channels, layers, cross-attention heads x width, caption channels (Gemma), latent channels and size
_DIMS = {
    "tiny": (2, 3, 2, 32, 32, 4, 16),
    "0.6b": (36, 28, 16, 72, 2304, 32, 32),  # SanaSprint_600M_P1_D28
    "1.6b": (70, 20, 20, 112, 2304, 32, 32),  # SanaSprint_1600M_P1_D20
}


def transformer_config(size: str, *, sprint: bool = True) -> dict[str, Any]:
    """SanaTransformer2DModel kwargs: the published 0.6B / 1.6B (notes sec. 1.1) or "tiny" (tests, CPU bench).
    sprint=False gives the SANA 1.0 base of the HED ControlNets (no QK-norm, no guidance embedding)."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    heads, layers, cross_heads, cross_dim, caption, latent, sample = _DIMS[size]
    config = dict(
        in_channels=latent,
        out_channels=latent,
        num_attention_heads=heads,
        attention_head_dim=32,
        num_layers=layers,
        num_cross_attention_heads=cross_heads,
        cross_attention_head_dim=cross_dim,
        cross_attention_dim=heads * 32,
        caption_channels=caption,
        mlp_ratio=2.5,
        attention_bias=False,
        sample_size=sample,
        patch_size=1,
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        interpolation_scale=None,
    )
    if sprint:
        config.update(qk_norm="rms_norm_across_heads", guidance_embeds=True)
    return config


def controlnet_config(size: str, *, sprint: bool = True, wiring: str = "nvlabs") -> dict[str, Any]:
    """SprintControlNet kwargs matching `transformer_config(size)`: 7 blocks (2 at "tiny"); sprint=True adds QK-norm,
    the guidance embedding and dense time (a Sprint ControlNet), sprint=False is SANA 1.0's HED branch."""
    base = transformer_config(size, sprint=False)
    drop = ("out_channels", "interpolation_scale", "num_layers")
    config = {k: v for k, v in base.items() if k not in drop}
    config.update(num_layers=2 if size == "tiny" else 7, wiring=wiring)
    if sprint:
        config.update(qk_norm="rms_norm_across_heads", guidance_embeds=True, dense_time=True)
    return config


def dc_ae_config(size: str, *, lite: bool = False) -> dict[str, Any]:
    """AutoencoderDC kwargs: dc-ae-f32c32-sana-1.1 (hub config, notes sec. 1.3) or its Lite decoder, or "tiny" (f8).
    The Lite decoder (ResBlocks only, depths 0,3,5,4,4,4, pixel-shuffle upsampling, SiLU output) is read from
    mit-han-lab/efficientvit's dc_ae_f32c32("dc-ae-lite-f32c32-sana-1.1"); its hub config.json was not checked."""
    if size == "tiny":
        channels, enc_layers, scales = (8, 8, 16, 16), (1, 1, 1, 1), ((), (), (5,), (5,))
        config = dict(latent_channels=4, attention_head_dim=8, encoder_block_out_channels=channels)
        config.update(encoder_layers_per_block=enc_layers, encoder_qkv_multiscales=scales)
        config.update(encoder_block_types=("ResBlock",) * 2 + ("EfficientViTBlock",) * 2)
        dec = dict(decoder_block_out_channels=channels, decoder_qkv_multiscales=scales)
        if lite:
            dec.update(decoder_block_types="ResBlock", decoder_layers_per_block=(0, 1, 1, 1))
        else:
            dec.update(decoder_block_types=config["encoder_block_types"], decoder_layers_per_block=enc_layers)
    else:
        channels, scales = (128, 256, 512, 512, 1024, 1024), ((), (), (), (5,), (5,), (5,))
        config = dict(latent_channels=32, attention_head_dim=32, encoder_block_out_channels=channels)
        config.update(encoder_layers_per_block=(2, 2, 2, 3, 3, 3), encoder_qkv_multiscales=scales)
        config.update(encoder_block_types=("ResBlock",) * 3 + ("EfficientViTBlock",) * 3)
        dec = dict(decoder_block_out_channels=channels, decoder_qkv_multiscales=scales)
        if lite:
            dec.update(decoder_block_types="ResBlock", decoder_layers_per_block=(0, 3, 5, 4, 4, 4))
        else:
            dec.update(decoder_block_types=config["encoder_block_types"], decoder_layers_per_block=(3,) * 6)
    config.update(dec, in_channels=3, downsample_block_type="Conv", decoder_norm_types="rms_norm")
    config.update(decoder_act_fns="silu", scaling_factor=0.41407)
    if lite:
        config.update(upsample_block_type="pixel_shuffle", decoder_conv_act_fn="silu")
    else:
        config.update(upsample_block_type="interpolate", decoder_conv_act_fn="relu")
    return config


def gemma_config(size: str, vocab_size: int) -> Gemma2Config:
    """Gemma-2-2B (hidden 2304, 26 layers, 8/4 heads of 256) or a tiny one with the same structure."""
    from transformers import Gemma2Config  # transformers takes a second to import; only the text encoder needs it

    tokens = dict(vocab_size=vocab_size, pad_token_id=0, eos_token_id=1, bos_token_id=2)
    if size == "tiny":
        return Gemma2Config(
            **tokens,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            max_position_embeddings=2048,
        )
    return Gemma2Config(
        **tokens,
        hidden_size=2304,
        intermediate_size=9216,
        num_hidden_layers=26,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=256,
        max_position_embeddings=8192,
    )
