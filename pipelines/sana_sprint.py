"""SANA-Sprint + ControlNet backend: the Sprint transformer with a control branch (NVlabs or diffusers wiring),
DC-AE 1.1 / DC-AE-Lite, Gemma-2 with the CHI prefix, SCM sampling in 1-4 steps, the SANA-1.0 HED teacher for a
multi-step refine pass, loaders, seeded random builders and the Engine (notes/sana_sprint.md)."""

# b batch, c latent channels (32), h w pixel height width, hl wl latent height width (h // 32), n text tokens (300),
# d transformer width, s flow time in [0, 1], t TrigFlow time in [0, pi/2], N sampling steps

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderDC, ModelMixin, SanaControlNetModel, SanaTransformer2DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.image_processor import PixArtImageProcessor
from diffusers.models.embeddings import PatchEmbed, PixArtAlphaTextProjection
from diffusers.models.normalization import AdaLayerNormSingle, RMSNorm
from diffusers.models.transformers.sana_transformer import (
    SanaCombinedTimestepGuidanceEmbeddings,
    SanaTransformerBlock,
)
from diffusers.pipelines.pixart_alpha.pipeline_pixart_alpha import ASPECT_RATIO_512_BIN, ASPECT_RATIO_1024_BIN
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image
from torch import Tensor, nn
from transformers import AutoTokenizer, Gemma2Config, Gemma2Model, GemmaTokenizer

from pipelines import accelerate, sana_convert
from pipelines.engine import LRU, ControlCond, GenResult, PromptCond, image_key
from pipelines.parameterization import SIGMA_D, FlowAsTrigFlow, append_dims, trigflow_denoise
from pipelines.schedules import get_flow_timesteps, get_trigflow_timesteps, sample_euler
from pipelines.spec import ModelError, ModelSpec, guarded, hub_offline, is_local

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


# ---------------------------------------------------------------------------------------------------------------
# The control branch
# ---------------------------------------------------------------------------------------------------------------


class SprintControlNet(ModelMixin, ConfigMixin):
    """Sana / SANA-Sprint control branch: copies of the first transformer blocks fed with the control latent, whose
    outputs pass zero-initialised projections and are added to the base's hidden states (SanaFlow applies them).

    Parameter names are SanaControlNetModel's, so diffusers-format ControlNets load as they are. Beyond it: optional
    QK-norm and guidance embedding (Sprint blocks), the time input (dense s in [0, 1] for Sprint, 1000 s for SANA
    1.0), and the wiring: "nvlabs" starts from the base's block-0 output and adds skip k to the input of base block
    k + 1 (sana_multi_scale_controlnet.py); "diffusers" starts from its own patch embedding and adds skip k after base
    block k + 1 (SanaTransformer2DModel's controlnet_block_samples)."""

    @register_to_config
    def __init__(
        self,
        in_channels: int = 32,
        num_attention_heads: int = 36,
        attention_head_dim: int = 32,
        num_layers: int = 7,
        num_cross_attention_heads: int = 16,
        cross_attention_head_dim: int = 72,
        cross_attention_dim: int = 1152,
        caption_channels: int = 2304,
        mlp_ratio: float = 2.5,
        attention_bias: bool = False,
        sample_size: int = 32,
        patch_size: int = 1,
        norm_elementwise_affine: bool = False,
        norm_eps: float = 1e-6,
        qk_norm: str | None = None,
        guidance_embeds: bool = False,
        guidance_embeds_scale: float = 0.1,
        dense_time: bool = False,
        wiring: str = "nvlabs",
    ):
        super().__init__()
        if wiring not in WIRINGS:
            raise ValueError(f"wiring must be one of {WIRINGS}, got {wiring!r}")
        inner = num_attention_heads * attention_head_dim
        self.patch_embed = PatchEmbed(
            height=sample_size,
            width=sample_size,
            patch_size=patch_size,
            in_channels=in_channels,
            embed_dim=inner,
            interpolation_scale=None,
            pos_embed_type=None,
        )
        self.time_embed = (
            SanaCombinedTimestepGuidanceEmbeddings(inner) if guidance_embeds else AdaLayerNormSingle(inner)
        )
        self.caption_projection = PixArtAlphaTextProjection(in_features=caption_channels, hidden_size=inner)
        self.caption_norm = RMSNorm(inner, eps=1e-5, elementwise_affine=True)
        self.transformer_blocks = nn.ModuleList(
            SanaTransformerBlock(
                inner,
                num_attention_heads,
                attention_head_dim,
                num_cross_attention_heads=num_cross_attention_heads,
                cross_attention_head_dim=cross_attention_head_dim,
                cross_attention_dim=cross_attention_dim,
                attention_bias=attention_bias,
                norm_elementwise_affine=norm_elementwise_affine,
                norm_eps=norm_eps,
                mlp_ratio=mlp_ratio,
                qk_norm=qk_norm,
            )
            for _ in range(num_layers)
        )
        self.input_block = nn.Linear(inner, inner)  # NVlabs before_proj: control tokens into the branch
        self.controlnet_blocks = nn.ModuleList(nn.Linear(inner, inner) for _ in range(num_layers))  # after_proj
        for linear in (self.input_block, *self.controlnet_blocks):  # zero init: a new branch starts as a no-op
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(
        self,
        start: Tensor,
        control: Tensor,
        s: Tensor,
        text: Tensor,
        text_bias: Tensor,
        guidance: Tensor | None,
        scale: Tensor,
        size: tuple[int, int],
    ) -> list[Tensor]:
        """Skips (b, hl wl, d), one per block, times `scale`. start: the tokens the branch starts from (see the class
        docstring); control: (b, c, hl, wl) control latent; s: (b,) flow time; guidance: (b,) raw CFG scale."""
        b = start.shape[0]
        dtype = start.dtype
        timestep = s if self.config.dense_time else s * 1000.0
        if self.config.guidance_embeds:
            t_mod, _ = self.time_embed(
                timestep, guidance=(guidance * self.config.guidance_embeds_scale).to(dtype), hidden_dtype=dtype
            )
        else:
            t_mod, _ = self.time_embed(timestep, batch_size=b, hidden_dtype=dtype)
        text_h = self.caption_norm(self.caption_projection(text).view(b, -1, start.shape[-1]))
        hidden = start + self.input_block(self.patch_embed(control.to(dtype)))
        skips = []
        for block, project in zip(self.transformer_blocks, self.controlnet_blocks, strict=True):
            hidden = block(hidden, None, text_h, text_bias, t_mod, *size)
            skips.append(project(hidden) * scale.to(dtype))
        return skips


