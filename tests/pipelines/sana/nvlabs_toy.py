"""A toy-size stand-in for NVlabs Sana's model classes: the same module tree (parameter and persistent-buffer names,
shapes), so that tests can take an NVlabs-format state dict from it instead of from our converter's inverse.

Written here from a reading of github.com/NVlabs/Sana (no code copied, no forward passes: only what `state_dict()`
holds). Which NVlabs class each part reproduces:

- `ToySanaMS` -> `Sana` (diffusion/model/nets/sana.py: x_embedder, t_embedder, the optional cfg_embedder, the
  `pos_embed` buffer, t_block, y_embedder, attention_y_norm when y_norm, blocks, final_layer) as `SanaMS`
  (diffusion/model/nets/sana_multi_scale.py) re-declares it: x_embedder a `PatchEmbedMS`, blocks `SanaMSBlock`s, the
  optional `logvar_linear` (Linear(hidden, 1), sCM's adaptive weight). `SanaMSCM` (same file, the SANA-Sprint
  model) only overrides forward, so it is `ToySanaMS` with cfg_embed / logvar / qk_norm / cross_norm on, as in
  configs/sana_sprint_config/1024ms/SanaSprint_600M_1024px_allqknorm_bf16_scm_ladd.yaml.
- `_Block` -> `SanaMSBlock` (sana_multi_scale.py) with attn_type "linear", ffn_type "glumbconv": norm1 / norm2
  (LayerNorm, no affine), attn, cross_attn, mlp, `scale_shift_table` (6, hidden).
- `_LinearAttention` -> `LiteLA` (diffusion/model/nets/sana_blocks.py), a timm `Attention` with qkv_bias=use_bias
  (False): `qkv` Linear(d, 3d) without bias, `proj` Linear(d, d); with qk_norm, `q_norm` / `k_norm` RMSNorm(d).
- `_CrossAttention` -> `MultiHeadCrossAttention` (sana_blocks.py; `MultiHeadCrossVallinaAttention`, Sprint's
  cross_attn_type "vanilla", subclasses it without new parameters): q_linear, kv_linear (d -> 2d), proj, and with
  cross_norm `q_norm` / `k_norm` RMSNorm(d).
- `_GLUMBConv` -> `GLUMBConv` (diffusion/model/nets/basic_modules.py) with use_bias (True, True, False), no norms:
  inverted_conv / depth_conv / point_conv, each a `ConvLayer` whose Conv2d is `.conv`.
- `_TimestepEmbedder` -> `TimestepEmbedder` (sana_blocks.py): mlp = Linear(256, d), SiLU, Linear(d, d).
- `_CaptionEmbedder` -> `CaptionEmbedder` (sana_blocks.py): `y_proj` a timm `Mlp` (fc1, fc2) and the persistent
  buffer `y_embedding` (token_num, caption channels), the learned null caption.
- `_RMSNorm` -> `RMSNorm` (diffusion/model/norms.py): one `weight` of the normalised width.
- `_FinalLayer` -> `T2IFinalLayer` (sana_blocks.py): norm_final (no affine), linear, `scale_shift_table` (2, d).
- `ToySanaMSControlNet` / `_ControlBlock` -> `SanaMSControlNet` / `ControlSanaMSBlock`
  (diffusion/model/nets/sana_multi_scale_controlnet.py): the base plus `controlnet`, a list of copy_blocks_num
  blocks each holding `copied_block` (a copy of base block i), `after_proj` Linear(d, d), and `before_proj`
  Linear(d, d) in block 0 only. The branch has no embeddings of its own (it uses the base's).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

FREQUENCY_CHANNELS = 256  # TimestepEmbedder's sinusoidal input width


class _RMSNorm(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))


class _TimestepEmbedder(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(FREQUENCY_CHANNELS, width), nn.SiLU(), nn.Linear(width, width))


class _TwoLayerMlp(nn.Module):
    """timm's Mlp as CaptionEmbedder builds it: fc1 -> GELU -> fc2, both with bias."""

    def __init__(self, features: int, width: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(features, width)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(width, width)


class _CaptionEmbedder(nn.Module):
    def __init__(self, caption_channels: int, width: int, tokens: int) -> None:
        super().__init__()
        self.y_proj = _TwoLayerMlp(caption_channels, width)
        self.register_buffer("y_embedding", torch.randn(tokens, caption_channels) / caption_channels**0.5)


class _PatchEmbedMS(nn.Module):
    def __init__(self, patch: int, in_channels: int, width: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, width, kernel_size=patch, stride=patch)


class _LinearAttention(nn.Module):
    def __init__(self, width: int, qk_norm: bool) -> None:
        super().__init__()
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width)
        if qk_norm:
            self.q_norm, self.k_norm = _RMSNorm(width), _RMSNorm(width)


