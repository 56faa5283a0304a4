"""Frozen teachers as TrigFlow models F(x_t / sigma_d, t, cond), and what the trainer needs from each family.

Families: "sana" (diffusers SanaTransformer2DModel, optionally with a SanaControlNetModel branch), "unet" (SD-style
diffusers UNet2DConditionModel, epsilon or v prediction, optionally with a ControlNetModel), "sketch_tiny" (the
project's small pixel-space model, pipelines/tiny.py) and any nn.Module factory given to `register_teacher`.
Every family is a flow or VP velocity model turned into TrigFlow form without retraining (SanaMSCM; VP with
alpha = cos t, sigma = sin t is TrigFlow on unit-scale data), so one Method code path serves all of them.
"""

# b batch, c channels, h w latent height width, n caption tokens, d caption width

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pipelines.parameterization import SIGMA_D, FlowAsTrigFlow, append_dims
from pipelines.registry import hub_offline, is_local

SANA_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
UNET_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class TeacherError(ValueError):
    """A teacher cannot be built; the message names what is missing and is meant for the person running the job."""


# ---- data shared by the families -----------------------------------------------------------------------------------


class SyntheticPairs(torch.utils.data.Dataset):
    """Random samples and conditions of fixed shapes, drawn once from `seed` (pipeline checks, benchmarks).

    Items: "x0" (TrigFlow scale, sigma_d * N(0, I)) and one N(0, I) tensor per condition key."""

    def __init__(self, sample_shape: Sequence[int], cond_shapes: Mapping[str, Sequence[int]], *, size: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.tensors = {"x0": SIGMA_D * torch.randn(size, *sample_shape, generator=g)}
        for key, shape in cond_shapes.items():
            self.tensors[key] = torch.randn(size, *shape, generator=g)

    def __len__(self) -> int:
        return self.tensors["x0"].shape[0]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {key: value[index] for key, value in self.tensors.items()}


def latent_to_images(x: Tensor) -> Tensor:
    """Latents seen without a decoder: channels 0-2 (or 0 thrice), min-max per image -> uint8 (b, h, w, 3)."""
    x = x.float()
    rgb = x[:, :3] if x.shape[1] >= 3 else x[:, :1].expand(-1, 3, -1, -1)
    low = rgb.amin(dim=(1, 2, 3), keepdim=True)
    high = rgb.amax(dim=(1, 2, 3), keepdim=True)
    return ((rgb - low) / (high - low).clamp_min(1e-8) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)


def pixels_to_images(x: Tensor) -> Tensor:
    """Images in [-1, 1] (b, 3, h, w) -> uint8 (b, h, w, 3)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)


def spread_blocks(num_layers: int, count: int = 4) -> tuple[int, ...]:
    """LADD's hooked blocks: SANA-Sprint's [2, 8, 14, 19] when the model is that deep, else `count` spread evenly."""
    if num_layers >= 20:
        return (2, 8, 14, 19)
    return tuple(sorted({round(i * (num_layers - 1) / max(count - 1, 1)) for i in range(count)}))


# ---- the adapter every family returns ------------------------------------------------------------------------------


@dataclass
class Teacher:
    """A built frozen teacher.

    model: F(x, t, cond) in TrigFlow form (frozen, eval); trainable roles initialised from the teacher copy it.
    sample_shape / cond_shapes: per-sample shapes of x0 and of the condition tensors (synthetic data).
    uncond_keys: condition keys replaced by zeros for the CFG branch (the null caption).
    backend: the pipelines.registry backend that loads this family's students.
    """

    kind: str
    model: nn.Module
    sample_shape: tuple[int, ...]
    cond_shapes: dict[str, tuple[int, ...]]
    uncond_keys: tuple[str, ...]
    backend: str
    resolution: int
    lora_targets: tuple[str, ...]
    layers: dict[str, int] = field(default_factory=dict)  # hookable feature layer (in `model`) -> channels
    default_blocks: tuple[int, ...] = ()
    decode: Callable[[Tensor], Tensor] = latent_to_images
    save: Callable[..., dict[str, str]] | None = None
    samplers: tuple[str, ...] = ("trigflow",)  # what `export` can write (the backend's sampling modes)

    def features(self, blocks: Sequence[int] = ()) -> tuple[list[str], list[int]]:
        """LADD feature layers (names in `model`) and their channel counts; `blocks` index `layers` (() = default)."""
        names = list(self.layers)
        if not names:
            raise TeacherError(f"teacher kind {self.kind!r} exposes no token features for a LADD discriminator")
        blocks = tuple(blocks) or self.default_blocks or tuple(range(len(names)))
        bad = [b for b in blocks if not 0 <= b < len(names)]
        if bad:
            raise TeacherError(f"teacher.feature_blocks: {bad} out of range; the teacher has {len(names)} blocks")
        return [names[b] for b in blocks], [self.layers[names[b]] for b in blocks]

    def synthetic(self, *, size: int, seed: int) -> SyntheticPairs:
        """Random x0 and conditions of this teacher's shapes."""
        return SyntheticPairs(self.sample_shape, self.cond_shapes, size=size, seed=seed)

    def to_images(self, x0: Tensor) -> Tensor:
        """TrigFlow-scale samples (b, ...) -> uint8 RGB (b, h, w, 3) for previews."""
        return self.decode(x0 / SIGMA_D)

    def export(self, student: nn.Module, folder: Path, sampler: str = "trigflow") -> dict[str, str]:
        """Write a student (a module shaped like `model`) under `folder`; returns manifest components -> subfolders.
        sampler: how the backend must sample it, "trigflow" (consistency steps) or "flow" (a multi-step flow model,
        which only registered teachers that declare `samplers` including it can export)."""
        if self.save is None:
            raise TeacherError(f"teacher kind {self.kind!r} has no export format")
        if sampler not in self.samplers:
            known = " or ".join(self.samplers)
            raise TeacherError(f"teacher kind {self.kind!r} exports {known} models, not {sampler!r}")
        return self.save(student, folder, sampler) if sampler != "trigflow" else self.save(student, folder)


# ---- Sana ---------------------------------------------------------------------------------------------------------


class SanaFlow(nn.Module):
    """v(x_s, s, cond) from a diffusers SanaTransformer2DModel (+ SanaControlNetModel).

    cond: "text" (b, n, d) caption embeddings, "control" (b, c, h, w) control latents (with a ControlNet),
    "guidance" (b,) CFG scale for guidance-embedding students (default `default_guidance`).
    """

    def __init__(
        self,
        transformer: nn.Module,
        controlnet: nn.Module | None = None,
        *,
        timestep_scale: float = 1.0,
        controlnet_timestep_scale: float = 1000.0,
        conditioning_scale: float = 1.0,
        default_guidance: float = 4.5,
    ):
        super().__init__()
        self.transformer, self.controlnet = transformer, controlnet
        self.timestep_scale = timestep_scale  # dense time (Sprint teachers: c_noise(s) = s) or Sana 1.0's 1000 s
        self.controlnet_timestep_scale = controlnet_timestep_scale
        self.conditioning_scale = conditioning_scale
        self.default_guidance = default_guidance

    def forward(self, x_s: Tensor, s: Tensor, cond: Mapping[str, Tensor]) -> Tensor:
        dtype = self.transformer.dtype
        x, text = x_s.to(dtype), cond["text"].to(dtype)
        kwargs: dict[str, Any] = {}
        config = self.transformer.config
        if config.guidance_embeds:
            guidance = cond.get("guidance")
            guidance = torch.full_like(s, self.default_guidance) if guidance is None else guidance
            kwargs["guidance"] = (guidance * config.guidance_embeds_scale).to(dtype)
        if self.controlnet is not None:
            kwargs["controlnet_block_samples"] = self.controlnet(
                x,
                encoder_hidden_states=text,
                timestep=s * self.controlnet_timestep_scale,
                controlnet_cond=cond["control"].to(dtype),
                conditioning_scale=self.conditioning_scale,
                return_dict=False,
            )[0]
        timestep = s * self.timestep_scale
        v = self.transformer(x, encoder_hidden_states=text, timestep=timestep, return_dict=False, **kwargs)[0]
        return v.to(x_s.dtype)


def sana_config(size: str) -> dict[str, Any]:
    """SanaTransformer2DModel kwargs: "full" = the Sprint 0.6B teacher (notes/sana_sprint.md 1.1), "tiny" = tests."""
    if size == "full":
        return dict(
            in_channels=32,
            out_channels=32,
            num_attention_heads=36,
            attention_head_dim=32,
            num_layers=28,
            num_cross_attention_heads=16,
            cross_attention_head_dim=72,
            cross_attention_dim=1152,
            caption_channels=2304,
            mlp_ratio=2.5,
            sample_size=32,
            patch_size=1,
            qk_norm="rms_norm_across_heads",
            interpolation_scale=None,
        )
    return dict(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=2,
        num_cross_attention_heads=2,
        cross_attention_head_dim=8,
        cross_attention_dim=16,
        caption_channels=8,
        sample_size=8,
        patch_size=1,
        qk_norm="rms_norm_across_heads",
        interpolation_scale=None,
    )


def random_sana(size: str, *, controlnet: bool, seed: int) -> tuple[nn.Module, nn.Module | None]:
    """Seeded random Sana transformer (+ ControlNet: 7 blocks at "full", 1 at "tiny").

    The ControlNet's zero-initialised input and output projections are re-initialised so that a random control
    branch changes the output (a zero branch would leave its conditioning untested)."""
    from diffusers import SanaControlNetModel, SanaTransformer2DModel

    torch.manual_seed(seed)
    config = sana_config(size)
    transformer = SanaTransformer2DModel(**config)
    branch = None
    if controlnet:
        keep = {k: v for k, v in config.items() if k != "qk_norm"}
        branch = SanaControlNetModel(**{**keep, "num_layers": 7 if size == "full" else 1})
        for linear in (branch.input_block, *branch.controlnet_blocks):
            linear.reset_parameters()
    return transformer, branch


def _from_pretrained(cls: Any, path: str, subfolder: str, role: str, dtype: torch.dtype) -> nn.Module:
    """`cls.from_pretrained` on a model root holding `subfolder/` (hub ids too) or on the model's own folder.

    Local folders are written ./x, ../x, /x or ~/x (pipelines.registry.is_local); failures become TeacherError."""
    kwargs: dict[str, Any] = {"torch_dtype": dtype, "local_files_only": hub_offline(), "subfolder": subfolder}
    if is_local(path):
        root = Path(path).expanduser()
        if not root.exists():
            raise TeacherError(f"{role}: {path} does not exist")
        path = str(root)
        if not (root / subfolder).is_dir():
            kwargs.pop("subfolder")
    try:
        return cls.from_pretrained(path, **kwargs)
    except Exception as error:  # missing files, offline hub, wrong config all mean "cannot load this teacher"
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TeacherError(f"{role}: cannot load {path} as {cls.__name__}: {first}") from error


def _save_sana(student: nn.Module, folder: Path) -> dict[str, str]:
    flow = student.flow_model
    flow.transformer.save_pretrained(folder / "transformer", safe_serialization=True)
    components = {"transformer": "transformer"}
    if flow.controlnet is not None:
        flow.controlnet.save_pretrained(folder / "controlnet", safe_serialization=True)
        components["controlnet"] = "controlnet"
    return components


def _dc_ae_decoder(path: str, device: torch.device) -> Callable[[Tensor], Tensor]:
    from diffusers import AutoencoderDC

    vae = _from_pretrained(AutoencoderDC, path, "vae", "teacher.vae", torch.float32).to(device).eval()

    @torch.no_grad()
    def decode(latents: Tensor) -> Tensor:
        return pixels_to_images(vae.decode(latents.float() / vae.config.scaling_factor).sample)

    return decode


def build_sana(
    *,
    path: str,
    random: str,
    random_seed: int,
    controlnet: bool,
    controlnet_path: str,
    timestep_scale: float,
    controlnet_timestep_scale: float,
    conditioning_scale: float,
    default_guidance: float,
    text_tokens: int,
    vae: str,
    device: torch.device,
) -> Teacher:
    """A Sana teacher from a diffusers folder (model root with transformer/ or the transformer folder) or random."""
    from diffusers import SanaControlNetModel, SanaTransformer2DModel

    if random:
        transformer, branch = random_sana(random, controlnet=controlnet, seed=random_seed)
    else:
        transformer = _from_pretrained(SanaTransformer2DModel, path, "transformer", "teacher.path", torch.float32)
        branch = None
        if controlnet:
            branch = _from_pretrained(
                SanaControlNetModel, controlnet_path, "controlnet", "teacher.controlnet_path", torch.float32
            )
    flow = SanaFlow(
        transformer,
        branch,
        timestep_scale=timestep_scale,
        controlnet_timestep_scale=controlnet_timestep_scale,
        conditioning_scale=conditioning_scale,
        default_guidance=default_guidance,
    )
    config = transformer.config
    latent = (config.in_channels, config.sample_size, config.sample_size)
    cond_shapes = {"text": (text_tokens, config.caption_channels)}
    if branch is not None:
        cond_shapes["control"] = latent
    width = config.num_attention_heads * config.attention_head_dim
    layers = {f"flow_model.transformer.transformer_blocks.{i}": width for i in range(config.num_layers)}
    return Teacher(
        kind="sana",
        model=FlowAsTrigFlow(flow),
        sample_shape=latent,
        cond_shapes=cond_shapes,
        uncond_keys=("text",),
        backend="sana",
        resolution=32 * config.sample_size,  # DC-AE f32
        lora_targets=SANA_LORA_TARGETS,
        layers=layers,
        default_blocks=spread_blocks(config.num_layers),
        decode=_dc_ae_decoder(vae, device) if vae else latent_to_images,
        save=_save_sana,
    )


# ---- SD-style UNets -----------------------------------------------------------------------------------------------


class VPAsTrigFlow(nn.Module):
    """F(x_t / sigma_d, t, cond) from a DDPM-trained UNet (epsilon or v prediction) without retraining.

    x_t / sigma_d = cos t x0 + sin t eps on unit-scale latents is the VP path with alpha = cos t, sigma = sin t, so
    F = cos t eps - sin t x0 = v (v prediction), or (eps - sin t x) / cos t from epsilon. The discrete timestep is
    the one with the same log-SNR, log cot^2 t, interpolated on the training schedule; times beyond the schedule's
    last step are clamped to it (cos t >= sqrt(alphas_cumprod[-1])), the same pure-noise stand-in SD-Turbo uses.
    cond: "text" (b, n, d) encoder states, "control" (b, 3, 8h, 8w) ControlNet image in [0, 1] (with a ControlNet).
    t in [0, pi/2] (no TwinFlow sign branch: a DDPM UNet has no negative time).
    """

    def __init__(
        self,
        unet: nn.Module,
        alphas_cumprod: Tensor,
        prediction_type: str,
        controlnet: nn.Module | None = None,
        *,
        conditioning_scale: float = 1.0,
    ):
        super().__init__()
        if prediction_type not in ("epsilon", "v_prediction"):
            raise TeacherError(f"teacher: UNet prediction_type {prediction_type!r} is not epsilon or v_prediction")
        self.unet, self.controlnet = unet, controlnet
        self.prediction_type = prediction_type
        self.conditioning_scale = conditioning_scale
        log_snr = torch.log(alphas_cumprod.double() / (1 - alphas_cumprod.double()))
        self.register_buffer("log_snr_ascending", log_snr.flip(0).contiguous(), persistent=False)  # falls with n
        self.t_max = math.atan(math.exp(-0.5 * log_snr[-1].item()))  # TrigFlow time of the schedule's last step

    def timestep(self, t: Tensor) -> Tensor:
        """Continuous DDPM timestep n with log-SNR_n = log cot^2 t, clamped to the schedule's range."""
        ascending = self.log_snr_ascending
        log_snr = (2 * torch.log(torch.cos(t.double()) / torch.sin(t.double()).clamp_min(1e-12))).clamp(
            ascending[0], ascending[-1]
        )
        hi = torch.searchsorted(ascending, log_snr).clamp(1, len(ascending) - 1)
        frac = (log_snr - ascending[hi - 1]) / (ascending[hi] - ascending[hi - 1])
        return (len(ascending) - 1 - (hi - 1 + frac)).to(t.dtype)

    def forward(self, x: Tensor, t: Tensor, cond: Mapping[str, Tensor]) -> Tensor:
        t_c = t.clamp(max=self.t_max)
        cos_c, sin_c = torch.cos(append_dims(t_c, x)), torch.sin(append_dims(t_c, x))
        dtype = self.unet.dtype
        timestep = self.timestep(t_c)
        text = cond["text"].to(dtype)
        kwargs: dict[str, Any] = {}
        if self.controlnet is not None:
            down, mid = self.controlnet(
                x.to(dtype),
                timestep,
                encoder_hidden_states=text,
                controlnet_cond=cond["control"].to(dtype),
                conditioning_scale=self.conditioning_scale,
                return_dict=False,
            )
            kwargs = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        out = self.unet(x.to(dtype), timestep, encoder_hidden_states=text, return_dict=False, **kwargs)[0].to(x.dtype)
        # (x0, eps) estimates read at t_c, then F = cos t eps - sin t x0 at the asked t (= v when t = t_c)
        if self.prediction_type == "v_prediction":
            x0, eps = cos_c * x - sin_c * out, sin_c * x + cos_c * out
        else:
            x0, eps = (x - sin_c * out) / cos_c, out
        return torch.cos(append_dims(t, x)) * eps - torch.sin(append_dims(t, x)) * x0


def _save_unet(student: nn.Module, folder: Path) -> dict[str, str]:
    student.unet.save_pretrained(folder / "unet", safe_serialization=True)
    components = {"unet": "unet"}
    if student.controlnet is not None:
        student.controlnet.save_pretrained(folder / "controlnet", safe_serialization=True)
        components["controlnet"] = "controlnet"
    return components


def build_unet(
    *, path: str, random: str, random_seed: int, controlnet: bool, controlnet_path: str, conditioning_scale: float
) -> Teacher:
    """An SD 1.5 / 2.1-style teacher: a pipeline folder (unet/, scheduler/) or seeded random SD 2.1 components."""
    from diffusers import ControlNetModel, DDPMScheduler, UNet2DConditionModel

    if random:
        from pipelines.testing import build_random_sd

        parts = build_random_sd("sd", random, random_seed)
        unet, branch, scheduler = parts["unet"], parts["controlnet"] if controlnet else None, parts["scheduler"]
        scheduler_config = dict(scheduler.config)
    else:
        unet = _from_pretrained(UNet2DConditionModel, path, "unet", "teacher.path", torch.float32)
        branch = None
        if controlnet:
            branch = _from_pretrained(
                ControlNetModel, controlnet_path, "controlnet", "teacher.controlnet_path", torch.float32
            )
        try:
            scheduler_config = DDPMScheduler.load_config(path, subfolder="scheduler")
        except Exception as error:  # no scheduler/ folder: the VP schedule is unknown
            raise TeacherError(f"teacher.path: cannot read {path}/scheduler ({error})") from error
    if unet.config.addition_embed_type is not None:
        raise TeacherError("teacher.kind 'unet': SDXL-style added conditions are not supported yet")
    scheduler = DDPMScheduler.from_config(scheduler_config)
    model = VPAsTrigFlow(
        unet,
        scheduler.alphas_cumprod,
        scheduler.config.prediction_type,
        branch,
        conditioning_scale=conditioning_scale,
    )
    side = unet.config.sample_size
    cond_shapes = {"text": (8, unet.config.cross_attention_dim)}
    if branch is not None:
        cond_shapes["control"] = (3, 8 * side, 8 * side)
    return Teacher(
        kind="unet",
        model=model,
        sample_shape=(unet.config.in_channels, side, side),
        cond_shapes=cond_shapes,
        uncond_keys=("text",),
        backend="sd",
        resolution=8 * side,
        lora_targets=UNET_LORA_TARGETS,
        save=_save_unet,
    )


# ---- registered module factories ----------------------------------------------------------------------------------


Shape = tuple[int, ...]


@dataclass(frozen=True)
class TeacherEntry:
    """A registered teacher family built from an nn.Module factory.

    factory(path) -> a flow-matching velocity model v(x_s, s, cond) (path None: random weights; the trainer seeds
    torch first). sample_shape / cond_shapes: per-sample shapes, or functions of the built model giving them;
    uncond_keys: zeroed for CFG's null branch; features: (layer name in the flow model, channels) a LADD
    discriminator may hook (token features (b, n, c)); to_images: unit-scale samples -> uint8 (b, h, w, 3);
    save(flow_model, folder[, sampler]) -> manifest components (relative folders); samplers: what save can write
    ("trigflow" students; "flow" for multi-step models from the flow_matching method); random_factory(size): the
    module for teacher.random = size; backend: the registry backend.
    """

    factory: Callable[[str | None], nn.Module]
    sample_shape: Shape | Callable[[nn.Module], Shape]
    cond_shapes: Mapping[str, Shape] | Callable[[nn.Module], Mapping[str, Shape]] = field(default_factory=dict)
    uncond_keys: tuple[str, ...] = ()
    features: tuple[tuple[str, int], ...] | Callable[[nn.Module], tuple[tuple[str, int], ...]] = ()
    lora_targets: tuple[str, ...] = ()
    resolution: int = 0
    backend: str = ""
    to_images: Callable[[Tensor], Tensor] | None = None
    random_factory: Callable[[str], nn.Module] | None = None  # random ("tiny" | "full") -> module; None: factory(None)
    save: Callable[..., dict[str, str]] | None = None
    samplers: tuple[str, ...] = ("trigflow",)  # save(flow_model, folder, sampler) is called for the others


REGISTERED: dict[str, TeacherEntry] = {}


def register_teacher(name: str, factory: Callable[[str | None], nn.Module], **entry: Any) -> None:
    """Make `teacher.kind = name` build `factory(path)`; keyword arguments are TeacherEntry fields."""
    if name in ("sana", "unet"):
        raise ValueError(f"{name!r} is a built-in teacher family")
    REGISTERED[name] = TeacherEntry(factory=factory, **entry)


def _save_module(kind: str) -> Callable[[nn.Module, Path], dict[str, str]]:
    def save(student: nn.Module, folder: Path) -> dict[str, str]:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in student.flow_model.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps({"teacher_kind": kind, "parameterization": "flow"}, indent=2))
        return {"weights": "."}

    return save