def controlnet_from_diffusers(model: SanaControlNetModel, wiring: str = "nvlabs") -> SprintControlNet:
    """A diffusers SanaControlNetModel (e.g. a community conversion of NVlabs HED weights) as a SprintControlNet
    with the same weights; SANA 1.0 branches take 1000 s and have no QK-norm or guidance embedding."""
    keep = (
        "in_channels",
        "num_attention_heads",
        "attention_head_dim",
        "num_layers",
        "num_cross_attention_heads",
        "cross_attention_head_dim",
        "cross_attention_dim",
        "caption_channels",
        "mlp_ratio",
        "attention_bias",
        "sample_size",
        "patch_size",
        "norm_elementwise_affine",
        "norm_eps",
    )
    if model.config.interpolation_scale is not None:
        raise ModelError("ControlNets with positional embeddings (2K/4K Sana) are not supported")
    branch = SprintControlNet(**{k: model.config[k] for k in keep}, wiring=wiring)
    branch.load_state_dict(model.state_dict(), strict=True)
    return branch if model.dtype == branch.dtype else branch.to(model.dtype)


# ---------------------------------------------------------------------------------------------------------------
# The flow model: transformer + control branch
# ---------------------------------------------------------------------------------------------------------------


class SanaFlow(nn.Module):
    """v(x_s, s, cond), the flow velocity of a Sana / Sprint transformer with an optional control branch.

    The transformer's forward is spelled out (same modules and order as SanaTransformer2DModel.forward) so that
    either wiring can add the branch's skips where it belongs. dense_time: the transformer takes s (Sprint, "dense
    time embedding"), else 1000 s times its config's timestep_scale (SANA teachers).
    cond: "text" (b, n, caption) embeddings, "text_bias" (b, 1, n) additive mask (0 keep, -10000 pad),
    "guidance" (b,) raw CFG scale (guidance-embedding models), "control" (b, c, hl, wl) control latent and
    "scale" (0-dim) conditioning scale (with a branch)."""

    def __init__(self, transformer: SanaTransformer2DModel, controlnet: SprintControlNet | None, *, dense_time: bool):
        super().__init__()
        self.transformer, self.controlnet = transformer, controlnet
        self.dense_time = dense_time

    def forward(self, x_s: Tensor, s: Tensor, cond: dict[str, Tensor]) -> Tensor:
        tr = self.transformer
        dtype = tr.dtype
        x = x_s.to(dtype)
        b, _, h, w = x.shape
        p = tr.config.patch_size
        size = (h // p, w // p)
        timestep = s if self.dense_time else s * (1000.0 * tr.config.timestep_scale)
        hidden = tr.patch_embed(x)
        guidance = cond.get("guidance")
        if tr.config.guidance_embeds:
            g = (guidance * tr.config.guidance_embeds_scale).to(dtype)
            t_mod, t_emb = tr.time_embed(timestep, guidance=g, hidden_dtype=dtype)
        else:
            t_mod, t_emb = tr.time_embed(timestep, batch_size=b, hidden_dtype=dtype)
        text, bias = cond["text"].to(dtype), cond["text_bias"]
        text_h = tr.caption_norm(tr.caption_projection(text).view(b, -1, hidden.shape[-1]))

        branch = self.controlnet if "control" in cond else None
        branch_args = (cond["control"], s, text, bias, guidance, cond["scale"], size) if branch else ()
        nvlabs = branch is not None and branch.config.wiring == "nvlabs"
        skips: dict[int, Tensor] = {}  # base block index -> residual added to that block's input
        if branch is not None and not nvlabs:  # diffusers: skip k after base block k + 1
            skips = dict(enumerate(branch(branch.patch_embed(x), *branch_args), start=2))
        for i, block in enumerate(tr.transformer_blocks):
            if i in skips:
                hidden = hidden + skips[i]
            hidden = block(hidden, None, text_h, bias, t_mod, *size)
            if i == 0 and nvlabs:  # NVlabs: the branch starts from block 0's output, skip k into block k + 1
                skips = dict(enumerate(branch(hidden, *branch_args), start=1))
        if len(tr.transformer_blocks) in skips:
            hidden = hidden + skips[len(tr.transformer_blocks)]

        hidden = tr.proj_out(tr.norm_out(hidden, t_emb, tr.scale_shift_table))
        hidden = hidden.reshape(b, *size, p, p, -1).permute(0, 5, 1, 3, 2, 4)
        return hidden.reshape(b, -1, size[0] * p, size[1] * p).float()


# ---------------------------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------------------------


def sprint_timesteps(steps: int, *, t_max: float = T_MAX, intermediate: float = T_INTERMEDIATE) -> Tensor:
    """SCMScheduler's evaluation times in float32: [t_max], [t_max, 1.3], else linspace(t_max, 0, N + 1)[:-1]."""
    return get_trigflow_timesteps(steps, t_max=t_max, intermediate=intermediate).float()


def sample_scm(
    model: Callable[[Tensor, Tensor], Tensor], noise: Tensor, ts: Tensor, sigma_d: float = SIGMA_D
) -> Tensor:
    """sCM consistency sampling (Lu & Song 2024, Alg. 1; diffusers SCMScheduler) with the noise drawn up front.

    noise: (N, b, c, hl, wl) unit normals: x_T = sigma_d eps_0, and before step i > 0
    x_t = cos t_i x_hat0 + sin t_i sigma_d eps_i. Each step x_hat0 = cos t x_t - sin t sigma_d F(x_t / sigma_d, t)
    (sCM eq. 9). ts: (N,) TrigFlow times on the device. Returns x_hat0 on the TrigFlow scale (sigma_d x the unit
    latent). The same draws give schedules.sample_trigflow's result; here no RNG and no host value is touched, so the
    loop can be captured in a CUDA graph."""
    x = sigma_d * noise[0]
    x0 = x
    for i in range(ts.shape[0]):
        t = ts[i].expand(x.shape[0])
        if i > 0:
            tt = append_dims(t, x)
            x = torch.cos(tt) * x0 + torch.sin(tt) * sigma_d * noise[i]
        x0 = trigflow_denoise(x, model(x / sigma_d, t), t, sigma_d)
    return x0


def cfg_flow(
    flow: SanaFlow, cond: dict[str, Tensor], uncond_text: Tensor, uncond_bias: Tensor, guidance: float
) -> Callable[[Tensor, Tensor], Tensor]:
    """v = v_u + w (v_c - v_u) from one batch of two (classifier-free guidance, as SanaControlNetPipeline)."""
    pair = {
        **cond,
        "text": torch.cat([uncond_text, cond["text"]]),
        "text_bias": torch.cat([uncond_bias, cond["text_bias"]]),
    }
    if "control" in cond:
        pair["control"] = torch.cat([cond["control"]] * 2)

    def v(x: Tensor, s: Tensor) -> Tensor:
        v_u, v_c = flow(torch.cat([x, x]), torch.cat([s, s]), pair).chunk(2)
        return v_u + guidance * (v_c - v_u)

    return v


# ---------------------------------------------------------------------------------------------------------------
# Text: Gemma-2 with the complex human instruction
# ---------------------------------------------------------------------------------------------------------------


def make_gemma_tokenizer() -> GemmaTokenizer:
    """A Gemma tokenizer with a generated character vocab (specials, byte fallback, "▁", printable ASCII) and no
    merges: Gemma's text handling (BOS, right padding, byte fallback) without downloading its vocabulary."""
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    vocab.update({f"<0x{b:02X}>": 5 + b for b in range(256)})
    for char in ["▁", *map(chr, range(33, 127))]:
        vocab.setdefault(char, len(vocab))
    return GemmaTokenizer(vocab=vocab, merges=[], add_bos_token=True, model_max_length=MAX_SEQUENCE_LENGTH)


@torch.inference_mode()
def encode_text(
    tokenizer: Any,
    encoder: nn.Module,
    text: str,
    *,
    chi: Sequence[str] = CHI,
    max_length: int = MAX_SEQUENCE_LENGTH,
) -> tuple[Tensor, Tensor, int, bool]:
    """Gemma hidden states as SanaSprintPipeline.encode_prompt gives them: lower-cased prompt after the CHI prefix,
    right padding to CHI tokens + max_length - 2, then BOS + the last max_length - 1 positions (SANA sec. 3.1).
    Returns embeddings (1, n, caption), mask (1, n), the prompt tokens kept, and whether the prompt was cut."""
    text = text.lower().strip()
    prefix = "\n".join(chi)
    n_prefix = len(tokenizer.encode(prefix))  # BOS included
    total = n_prefix + max_length - 2 if chi else max_length
    tokenizer.padding_side = "right"
    inputs = tokenizer(
        prefix + text,
        padding="max_length",
        max_length=total,
        truncation=True,
        add_special_tokens=True,
        return_tensors="pt",
    )
    n_all = len(tokenizer(prefix + text, verbose=False).input_ids)  # untruncated, to tell the user
    device = next(encoder.parameters()).device
    mask = inputs.attention_mask.to(device)
    hidden = encoder(inputs.input_ids.to(device), attention_mask=mask)[0]
    select = [0, *range(-max_length + 1, 0)]
    return hidden[:, select], mask[:, select], min(n_all, total) - n_prefix, n_all > total


# ---------------------------------------------------------------------------------------------------------------
# Configurations and seeded random components
# ---------------------------------------------------------------------------------------------------------------


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
    tokens = dict(vocab_size=vocab_size, pad_token_id=0, eos_token_id=1, bos_token_id=2)
    if size == "tiny":
        return Gemma2Config(
            **tokens, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, head_dim=16, max_position_embeddings=2048,
        )  # fmt: skip
    return Gemma2Config(
        **tokens, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
        num_key_value_heads=4, head_dim=256, max_position_embeddings=8192,
    )  # fmt: skip


def _random_branch(base: SanaTransformer2DModel, config: dict[str, Any]) -> SprintControlNet:
    """A random branch whose embeddings are the base's (NVlabs shares them between base and branch) and whose
    zero-initialised projections get random weights, so that it changes the output."""
    branch = SprintControlNet(**config)
    for name in ("patch_embed", "time_embed", "caption_projection", "caption_norm"):
        getattr(branch, name).load_state_dict(getattr(base, name).state_dict())
    for linear in (branch.input_block, *branch.controlnet_blocks):
        linear.reset_parameters()
    return branch


def build_random_components(size: str, seed: int = 0, device: str = "cpu", *, teacher: bool = False) -> dict[str, Any]:
    """Seeded random components at the published sizes (timings are real) or tiny: tokenizer, text_encoder,
    transformer, controlnet (Sprint branch, NVlabs wiring), vae, vae_lite, and with `teacher` the SANA 1.0 base and
    HED-layout branch (teacher_transformer, teacher_controlnet). Gemma's vocabulary is generated, not Gemma's."""
    torch.manual_seed(seed)
    tokenizer = make_gemma_tokenizer()
    vocab = len(tokenizer) if size == "tiny" else 256000
    c: dict[str, Any] = {"tokenizer": tokenizer}
    with torch.device(device):
        c["text_encoder"] = Gemma2Model(gemma_config(size, vocab)).eval()
        c["transformer"] = SanaTransformer2DModel(**transformer_config(size))
        c["controlnet"] = _random_branch(c["transformer"], controlnet_config(size))
        c["vae"] = AutoencoderDC(**dc_ae_config(size))
        c["vae_lite"] = AutoencoderDC(**dc_ae_config(size, lite=True))
        if teacher:
            c["teacher_transformer"] = SanaTransformer2DModel(**transformer_config(size, sprint=False))
            c["teacher_controlnet"] = _random_branch(c["teacher_transformer"], controlnet_config(size, sprint=False))
    return c


def nvlabs_state(transformer: SanaTransformer2DModel, controlnet: SprintControlNet) -> dict[str, Tensor]:
    """A base transformer + branch as one NVlabs SanaMSControlNet state dict (the converter's rules, inverted). NVlabs
    keeps one set of embeddings for both: the base's are written, the branch's own copies are not."""
    qk, guidance = transformer.config.qk_norm is not None, transformer.config.guidance_embeds
    base = sana_convert.transformer_rules(transformer.config.num_layers, qk_norm=qk, guidance=guidance)
    branch = sana_convert.controlnet_rules(controlnet.config.num_layers, qk_norm=qk, guidance=guidance)
    state = sana_convert.invert(transformer.state_dict(), base)
    control = sana_convert.invert(controlnet.state_dict(), branch)
    return {**state, **{k: v for k, v in control.items() if k.startswith("controlnet.")}}


def save_random_model(size: str, folder: str | Path, seed: int = 0) -> dict[str, Path]:
    """Seeded random components laid out like the hub: sprint/ (a SanaSprintPipeline folder), dc-ae-lite/,
    controlnet/ (a SprintControlNet folder) and hed/checkpoints/hed.pth (an NVlabs SANA 1.0 + HED checkpoint)."""
    from diffusers import SanaSprintPipeline, SCMScheduler

    folder = Path(folder)
    c = build_random_components(size, seed, teacher=True)
    paths = {name: folder / name for name in ("sprint", "dc-ae-lite", "controlnet", "hed")}
    SanaSprintPipeline(
        tokenizer=c["tokenizer"],
        text_encoder=c["text_encoder"],
        vae=c["vae"],
        transformer=c["transformer"],
        scheduler=SCMScheduler(prediction_type="trigflow", sigma_data=SIGMA_D),
    ).save_pretrained(paths["sprint"])
    c["vae_lite"].save_pretrained(paths["dc-ae-lite"])
    c["controlnet"].save_pretrained(paths["controlnet"])
    (paths["hed"] / "checkpoints").mkdir(parents=True)
    state = nvlabs_state(c["teacher_transformer"], c["teacher_controlnet"])
    torch.save({"state_dict": state}, paths["hed"] / "checkpoints" / "hed.pth")
    return paths


# ---------------------------------------------------------------------------------------------------------------
# Loading from the hub or from folders laid out like hub repos
# ---------------------------------------------------------------------------------------------------------------


def _local_folder(role: str, path: str) -> Path:
    """A component's files on disk: the folder itself, or the hub snapshot (downloaded unless offline)."""
    if is_local(path):
        folder = Path(path).expanduser()
        if not folder.exists():
            raise ModelError(f"the {role} component is missing: nothing at {path}")
        return folder

    def fetch() -> Path:
        from huggingface_hub import snapshot_download

        patterns = ["*.json", "*.safetensors", "*.pth", "*.model"]
        return Path(snapshot_download(path, allow_patterns=patterns, local_files_only=hub_offline()))

    return guarded(role, path, "a hub snapshot", fetch)


def _from_pretrained(role: str, path: str, cls: Any, *, subfolder: str = "", dtype: torch.dtype | None = None) -> Any:
    where = f"{path}/{subfolder}" if subfolder else path
    if is_local(path) and not Path(where).expanduser().is_dir():
        raise ModelError(f"the {role} component is missing: no folder {where}")
    kwargs: dict[str, Any] = {"local_files_only": hub_offline()}
    if subfolder:
        kwargs["subfolder"] = subfolder
    if dtype is not None:
        kwargs["dtype" if cls in (Gemma2Model,) else "torch_dtype"] = dtype
    return guarded(role, where, cls.__name__, lambda: cls.from_pretrained(path, **kwargs))


def _config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def load_nvlabs(path: str | Path, dtype: torch.dtype, *, wiring: str = "nvlabs") -> tuple[Any, SprintControlNet]:
    """An NVlabs SanaMSControlNet .pth (e.g. Sana_600M_1024px_ControlNet_HED) -> (SanaTransformer2DModel base,
    SprintControlNet branch); every checkpoint key must be used or known-unused (sana_convert.DROPPED)."""
    state = sana_convert.read_checkpoint(path)
    cfg = sana_convert.infer_config(state)
    if not cfg["control_layers"]:
        raise ModelError(f"{Path(path).name} holds no ControlNet branch (no controlnet.* keys)")
    flags = {"qk_norm": cfg["qk_norm"], "guidance": cfg["guidance"]}
    base_rules = sana_convert.transformer_rules(cfg["num_layers"], **flags)
    branch_rules = sana_convert.controlnet_rules(cfg["control_layers"], **flags)
    unused = sana_convert.unused_keys(state, base_rules, branch_rules)
    if unused:
        raise ModelError(f"{Path(path).name}: {len(unused)} keys this converter does not know, e.g. {unused[:3]}")
    shared = {k: cfg[k] for k in ("in_channels", "num_attention_heads", "attention_head_dim", "caption_channels")}
    shared.update({k: cfg[k] for k in ("num_cross_attention_heads", "cross_attention_head_dim", "mlp_ratio")})
    shared.update(cross_attention_dim=cfg["cross_attention_dim"], patch_size=cfg["patch_size"], attention_bias=False)
    qk = "rms_norm_across_heads" if cfg["qk_norm"] else None
    transformer = SanaTransformer2DModel(
        **shared,
        out_channels=cfg["out_channels"],
        num_layers=cfg["num_layers"],
        interpolation_scale=None,
        qk_norm=qk,
        guidance_embeds=cfg["guidance"],
    )
    branch = SprintControlNet(
        **shared,
        num_layers=cfg["control_layers"],
        qk_norm=qk,
        guidance_embeds=cfg["guidance"],
        dense_time=cfg["guidance"],  # Sprint-style checkpoints (cfg_embedder) use dense time
        wiring=wiring,
    )
    transformer.load_state_dict(sana_convert.convert(state, base_rules), strict=True)
    branch.load_state_dict(sana_convert.convert(state, branch_rules), strict=True)
    for module in (transformer, branch):
        _place(module, "cpu", dtype)
    return transformer, branch


def load_controlnet(path: str, dtype: torch.dtype, *, wiring: str | None = None) -> SprintControlNet:
    """A control branch from a SprintControlNet folder, a diffusers SanaControlNetModel folder or an NVlabs .pth.
    A SanaControlNetModel folder gets NVlabs wiring (the community HED conversions were trained that way) unless its
    config.json says "wiring": "diffusers" (a branch trained through controlnet_block_samples) or `wiring` is given."""
    folder = _local_folder("controlnet", path)
    if folder.is_file():
        return guarded(
            "controlnet", path, "an NVlabs checkpoint", lambda: load_nvlabs(folder, dtype, wiring=wiring or "nvlabs")
        )[1]
    config = _config(folder)
    kind = config.get("_class_name", "")
    if kind == SprintControlNet.__name__:
        branch = _from_pretrained("controlnet", str(folder), SprintControlNet, dtype=dtype)
        if wiring is not None:
            branch.register_to_config(wiring=wiring)
        return branch
    if kind == SanaControlNetModel.__name__:
        model = _from_pretrained("controlnet", str(folder), SanaControlNetModel, dtype=dtype)
        return controlnet_from_diffusers(model, wiring=wiring or config.get("wiring", "nvlabs"))
    checkpoint = sana_convert.find_checkpoint(folder)
    if checkpoint is None:
        raise ModelError(f"the controlnet component ({path}) has no diffusers config.json and no NVlabs .pth")
    return guarded(
        "controlnet", path, "an NVlabs checkpoint", lambda: load_nvlabs(checkpoint, dtype, wiring=wiring or "nvlabs")
    )[1]


def load_teacher(path: str, dtype: torch.dtype) -> SanaFlow:
    """The multi-step teacher: an NVlabs SANA 1.0 + HED .pth (its base and branch), or a folder with transformer/ and
    controlnet/ subfolders. Time input 1000 s x timestep_scale (SanaPipeline's convention)."""
    folder = _local_folder("teacher", path)
    if folder.is_dir() and (folder / "transformer").is_dir():
        transformer = _from_pretrained(
            "teacher", str(folder), SanaTransformer2DModel, subfolder="transformer", dtype=dtype
        )
        branch = load_controlnet(str(folder / "controlnet"), dtype) if (folder / "controlnet").is_dir() else None
        return SanaFlow(transformer, branch, dense_time=False)
    checkpoint = folder if folder.is_file() else sana_convert.find_checkpoint(folder)
    if checkpoint is None:
        raise ModelError(f"the teacher component ({path}) has no transformer/ folder and no NVlabs .pth")
    transformer, branch = guarded("teacher", path, "an NVlabs checkpoint", lambda: load_nvlabs(checkpoint, dtype))
    return SanaFlow(transformer, branch, dense_time=False)


def load_components(spec: ModelSpec, dtype: torch.dtype) -> dict[str, Any]:
    """Every component a manifest names. Roles: base (a SanaSprintPipeline repo or folder: transformer, vae,
    text_encoder, tokenizer), transformer (a distilled student's, replacing the base's), controlnet, vae_lite
    (DC-AE-Lite) and teacher, all but base optional."""
    if "base" not in spec.components:
        raise ModelError(f"{spec.name}: the manifest names no 'base' component")
    base = spec.component_path("base")
    c: dict[str, Any] = {
        "tokenizer": _from_pretrained("base", base, AutoTokenizer, subfolder="tokenizer"),
        "text_encoder": _from_pretrained("base", base, Gemma2Model, subfolder="text_encoder", dtype=dtype),
        "transformer": _from_pretrained("base", base, SanaTransformer2DModel, subfolder="transformer", dtype=dtype),
        "vae": _from_pretrained("base", base, AutoencoderDC, subfolder="vae", dtype=dtype),
    }
    if "transformer" in spec.components:  # a distilled student's transformer replaces the base's
        path = spec.component_path("transformer")
        c["transformer"] = _from_pretrained("transformer", path, SanaTransformer2DModel, dtype=dtype)
    if "vae_lite" in spec.components:
        c["vae_lite"] = _from_pretrained("vae_lite", spec.component_path("vae_lite"), AutoencoderDC, dtype=dtype)
    if "teacher" in spec.components:
        c["teacher"] = load_teacher(spec.component_path("teacher"), dtype)
    if "controlnet" in spec.components:
        path = spec.component_path("controlnet")
        shared = "teacher" in c and path == spec.component_path("teacher") and c["teacher"].controlnet is not None
        # one HED checkpoint serves both: its branch drives Sprint live and the teacher (read and held once)
        c["controlnet"] = c["teacher"].controlnet if shared else load_controlnet(path, dtype)
    return c


# ---------------------------------------------------------------------------------------------------------------
# GPU memory and resolution bins
# ---------------------------------------------------------------------------------------------------------------


def model_size(config: Any) -> str:
    """ "0.6b" / "1.6b" for the published transformer widths, "tiny" for anything else."""
    width = config["num_attention_heads"] * config["attention_head_dim"]
    return {1152: "0.6b", 2240: "1.6b"}.get(width, "tiny")


def gpu_memory_need_gib(size: str, resolution: int = 1024, *, teacher: bool = False) -> float:
    """GPU memory a live session needs: the measured frame peak at the nearest measured resolution at or above
    `resolution` (weights included), plus Gemma-2 while a new prompt is encoded, plus the teacher's weights when the
    refine pass is on. Zero for tiny models."""
    if size not in MEASURED_FRAME_PEAK_GIB:
        return 0.0
    peaks = MEASURED_FRAME_PEAK_GIB[size]
    at = min((r for r in peaks if r >= resolution), default=max(peaks))
    return peaks[at] + GEMMA_GIB + (TEACHER_GIB[size] if teacher else 0.0)


def check_gpu_memory(title: str, need_gib: float, free_bytes: int) -> None:
    """Refuse before loading when the device's free memory is below the measured need (ModelError for the UI)."""
    free_gib = free_bytes / 2**30
    if need_gib > free_gib:
        raise ModelError(
            f"{title} needs about {need_gib:.1f} GiB of GPU memory (measured peak of a frame plus Gemma-2 while a "
            f"prompt is encoded) and this GPU has {free_gib:.1f} GiB free; pick a smaller model or free the GPU"
        )


def resolution_bins(native: int, factor: int) -> dict[int, list[tuple[int, int]]]:
    """SANA's aspect-ratio bins at two scales, native and native / 2 (ASPECT_RATIO_1024_BIN, _512_BIN), scaled to
    the model's native size and rounded to the latent grid."""
    out = {}
    for scale, bins in ((native, ASPECT_RATIO_1024_BIN), (native // 2, ASPECT_RATIO_512_BIN)):
        k = native / 1024
        out[scale] = [
            (max(factor, round(h * k / factor) * factor), max(factor, round(w * k / factor) * factor))
            for h, w in bins.values()
        ]
    return out


def snap_resolution(h: int, w: int, native: int, factor: int) -> tuple[int, int]:
    """The bin closest to (h, w): the scale nearest in log area, then the nearest aspect ratio (diffusers'
    classify_height_width_bin)."""
    bins = resolution_bins(native, factor)
    scale = min(bins, key=lambda s: abs(math.log(h * w / s**2)))
    return min(bins[scale], key=lambda hw: abs(hw[0] / hw[1] - h / w))


# ---------------------------------------------------------------------------------------------------------------
# The Engine
# ---------------------------------------------------------------------------------------------------------------


def _place(module: nn.Module | None, device: torch.device | str, dtype: torch.dtype) -> None:
    """Cast (where it is, before a move shrinks the copy), move, freeze, eval mode."""
    if module is None:
        return
    if module.dtype != dtype:
        module.to(dtype=dtype)
    module.to(device=device)
    module.eval().requires_grad_(False)


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
            _place(module, self.device, dtype)
        _place(text_encoder, "cpu" if self.offload_text_encoder else self.device, dtype)
        self.transformer, self.controlnet, self.vae, self.vae_lite = transformer, controlnet, vae, vae_lite
        self.text_encoder, self.tokenizer = text_encoder, tokenizer
        self.teacher = teacher
        if teacher is not None:  # on the host until the first refine
            _place(teacher.transformer, "cpu" if cuda else self.device, dtype)
            if teacher.controlnet is not controlnet:
                _place(teacher.controlnet, "cpu" if cuda else self.device, dtype)
        self.flow = SanaFlow(transformer, controlnet, dense_time=True)
        self.F = FlowAsTrigFlow(self.flow)  # training-free flow -> TrigFlow transform (SanaMSCM)
        self.vae_scale_factor = 2 ** (len(vae.config.encoder_block_out_channels) - 1)
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
        """An engine over components as `load_components` / `build_random_components` return them; a random
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
            components = build_random_components(size, seed=0, device=device)
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
        if value not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {value!r}")
        if value == "lite" and self.vae_lite is None:
            raise ValueError(f"{self.name} has no DC-AE-Lite component")
        self._decoder = value

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
        binned = snap_resolution(h, w, self.native_resolution, self.vae_scale_factor)
        notice = (
            "" if binned == (h, w) else f"{h}x{w} is not a SANA resolution bin: generating at {binned[0]}x{binned[1]}"
        )
        return binned, notice

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
        bias = ((1 - mask.to(self.dtype)) * -10000.0)[:, None]  # the transformer's own mask -> bias conversion
        tensors = {"text": embeds.to(device=self.device, dtype=self.dtype), "text_bias": bias.to(self.device)}
        return PromptCond(text=text, tensors=tensors, truncated=truncated, n_tokens=n_tokens)

    def negative_prompt(self) -> PromptCond:
        """The CFG branch's condition: "" without the CHI prefix (SANA's null caption at inference), cached."""
        return self._prompts.get_or_make(("", "no-chi"), lambda: self._encode_prompt("", chi=()))

    def encode_control(self, image: np.ndarray, resolution: tuple[int, int]) -> ControlCond:
        """The sketch (white strokes on black, HxWx3 uint8) resized to the resolution's bin, scaled to [-1, 1] and
        DC-AE-encoded x scaling_factor (SanaControlNetPipeline); cached by pixel content and bin, so an unchanged
        canvas is never re-encoded."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"control image must be HxWx3 uint8, got shape {image.shape} dtype {image.dtype}")
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
        latent = self._run(("encode", *size), self._encode_fn, pixels).clone()
        return ControlCond(key=key, resolution=size, tensors={"latent": latent})

    def _encode_fn(self, pixels: Tensor) -> Tensor:
        return self.vae.encode(pixels).latent * self.vae.config.scaling_factor

    # --- sampling -------------------------------------------------------------------------------------------

    def _run(self, key: tuple, fn: Callable[..., Tensor], *inputs: Tensor) -> Tensor:
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
        return self._run(
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
        pixels = self._run(("decode", self._decoder, *latents.shape[-2:]), self._decode_fn, latents)
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
