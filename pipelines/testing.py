"""Seeded random-weight components of the real model classes at toy or real size, shared by tests and benches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderDC,
    AutoencoderKL,
    AutoencoderTiny,
    ControlNetModel,
    SanaTransformer2DModel,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from torch import Tensor
from transformers import CLIPTokenizer, Gemma2Model

from pipelines.parameterization import SIGMA_D
from pipelines.sana import convert as sana_convert
from pipelines.sana.config import controlnet_config, dc_ae_config, gemma_config, transformer_config
from pipelines.sana.controlnet import SprintControlNet
from pipelines.sana.text import make_gemma_tokenizer
from pipelines.sd.config import (
    KINDS,
    SIZES,
    TOKENIZER_MAX_LENGTH,
    scheduler_for,
    taesd_config,
    text_configs,
    unet_config,
    vae_config,
)


def random_branch(base: SanaTransformer2DModel, config: dict[str, Any]) -> SprintControlNet:
    """A random branch whose embeddings are the base's (NVlabs shares them between base and branch) and whose
    zero-initialised projections get random weights, so that it changes the output."""
    branch = SprintControlNet(**config)
    for name in ("patch_embed", "time_embed", "caption_projection", "caption_norm"):
        getattr(branch, name).load_state_dict(getattr(base, name).state_dict())
    for linear in (branch.input_block, *branch.controlnet_blocks):
        linear.reset_parameters()
    return branch


def build_random_sana(size: str, seed: int = 0, device: str = "cpu", *, teacher: bool = False) -> dict[str, Any]:
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
        c["controlnet"] = random_branch(c["transformer"], controlnet_config(size))
        c["vae"] = AutoencoderDC(**dc_ae_config(size))
        c["vae_lite"] = AutoencoderDC(**dc_ae_config(size, lite=True))
        if teacher:
            c["teacher_transformer"] = SanaTransformer2DModel(**transformer_config(size, sprint=False))
            c["teacher_controlnet"] = random_branch(c["teacher_transformer"], controlnet_config(size, sprint=False))
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


def save_random_sana(size: str, folder: str | Path, seed: int = 0) -> dict[str, Path]:
    """Seeded random components laid out like the hub: sprint/ (a SanaSprintPipeline folder), dc-ae-lite/,
    controlnet/ (a SprintControlNet folder) and hed/checkpoints/hed.pth (an NVlabs SANA 1.0 + HED checkpoint)."""
    from diffusers import SanaSprintPipeline, SCMScheduler

    folder = Path(folder)
    c = build_random_sana(size, seed, teacher=True)
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


def _byte_unicode() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for bytes (GPT-2 / CLIP convention)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = (b for b in range(256) if b not in printable)
    return [chr(b) for b in printable] + [chr(256 + i) for i, _ in enumerate(extra)]


def make_clip_tokenizer() -> CLIPTokenizer:
    """A CLIP tokenizer with a generated byte-level vocab (each char, each char + </w>, BOS, EOS) and no merges:
    real CLIP text handling without downloading a vocabulary; EOS has the largest id, as in CLIP."""
    vocab: dict[str, int] = {}
    for suffix in ("", "</w>"):
        for char in _byte_unicode():
            vocab[char + suffix] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=TOKENIZER_MAX_LENGTH)


def build_random_sd(kind: str, size: str, seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Seeded random diffusers components (unet, controlnet, vae, taesd, text encoder(s), tokenizer(s), scheduler).
    `full` uses the published architectures, so timings are real-size; `tiny` runs a 256 px frame in milliseconds."""
    if kind not in KINDS or size not in SIZES:
        raise ValueError(f"kind must be one of {KINDS} and size one of {SIZES}, got {kind!r}, {size!r}")
    torch.manual_seed(seed)
    tokenizer = make_clip_tokenizer()
    components: dict[str, Any] = {}
    with torch.device(device):
        for i, (cls, config) in enumerate(text_configs(kind, size, len(tokenizer))):
            suffix = f"_{i + 1}" if i else ""
            components[f"text_encoder{suffix}"] = cls(config).eval()
            components[f"tokenizer{suffix}"] = tokenizer
        components["unet"] = UNet2DConditionModel(**unet_config(kind, size))
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
        components["vae"] = AutoencoderKL(**vae_config(kind, size))
        components["taesd"] = AutoencoderTiny(**taesd_config(size))
    components["scheduler"] = scheduler_for(kind)
    return components


def save_random_sd(kind: str, size: str, folder: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write seeded random components like the hub repos: base/ (a pipeline folder with model_index.json),
    controlnet/ and taesd/. Returns each role's folder."""
    folder = Path(folder)
    c = build_random_sd(kind, size, seed)
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
