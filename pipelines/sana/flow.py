"""The flow model the teacher samples: the Sana transformer plus its control branch, as one velocity function."""

# b batch, c latent channels (32), h w pixel height width, hl wl latent height width (h // 32), n text tokens (300),
# d transformer width, s flow time in [0, 1], t TrigFlow time in [0, pi/2], N sampling steps

from __future__ import annotations

from collections.abc import Mapping

import torch
from diffusers import SanaTransformer2DModel
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from pipelines.sana.config import DEFAULT_GUIDANCE
from pipelines.sana.controlnet import SprintControlNet
from pipelines.sana.text import text_bias


class SanaFlow(nn.Module):
    """v(x_s, s, cond), the flow velocity of a Sana / Sprint transformer with an optional control branch.

    The transformer's forward is spelled out (same modules and order as SanaTransformer2DModel.forward) so that
    either wiring can add the branch's skips where it belongs. dense_time: the transformer takes s (Sprint, "dense
    time embedding"), else 1000 s times its config's timestep_scale (SANA teachers). default_guidance and
    conditioning_scale: what the model sees when cond carries no "guidance" or "scale" (a distillation teacher queried
    with its data's conditions).
    cond: "text" (b, n, caption) embeddings, the caption's padding as "text_bias" (b, 1, n) additive mask (0 keep,
    -10000 pad; the engine caches it) or "text_mask" (b, n) (1 keep, 0 pad; training data stores it), neither = every
    token kept, "guidance" (b,) raw CFG scale (guidance-embedding models), "control" (b, c, hl, wl) control latent and
    "scale" (0-dim) conditioning scale (with a branch). With the transformer's gradient checkpointing on,
    its blocks are recomputed in the backward pass."""

    def __init__(
        self,
        transformer: SanaTransformer2DModel,
        controlnet: SprintControlNet | None,
        *,
        dense_time: bool,
        default_guidance: float = DEFAULT_GUIDANCE,
        conditioning_scale: float = 1.0,
    ):
        super().__init__()
        self.transformer, self.controlnet = transformer, controlnet
        self.dense_time = dense_time
        self.default_guidance, self.conditioning_scale = default_guidance, conditioning_scale

    def forward(self, x_s: Tensor, s: Tensor, cond: Mapping[str, Tensor]) -> Tensor:
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
            guidance = torch.full_like(s, self.default_guidance) if guidance is None else guidance
            g = (guidance * tr.config.guidance_embeds_scale).to(dtype)
            t_mod, t_emb = tr.time_embed(timestep, guidance=g, hidden_dtype=dtype)
        else:
            t_mod, t_emb = tr.time_embed(timestep, batch_size=b, hidden_dtype=dtype)
        text, bias = cond["text"].to(dtype), cond.get("text_bias")
        if bias is None and cond.get("text_mask") is not None:
            bias = text_bias(cond["text_mask"], dtype)
        text_h = tr.caption_norm(tr.caption_projection(text).view(b, -1, hidden.shape[-1]))

        branch = self.controlnet if "control" in cond else None
        scale = cond["scale"] if "scale" in cond else torch.tensor(self.conditioning_scale, device=x.device)
        branch_args = (cond["control"], s, text, bias, guidance, scale, size) if branch else ()
        nvlabs = branch is not None and branch.config.wiring == "nvlabs"
        skips: dict[int, Tensor] = {}  # base block index -> residual added to that block's input
        if branch is not None and not nvlabs:  # diffusers: skip k after base block k + 1
            skips = dict(enumerate(branch(branch.patch_embed(x), *branch_args), start=2))
        recompute = torch.is_grad_enabled() and tr.gradient_checkpointing
        for i, block in enumerate(tr.transformer_blocks):
            if i in skips:
                hidden = hidden + skips[i]
            args = (hidden, None, text_h, bias, t_mod, *size)
            hidden = checkpoint(block, *args, use_reentrant=False) if recompute else block(*args)
            if i == 0 and nvlabs:  # NVlabs: the branch starts from block 0's output, skip k into block k + 1
                skips = dict(enumerate(branch(hidden, *branch_args), start=1))
        if len(tr.transformer_blocks) in skips:
            hidden = hidden + skips[len(tr.transformer_blocks)]

        hidden = tr.proj_out(tr.norm_out(hidden, t_emb, tr.scale_shift_table))
        hidden = hidden.reshape(b, *size, p, p, -1).permute(0, 5, 1, 3, 2, 4)
        return hidden.reshape(b, -1, size[0] * p, size[1] * p).to(x_s.dtype)