class _CrossAttention(nn.Module):
    def __init__(self, width: int, qk_norm: bool) -> None:
        super().__init__()
        self.q_linear = nn.Linear(width, width)
        self.kv_linear = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)
        if qk_norm:
            self.q_norm, self.k_norm = _RMSNorm(width), _RMSNorm(width)


class _Conv(nn.Module):
    """ConvLayer without norm and activation parameters: only its `conv`."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int, *, groups: int = 1, bias: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels_in, channels_out, kernel, padding=kernel // 2, groups=groups, bias=bias)


class _GLUMBConv(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.inverted_conv = _Conv(width, 2 * hidden, 1, bias=True)
        self.depth_conv = _Conv(2 * hidden, 2 * hidden, 3, groups=2 * hidden, bias=True)
        self.point_conv = _Conv(hidden, width, 1, bias=False)


class _Block(nn.Module):
    def __init__(self, width: int, mlp_ratio: float, *, qk_norm: bool, cross_norm: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = _LinearAttention(width, qk_norm)
        self.cross_attn = _CrossAttention(width, cross_norm)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = _GLUMBConv(width, int(width * mlp_ratio))
        self.scale_shift_table = nn.Parameter(torch.randn(6, width) / width**0.5)


class _FinalLayer(nn.Module):
    def __init__(self, width: int, patch: int, out_channels: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(width, patch * patch * out_channels)
        self.scale_shift_table = nn.Parameter(torch.randn(2, width) / width**0.5)


class ToySanaMS(nn.Module):
    """SanaMS / SanaMSCM's parameters at any size. hidden_size, depth, patch_size, in_channels, caption_channels,
    mlp_ratio, input_size (latent side), model_max_length, qk_norm, cross_norm, y_norm, cfg_embed, logvar and
    pred_sigma (out_channels = 2 x in_channels) mean what they mean in NVlabs' constructor."""

    def __init__(
        self,
        *,
        hidden_size: int,
        depth: int,
        patch_size: int = 1,
        in_channels: int = 32,
        caption_channels: int = 2304,
        mlp_ratio: float = 2.5,
        input_size: int = 32,
        model_max_length: int = 300,
        qk_norm: bool = False,
        cross_norm: bool = False,
        y_norm: bool = True,
        cfg_embed: bool = False,
        logvar: bool = False,
        pred_sigma: bool = False,
    ) -> None:
        super().__init__()
        width = hidden_size
        self.x_embedder = _PatchEmbedMS(patch_size, in_channels, width)
        self.t_embedder = _TimestepEmbedder(width)
        if cfg_embed:
            self.cfg_embedder = _TimestepEmbedder(width)
        # Sana registers a fixed sin-cos table for the base grid even when use_pe is off; it is saved with the model
        self.register_buffer("pos_embed", torch.zeros(1, (input_size // patch_size) ** 2, width))
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        self.y_embedder = _CaptionEmbedder(caption_channels, width, model_max_length)
        if y_norm:
            self.attention_y_norm = _RMSNorm(width)
        self.blocks = nn.ModuleList(
            _Block(width, mlp_ratio, qk_norm=qk_norm, cross_norm=cross_norm) for _ in range(depth)
        )
        out_channels = 2 * in_channels if pred_sigma else in_channels
        self.final_layer = _FinalLayer(width, patch_size, out_channels)
        if logvar:
            self.logvar_linear = nn.Linear(width, 1)


class _ControlBlock(nn.Module):
    def __init__(self, base_block: _Block, index: int, width: int) -> None:
        super().__init__()
        self.copied_block = copy.deepcopy(base_block)
        if index == 0:
            self.before_proj = nn.Linear(width, width)
        self.after_proj = nn.Linear(width, width)


class ToySanaMSControlNet(ToySanaMS):
    """SanaMSControlNet: the base plus `controlnet`, copies of its first copy_blocks_num blocks."""

    def __init__(self, *, copy_blocks_num: int = 7, **kwargs) -> None:
        super().__init__(**kwargs)
        width = kwargs["hidden_size"]
        self.controlnet = nn.ModuleList(_ControlBlock(self.blocks[i], i, width) for i in range(copy_blocks_num))


def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter and buffer drawn afresh, so that equal values mean the same tensor was carried over."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in (*module.parameters(), *module.buffers()):
            tensor.copy_(torch.randn(tensor.shape, generator=generator))
    return module