def build_registered(name: str, *, path: str, random: str, random_seed: int) -> Teacher:
    """A teacher from a registered factory."""
    entry = REGISTERED[name]
    if path and is_local(path) and not Path(path).expanduser().exists():
        raise TeacherError(f"teacher.path: {path} does not exist")
    torch.manual_seed(random_seed)
    if random and entry.random_factory is not None:
        flow = entry.random_factory(random)
    else:
        flow = entry.factory(None if random else path)
    sample_shape = tuple(entry.sample_shape(flow) if callable(entry.sample_shape) else entry.sample_shape)
    cond_shapes = entry.cond_shapes(flow) if callable(entry.cond_shapes) else entry.cond_shapes
    features = entry.features(flow) if callable(entry.features) else entry.features
    decode = entry.to_images
    if decode is None:
        decode = pixels_to_images if len(sample_shape) == 3 and sample_shape[0] == 3 else latent_to_images
    save = _save_module(name)
    if entry.save is not None:
        save = lambda student, folder, *sampler: entry.save(student.flow_model, folder, *sampler)  # noqa: E731
    return Teacher(
        kind=name,
        model=FlowAsTrigFlow(flow),
        sample_shape=sample_shape,
        cond_shapes={k: tuple(v) for k, v in cond_shapes.items()},
        uncond_keys=tuple(entry.uncond_keys),
        backend=entry.backend,
        resolution=entry.resolution or (sample_shape[-1] if len(sample_shape) == 3 else 0),
        lora_targets=tuple(entry.lora_targets),
        layers={f"flow_model.{layer}": channels for layer, channels in features},
        decode=decode,
        save=save,
        samplers=tuple(entry.samplers),
    )


