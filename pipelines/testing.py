"""Seeded random-weight components of the real model classes at toy or real size, shared by tests and benches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderDC, SanaTransformer2DModel
from torch import Tensor
from transformers import Gemma2Model

from pipelines.parameterization import SIGMA_D
from pipelines.sana import convert as sana_convert
from pipelines.sana.config import controlnet_config, dc_ae_config, gemma_config, transformer_config
from pipelines.sana.controlnet import SprintControlNet
from pipelines.sana.text import make_gemma_tokenizer


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
