"""The control branch: SprintControlNet (NVlabs or diffusers wiring), converted from diffusers' SanaControlNetModel."""

# b batch, c latent channels (32), h w pixel height width, hl wl latent height width (h // 32), n text tokens (300),
# d transformer width, s flow time in [0, 1], t TrigFlow time in [0, pi/2], N sampling steps

from __future__ import annotations

from diffusers import ModelMixin, SanaControlNetModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import PatchEmbed, PixArtAlphaTextProjection
from diffusers.models.normalization import AdaLayerNormSingle, RMSNorm
from diffusers.models.transformers.sana_transformer import (
    SanaCombinedTimestepGuidanceEmbeddings,
    SanaTransformerBlock,
)
from torch import Tensor, nn

from pipelines.sana.config import WIRINGS
from pipelines.spec import ModelError


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