# ---- the project's own small model (pipelines/tiny.py) -------------------------------------------------------------


def _sketch_tiny(path: str | None) -> nn.Module:
    """SketchTinyNet from a save_tiny folder, or random at test size (16 px, two levels, no attention)."""
    from pipelines.tiny import SketchTinyNet, TinyConfig, load_tiny

    if path is None:
        return SketchTinyNet(TinyConfig(resolution=16, channels=(8, 16), blocks=1, attention=False, emb_dim=32))
    return load_tiny(Path(path).expanduser())


def _random_sketch_tiny(size: str) -> nn.Module:
    """random = "tiny": the 16 px test network; "full": the architecture the presets train (JiTConfig's defaults,
    SketchJiT at 256 px)."""
    from pipelines.tiny import JiTConfig, SketchJiT

    return _sketch_tiny(None) if size == "tiny" else SketchJiT(JiTConfig())


def _save_sketch_tiny(flow: nn.Module, folder: Path, sampler: str = "trigflow") -> dict[str, str]:
    """save_tiny with the config's kind = sampler: "trigflow" (a distilled student, consistency steps) or "flow"
    (a teacher, Euler steps with CFG); TinyEngine reads it."""
    from pipelines.tiny import save_tiny

    save_tiny(flow, folder, extra={"kind": sampler})
    return {"weights": "."}


