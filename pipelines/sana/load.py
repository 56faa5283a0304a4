"""Loading Sana components from the hub or from folders laid out like hub repos (diffusers or NVlabs checkpoints)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderDC, SanaControlNetModel, SanaTransformer2DModel
from torch import nn
from transformers import AutoTokenizer, Gemma2Model

from pipelines.sana import convert as sana_convert
from pipelines.sana.controlnet import SprintControlNet, controlnet_from_diffusers
from pipelines.sana.flow import SanaFlow
from pipelines.spec import ModelError, ModelSpec, guarded, hub_offline, is_local


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
        place(module, "cpu", dtype)
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


def place(module: nn.Module | None, device: torch.device | str, dtype: torch.dtype) -> None:
    """Cast (where it is, before a move shrinks the copy), move, freeze, eval mode."""
    if module is None:
        return
    if module.dtype != dtype:
        module.to(dtype=dtype)
    module.to(device=device)
    module.eval().requires_grad_(False)
