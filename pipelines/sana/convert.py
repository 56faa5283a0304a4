"""NVlabs Sana checkpoints (.pth) <-> diffusers-layout state dicts: the key map (as a list of invertible rules), the
architecture read off the tensors, and loading of SANA-1.0 HED ControlNet checkpoints (base + control branch).

The map follows diffusers' scripts/convert_sana_to_diffusers.py and convert_sana_controlnet_to_diffusers.py
(notes/sana_sprint.md sec. 1.2): fused NVlabs projections (self-attention qkv, cross-attention kv) are split into
to_q / to_k / to_v along dim 0; everything else is a rename. The rules run both ways, so tests build NVlabs-format
dicts from tiny models by inversion.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

# Keys an NVlabs checkpoint may hold that no inference module uses: the learned null caption (training-time caption
# dropout), a sin-cos table of models trained with positional embeddings, the sCM adaptive-weight head (Sprint).
DROPPED = ("y_embedder.y_embedding", "pos_embed", "logvar_linear.weight", "logvar_linear.bias")

# Cross-attention heads of the published widths (NVlabs SanaMS_600M: 16, SanaMS_1600M: 20); self-attention is
# linear with 32-channel heads (NVlabs linear_head_dim=32). Other widths (tiny test models) use 32-channel heads too.
CROSS_HEADS = {1152: 16, 2240: 20}
LINEAR_HEAD_DIM = 32


@dataclass(frozen=True)
class Rule:
    """One NVlabs tensor -> one or more diffusers tensors (several: split into equal chunks along dim 0)."""

    src: str
    dst: tuple[str, ...]


def _rename(src: str, dst: str) -> Rule:
    return Rule(src, (dst,))


def _linear(src: str, dst: str, bias: bool = True) -> list[Rule]:
    rules = [_rename(f"{src}.weight", f"{dst}.weight")]
    return rules + [_rename(f"{src}.bias", f"{dst}.bias")] if bias else rules


def embedding_rules(*, guidance: bool) -> list[Rule]:
    """Patch, caption and time embeddings (shared by a base transformer and its control branch in NVlabs)."""
    time = "time_embed" if guidance else "time_embed.emb"
    rules = [
        *_linear("x_embedder.proj", "patch_embed.proj"),
        *_linear("y_embedder.y_proj.fc1", "caption_projection.linear_1"),
        *_linear("y_embedder.y_proj.fc2", "caption_projection.linear_2"),
        _rename("attention_y_norm.weight", "caption_norm.weight"),
        *_linear("t_embedder.mlp.0", f"{time}.timestep_embedder.linear_1"),
        *_linear("t_embedder.mlp.2", f"{time}.timestep_embedder.linear_2"),
        *_linear("t_block.1", "time_embed.linear"),
    ]
    if guidance:  # SANA-Sprint's cfg_embedder: the embedded guidance scale
        rules += [
            *_linear("cfg_embedder.mlp.0", "time_embed.guidance_embedder.linear_1"),
            *_linear("cfg_embedder.mlp.2", "time_embed.guidance_embedder.linear_2"),
        ]
    return rules


def block_rules(src: str, dst: str, *, qk_norm: bool) -> list[Rule]:
    """One SanaMSBlock -> one diffusers SanaTransformerBlock."""
    rules = [
        _rename(f"{src}.scale_shift_table", f"{dst}.scale_shift_table"),
        Rule(f"{src}.attn.qkv.weight", tuple(f"{dst}.attn1.to_{x}.weight" for x in "qkv")),
        *_linear(f"{src}.attn.proj", f"{dst}.attn1.to_out.0"),
        *_linear(f"{src}.mlp.inverted_conv.conv", f"{dst}.ff.conv_inverted"),
        *_linear(f"{src}.mlp.depth_conv.conv", f"{dst}.ff.conv_depth"),
        *_linear(f"{src}.mlp.point_conv.conv", f"{dst}.ff.conv_point", bias=False),
        *_linear(f"{src}.cross_attn.q_linear", f"{dst}.attn2.to_q"),
        Rule(f"{src}.cross_attn.kv_linear.weight", (f"{dst}.attn2.to_k.weight", f"{dst}.attn2.to_v.weight")),
        Rule(f"{src}.cross_attn.kv_linear.bias", (f"{dst}.attn2.to_k.bias", f"{dst}.attn2.to_v.bias")),
        *_linear(f"{src}.cross_attn.proj", f"{dst}.attn2.to_out.0"),
    ]
    if qk_norm:  # SANA-Sprint / SANA-1.5: RMSNorm over the full inner dimension of q and k, in both attentions
        for attn, name in (("attn", "attn1"), ("cross_attn", "attn2")):
            rules += [
                _rename(f"{src}.{attn}.q_norm.weight", f"{dst}.{name}.norm_q.weight"),
                _rename(f"{src}.{attn}.k_norm.weight", f"{dst}.{name}.norm_k.weight"),
            ]
    return rules


def transformer_rules(num_layers: int, *, qk_norm: bool, guidance: bool) -> list[Rule]:
    """An NVlabs SanaMS / SanaMSCM model -> diffusers SanaTransformer2DModel."""
    rules = embedding_rules(guidance=guidance)
    for i in range(num_layers):
        rules += block_rules(f"blocks.{i}", f"transformer_blocks.{i}", qk_norm=qk_norm)
    return rules + [
        *_linear("final_layer.linear", "proj_out"),
        _rename("final_layer.scale_shift_table", "scale_shift_table"),
    ]


def controlnet_rules(num_layers: int, *, qk_norm: bool, guidance: bool) -> list[Rule]:
    """The control branch of an NVlabs SanaMSControlNet -> SprintControlNet (= SanaControlNetModel's key names):
    copied blocks, before_proj (block 0 only) -> input_block, after_proj -> controlnet_blocks; the branch gets its
    own copy of the base's embeddings."""
    rules = embedding_rules(guidance=guidance) + _linear("controlnet.0.before_proj", "input_block")
    for i in range(num_layers):
        rules += block_rules(f"controlnet.{i}.copied_block", f"transformer_blocks.{i}", qk_norm=qk_norm)
        rules += _linear(f"controlnet.{i}.after_proj", f"controlnet_blocks.{i}")
    return rules


def convert(state: dict[str, Tensor], rules: list[Rule]) -> dict[str, Tensor]:
    """NVlabs -> diffusers names; a key the rules need but the checkpoint lacks is an error naming the first few."""
    missing = [rule.src for rule in rules if rule.src not in state]
    if missing:
        raise KeyError(f"the checkpoint lacks {len(missing)} expected keys, e.g. {missing[:3]}")
    out: dict[str, Tensor] = {}
    for rule in rules:
        parts = torch.chunk(state[rule.src], len(rule.dst), dim=0) if len(rule.dst) > 1 else (state[rule.src],)
        out.update(zip(rule.dst, parts, strict=True))
    return out


def invert(state: dict[str, Tensor], rules: list[Rule]) -> dict[str, Tensor]:
    """diffusers -> NVlabs names (the fused projections concatenated back); the inverse of `convert`."""
    return {rule.src: torch.cat([state[k] for k in rule.dst], dim=0) for rule in rules}


def unused_keys(state: dict[str, Tensor], *rule_sets: list[Rule]) -> list[str]:
    """Checkpoint keys no rule reads and that are not known to be unused (a sign of an unexpected architecture)."""
    used = {rule.src for rules in rule_sets for rule in rules}
    return sorted(k for k in state if k not in used and k not in DROPPED)


# ---------------------------------------------------------------------------------------------------------------
# Architecture from the tensors
# ---------------------------------------------------------------------------------------------------------------


def _count(state: dict[str, Tensor], pattern: str) -> int:
    indices = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    return max(indices) + 1 if indices else 0


def infer_config(state: dict[str, Tensor]) -> dict[str, Any]:
    """The diffusers kwargs shared by base and branch, plus num_layers / control_layers / qk_norm / guidance."""
    width, in_channels, patch, _ = state["x_embedder.proj.weight"].shape
    cross_heads = CROSS_HEADS.get(width, width // LINEAR_HEAD_DIM)
    out_features = state["final_layer.linear.weight"].shape[0] if "final_layer.linear.weight" in state else None
    return {
        "in_channels": in_channels,
        "out_channels": out_features // (patch * patch) if out_features else in_channels,
        "num_attention_heads": width // LINEAR_HEAD_DIM,
        "attention_head_dim": LINEAR_HEAD_DIM,
        "num_cross_attention_heads": cross_heads,
        "cross_attention_head_dim": width // cross_heads,
        "cross_attention_dim": width,
        "caption_channels": state["y_embedder.y_proj.fc1.weight"].shape[1],
        "mlp_ratio": state["blocks.0.mlp.point_conv.conv.weight"].shape[1] / width
        if "blocks.0.mlp.point_conv.conv.weight" in state
        else state["controlnet.0.copied_block.mlp.point_conv.conv.weight"].shape[1] / width,
        "patch_size": patch,
        "num_layers": _count(state, r"blocks\.(\d+)\."),
        "control_layers": _count(state, r"controlnet\.(\d+)\."),
        "qk_norm": any(k.endswith("attn.q_norm.weight") for k in state),
        "guidance": "cfg_embedder.mlp.0.weight" in state,
    }


def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """An NVlabs .pth: the tensors under "state_dict" (or the top level), without a DDP "module." prefix."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint.get("state_dict", checkpoint)
    return {k.removeprefix("module."): v for k, v in state.items()}


def find_checkpoint(folder: str | Path) -> Path | None:
    """The one .pth in a hub-layout folder (NVlabs repos keep it in checkpoints/); None when there is none."""
    found = sorted(Path(folder).rglob("*.pth"))
    return found[0] if found else None