def _tiny_side(flow: nn.Module) -> int:
    return flow.config.resolution


def _tiny_features(flow: nn.Module) -> tuple[tuple[str, int], ...]:
    """LADD's discriminator taps. SketchJiT: three transformer blocks spread over its depth (tokens (b, n, d)).
    U-Net: the last encoder level, the middle, the first decoder level above it (conv maps, read as raster-order
    tokens by DiscHeads)."""
    if flow.arch == "jit":
        return tuple((f"blocks.{block}", flow.config.width) for block in spread_blocks(flow.config.depth, 3))
    chans, last = flow.config.channels, len(flow.config.channels) - 1
    return ((f"down.{last}.0", chans[last]), ("mid.1", chans[last]), (f"up.{last - 1}.0", chans[1]))


register_teacher(
    "sketch_tiny",
    _sketch_tiny,
    sample_shape=lambda flow: (3, _tiny_side(flow), _tiny_side(flow)),
    cond_shapes=lambda flow: {"sketch": (1, _tiny_side(flow), _tiny_side(flow)), "text": (flow.config.text_dim,)},
    uncond_keys=("text",),
    features=_tiny_features,
    backend="tiny",
    save=_save_sketch_tiny,
    samplers=("trigflow", "flow"),
    random_factory=_random_sketch_tiny,
)


# ---- entry point --------------------------------------------------------------------------------------------------


def teacher_kinds() -> list[str]:
    """Every `teacher.kind` this build accepts."""
    return ["sana", "unet", *sorted(REGISTERED)]


def build_teacher(
    *,
    kind: str,
    path: str = "",
    random: str = "",
    random_seed: int = 0,
    controlnet: bool = False,
    controlnet_path: str = "",
    conditioning_scale: float = 1.0,
    timestep_scale: float = 1.0,
    controlnet_timestep_scale: float = 1000.0,
    default_guidance: float = 4.5,
    text_tokens: int = 8,
    dtype: str = "float32",
    vae: str = "",
    device: torch.device | str = "cpu",
) -> Teacher:
    """Build a frozen teacher (requires_grad False, eval, `dtype` on `device`); TeacherError names what is wrong."""
    device = torch.device(device)
    if kind == "sana":
        teacher = build_sana(
            path=path,
            random=random,
            random_seed=random_seed,
            controlnet=controlnet,
            controlnet_path=controlnet_path,
            timestep_scale=timestep_scale,
            controlnet_timestep_scale=controlnet_timestep_scale,
            conditioning_scale=conditioning_scale,
            default_guidance=default_guidance,
            text_tokens=text_tokens,
            vae=vae,
            device=device,
        )
    elif kind == "unet":
        teacher = build_unet(
            path=path,
            random=random,
            random_seed=random_seed,
            controlnet=controlnet,
            controlnet_path=controlnet_path,
            conditioning_scale=conditioning_scale,
        )
    elif kind in REGISTERED:
        if controlnet:
            raise TeacherError(f"teacher.controlnet: teacher kind {kind!r} takes its conditions from its own factory")
        teacher = build_registered(kind, path=path, random=random, random_seed=random_seed)
    else:
        raise TeacherError(f"teacher.kind: unknown teacher {kind!r}; known: {', '.join(teacher_kinds())}")
    teacher.model.to(device=device, dtype=DTYPES[dtype]).eval().requires_grad_(False)
    return teacher


def trainable_copy(module: nn.Module) -> nn.Module:
    """A float32 trainable copy of a frozen teacher network (init="teacher" roles with full weights)."""
    return copy.deepcopy(module).float().train().requires_grad_(True)
