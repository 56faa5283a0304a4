"""Distillation job configuration: frozen dataclasses loaded from TOML presets plus `--key=value` overrides.

    cfg = load_config("distillation/presets/tiny_scm_ladd.toml", ["--max_steps=2", "--optim.lr=1e-3"])

Every key is checked before a job starts: an unknown key or a value of the wrong type is a ConfigError naming the
dotted key. Method options (the `[method]` table beside `name`) are checked against the method's constructor.
"""

from __future__ import annotations

import dataclasses
import inspect
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pipelines.registry import is_local

PRECISIONS = ("no", "bf16", "fp16")
DTYPES = ("float32", "bfloat16", "float16")
RANDOM_SIZES = ("", "tiny", "full")
DATA_KINDS = ("synthetic", "sketch_pairs", "image_folder")
SELECT_METRICS = ("fd_effnet", "fd_colour")  # lower is better (distillation/validate.py)
# image_folder line extractors (distillation.data.folder_lines): ours, then controlnet-aux's (pipelines.lines.AUX)
DATA_SKETCHES = ("canny", "lineart", "hed", "aux_hed", "aux_pidinet", "aux_lineart")
# Keys a resumed job may change (schedules of side effects, not of the training state).
RESUMABLE_KEYS = frozenset(
    {
        "max_steps",
        "log_every",
        "checkpoint_every",
        "keep_checkpoints",
        "nan_budget",
        "preview",
        "select",
        "export",
        "teacher.licence",
        "time_limit_s",
    }
)


class ConfigError(ValueError):
    """A preset or override is invalid; the message names the key and is meant for the person running the job."""


@dataclass(frozen=True)
class TeacherConfig:
    """The frozen teacher (teachers.build_teacher)."""

    kind: str = "sana"  # "sana", "unet" or a name given to teachers.register_teacher
    path: str = ""  # weights folder (diffusers layout) or the factory's argument; "" with `random`
    random: str = ""  # "tiny" | "full": seeded random weights instead of `path` (pipeline checks, benchmarks)
    random_seed: int = 0
    controlnet: bool = False  # Sana: add a SanaControlNetModel branch (cond["control"] latents)
    controlnet_path: str = ""  # its folder; "" with `random`
    conditioning_scale: float = 1.0  # ControlNet residual scale
    dense_time: bool = True  # Sana time input: s (Sprint teachers' dense time) or 1000 s (SANA 1.0); a control
    # branch keeps its own (its config's dense_time), as the engine reads it
    default_guidance: float = 4.5  # guidance-embedding input when a condition carries no "guidance"
    dtype: str = "float32"  # storage dtype of the frozen weights (trainable copies are float32)
    feature_blocks: tuple[int, ...] = ()  # LADD: hooked blocks; () = four spread like Sprint's [2, 8, 14, 19]
    vae: str = ""  # optional decoder folder for previews (Sana: AutoencoderDC); "" shows latent channels
    licence: str = ""  # the teacher's licence, copied into the exported manifest


@dataclass(frozen=True)
class StudentConfig:
    """How trainable roles initialised from the teacher are built."""

    lora_rank: int = 0  # 0: full copies of the teacher; > 0: LoRA adapters on the teacher's shared frozen base
    lora_alpha: float = 0.0  # LoRA scale numerator; 0 = rank (scale 1)
    lora_targets: tuple[str, ...] = ()  # module names to adapt; () = the teacher family's default
    gradient_checkpointing: bool = False  # diffusers checkpointing of trainable passes (never the no-grad JVP)
    init: str = ""  # a weights folder shaped like the teacher (e.g. an exported student) the student starts from
    # instead of the teacher: fine-tuning a student that already draws in 1 step; "" = the teacher (full copies only)


@dataclass(frozen=True)
class MethodConfig:
    """`name` is a key of distillation.methods.METHODS; `options` its constructor's keyword arguments."""

    name: str = "scm_ladd"
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OptimConfig:
    """AdamW per updated role."""

    lr: float = 1e-4
    role_lr: Mapping[str, float] = field(default_factory=dict)  # per-role learning rates, e.g. {heads = 1e-3}
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 0  # linear learning-rate warm-up
    schedule: str = "constant"  # after warm-up: "constant" or "cosine" (decays to 0 at max_steps)
    grad_clip: float = 1.0  # max global gradient norm per role update (SANA-Sprint: 0.1); 0 = no clipping


@dataclass(frozen=True)
class DataConfig:
    """Where x0 and the conditions come from."""

    kind: str = "synthetic"  # "synthetic": random latents + caption embeddings; "sketch_pairs": distillation.data;
    # "image_folder": a folder of images with optional same-stem .txt captions, prepared once (data.prepare_folder)
    path: str = ""  # sketch_pairs: the prepared folder (data/sketch_tiny/128); image_folder: the images' folder
    split: str = "train"  # sketch_pairs: the split read for training; "teacher_pool" = teacher samples (pool.py)
    sketch: str = "canny"  # image_folder: line extractor "canny" | "lineart" | "hed" (HED needs its weights)
    cache: str = ""  # image_folder: where prepared copies are kept; "" = data/cache/folders
    name_captions: bool = False  # image_folder: a picture without a .txt caption is captioned from its file name
    size: int = 64  # synthetic: items in the pool
    seed: int = 0  # synthetic pool and sampler permutations
    text_tokens: int = 8  # synthetic: caption length
    augment: bool = False  # sketch_pairs, image_folder: hand-drawn sketch variants
    guidance: tuple[float, ...] = ()  # teacher CFG scales drawn per sample (Sprint: 4, 4.5, 5); () = no CFG


@dataclass(frozen=True)
class PreviewConfig:
    """Preview grids at fixed seeds: one column per seed, a row per student step count (+ the teacher's row)."""

    every: int = 0  # steps between grids (also at step 0 and at the end); 0 = never
    seeds: tuple[int, ...] = (0, 1, 2, 3)
    steps: tuple[int, ...] = (1, 2)  # student sampling steps, one row each
    teacher_steps: int = 0  # teacher Euler steps for a reference row; 0 = no teacher row
    use_ema: bool = True  # preview the EMA student (what export writes)


@dataclass(frozen=True)
class SelectConfig:
    """Export the EMA student that scored best on a validation split, not the last one: an adversarial run
    oscillates, so where it stops decides the picture (distillation/validate.py)."""

    every: int = 0  # steps between validations (also at the end); 0 = export the last EMA student
    start: int = 0  # no validation before this step
    n: int = 200  # validation pairs: a seeded pick of the prepared *training* split (never the held-out one),
    # outside data.split's teacher pool when it is one
    steps: int = 1  # student sampling steps scored
    metric: str = "fd_effnet"  # lower is better: FD-EffNetLite0 against the validation pairs' real images, or
    # fd_colour: that FD x (2 - the share of the pairs' colour words the pictures show)
    seed: int = 0


@dataclass(frozen=True)
class ExportConfig:
    """EMA student -> weights folder + manifest at the end of the job."""

    enabled: bool = True
    models_dir: str = ""  # folder for <name>.toml and <name>/; "" = <run>/export
    name: str = ""  # manifest name; "" = the job name
    title: str = ""
    dtype: str = "float32"
    steps: int = 1  # default sampling steps written to the manifest
    allowed_steps: tuple[int, ...] = (1, 2, 3, 4)
    guidance: float = 0.0  # the manifest's guidance (the engine's CFG or embedded-guidance input)
    components: Mapping[str, str] = field(default_factory=dict)  # more manifest components (e.g. base, vae_lite)


@dataclass(frozen=True)
class JobConfig:
    """One distillation job."""

    name: str = "run"
    seed: int = 0
    max_steps: int = 100
    batch_size: int = 2  # per process
    mixed_precision: str = "no"  # "no" | "bf16" | "fp16" autocast
    ema_decay: float = 0.999  # EMA of the student's trainable weights; 0 = EMA is the current weights
    nan_budget: int = 20  # non-finite role updates skipped before the job fails
    log_every: int = 1  # steps between progress lines and metrics rows
    checkpoint_every: int = 0  # steps between checkpoints (also at the end and on SIGTERM); 0 = end only
    keep_checkpoints: int = 2
    time_limit_s: float = 0.0  # wall-clock budget of the whole run from its process's start (imports, set-up,
    # training, export); training ends early, as done, when the next step would not fit; 0 = none
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    preview: PreviewConfig = field(default_factory=PreviewConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    export: ExportConfig = field(default_factory=ExportConfig)


# ---- typed construction ------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def check_value(key: str, value: Any, tp: Any) -> Any:
    """`value` converted to the annotation `tp` (TOML arrays -> tuples, ints -> floats), or a ConfigError."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in args:
            if option is type(None) and value is None:
                return None
            try:
                return check_value(key, value, option)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {list(args)}, got {value!r}")
        return value
    if origin in (tuple, Sequence) or tp in (tuple, Sequence):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
            return tuple(check_value(f"{key}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args, strict=True)))
        item = args[0] if args else Any
        return tuple(check_value(f"{key}[{i}]", v, item) for i, v in enumerate(value))
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {type(value).__name__} {value!r}")
        key_tp, value_tp = args or (str, Any)
        return {check_value(key, k, key_tp): check_value(f"{key}.{k}", v, value_tp) for k, v in value.items()}
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        where = f"[{prefix.rstrip('.')}]" if prefix else "top level"
        raise ConfigError(f"unknown key {prefix + unknown[0]!r} ({where} knows: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{prefix + name}: expected a table, got {type(value).__name__} {value!r}")
            kwargs[name] = _build(tp, value, f"{prefix}{name}.")
        else:
            kwargs[name] = check_value(prefix + name, value, tp)
    return cls(**kwargs)


def method_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Options checked against the method's constructor; feature_layers/feature_channels are the trainer's."""
    from distillation.methods import METHODS

    if name not in METHODS:
        raise ConfigError(f"method.name: unknown method {name!r}; known: {', '.join(sorted(METHODS))}")
    cls = METHODS[name]
    params = {p.name: p for p in inspect.signature(cls.__init__).parameters.values() if p.kind is p.KEYWORD_ONLY}
    hints = typing.get_type_hints(cls.__init__)
    settable = sorted(set(params) - {"feature_layers", "feature_channels"})
    checked = {}
    for key, value in options.items():
        if key not in settable:
            raise ConfigError(f"unknown key 'method.{key}' ({name} options: {', '.join(settable)})")
        checked[key] = check_value(f"method.{key}", value, hints.get(key, Any))
    return checked


def _validate(cfg: JobConfig) -> None:
    from distillation.methods import METHODS

    choices = {
        "mixed_precision": (cfg.mixed_precision, PRECISIONS),
        "teacher.dtype": (cfg.teacher.dtype, DTYPES),
        "teacher.random": (cfg.teacher.random, RANDOM_SIZES),
        "data.kind": (cfg.data.kind, DATA_KINDS),
        "data.sketch": (cfg.data.sketch, DATA_SKETCHES),
        "optim.schedule": (cfg.optim.schedule, ("constant", "cosine")),
        "export.dtype": (cfg.export.dtype, DTYPES),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{key}: expected one of {list(allowed)}, got {value!r}")
    positive = {"max_steps": cfg.max_steps, "batch_size": cfg.batch_size, "log_every": cfg.log_every}
    positive |= {"keep_checkpoints": cfg.keep_checkpoints, "data.size": cfg.data.size}
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key}: must be at least 1, got {value}")
    if cfg.teacher.dtype != "float32" and cfg.mixed_precision == "no":
        raise ConfigError(
            f"teacher.dtype: {cfg.teacher.dtype} frozen weights need mixed_precision = 'bf16' or 'fp16' (autocast)"
        )
    if not 0 <= cfg.ema_decay < 1:
        raise ConfigError(f"ema_decay: must be in [0, 1), got {cfg.ema_decay}")
    min_batch = METHODS[cfg.method.name].min_batch
    if cfg.batch_size < min_batch:
        raise ConfigError(
            f"batch_size: {cfg.method.name} needs at least {min_batch} samples per process, got {cfg.batch_size}"
        )
    if cfg.student.init and cfg.student.lora_rank > 0:
        raise ConfigError("student.init: a student weights folder starts a full student; set student.lora_rank = 0")
    if cfg.time_limit_s < 0:
        raise ConfigError(f"time_limit_s: must be >= 0 (0 = no limit), got {cfg.time_limit_s}")
    if not cfg.teacher.random and not cfg.teacher.path:
        raise ConfigError("teacher.path: give a weights folder, or teacher.random = 'tiny' | 'full'")
    # teacher weights follow the manifests' rule: ./x, ../x, /x, ~/x are folders, anything else a hub id
    folders = {"teacher.path": cfg.teacher.path, "teacher.controlnet_path": cfg.teacher.controlnet_path}
    folders["teacher.vae"] = cfg.teacher.vae
    folders["student.init"] = cfg.student.init
    missing = {
        key: value for key, value in folders.items() if is_local(value) and not Path(value).expanduser().exists()
    }
    if cfg.data.kind in ("sketch_pairs", "image_folder") and not (
        cfg.data.path and Path(cfg.data.path).expanduser().exists()
    ):
        missing["data.path"] = cfg.data.path or "''"
    if missing:
        key, value = next(iter(missing.items()))
        raise ConfigError(f"{key}: {value} does not exist")
    if cfg.data.kind == "image_folder":
        if not Path(cfg.data.path).expanduser().is_dir():
            raise ConfigError(f"data.path: {cfg.data.path} is not a folder (give the folder that holds the images)")
        if cfg.data.sketch == "hed":
            from pipelines.hed import HED, INSTALL_HINT

            if not HED.available():
                raise ConfigError(
                    f"data.sketch: 'hed' needs the HED weights, which are not installed ({INSTALL_HINT}); "
                    "use data.sketch = 'canny' (or 'lineart') instead"
                )
    sel = cfg.select
    if sel.every:
        if sel.every < 0 or sel.start < 0 or sel.steps < 1:
            raise ConfigError("select.every, select.start: must be >= 0; select.steps: at least 1")
        if sel.metric not in SELECT_METRICS:
            raise ConfigError(f"select.metric: expected one of {list(SELECT_METRICS)}, got {sel.metric!r}")
        if sel.n < 10:
            raise ConfigError(f"select.n: FD needs at least 10 validation pairs, got {sel.n}")
        if cfg.data.kind not in ("sketch_pairs", "image_folder"):
            raise ConfigError(
                f"select: validation needs real images (data.kind sketch_pairs or image_folder), not {cfg.data.kind!r}"
            )
    if cfg.teacher.controlnet and not cfg.teacher.random and not cfg.teacher.controlnet_path:
        raise ConfigError("teacher.controlnet_path: needed for a ControlNet teacher without teacher.random")


def apply_override(data: dict[str, Any], item: str) -> None:
    """Set one `--a.b=value` on the nested dict; the value is read as TOML (1e-3, true, [1, 2]) or else a string."""
    if not item.startswith("--") or "=" not in item:
        raise ConfigError(f"override {item!r}: write it as --key=value (dotted keys for sections)")
    key, raw = item[2:].split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    *sections, leaf = key.split(".")
    node = data
    for i, section in enumerate(sections):
        node = node.setdefault(section, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {'.'.join(sections[: i + 1])} is not a section")
    node[leaf] = value


def config_from_dict(data: Mapping[str, Any]) -> JobConfig:
    """A validated JobConfig from nested plain data (a parsed preset with overrides applied)."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    method = data.pop("method", {})
    if not isinstance(method, dict):
        raise ConfigError(f"method: expected a table, got {type(method).__name__} {method!r}")
    method = dict(method)
    name = check_value("method.name", method.pop("name", MethodConfig.name), str)
    cfg = _build(JobConfig, data, "")
    cfg = dataclasses.replace(cfg, method=MethodConfig(name=name, options=method_options(name, method)))
    _validate(cfg)
    return cfg


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> JobConfig:
    """Read a TOML preset, apply `--key=value` overrides, check every key and type."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read preset {path}: {error.strerror or error}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from error
    for item in overrides:
        apply_override(data, item)
    return config_from_dict(data)


def config_to_dict(cfg: JobConfig) -> dict[str, Any]:
    """Plain nested data (TOML-writable) of a config; `config_from_dict` inverts it."""
    data = dataclasses.asdict(cfg)
    method = data.pop("method")
    data["method"] = {"name": method["name"], **method["options"]}
    return _plain(data)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def with_defaults(data: Mapping[str, Any]) -> dict[str, Any]:
    """`config_to_dict` data from an older version of this module with the keys added since filled in with their
    defaults, so a checkpoint written before a key existed resumes as long as the key keeps its default."""
    return _merge(config_to_dict(JobConfig()), data)


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        inner = base.get(key)
        merged[key] = _merge(inner, value) if isinstance(value, Mapping) and isinstance(inner, Mapping) else value
    return merged


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two `config_to_dict` results."""
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            keys += changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(prefix + key)
    return keys


def check_resumable(saved: Mapping[str, Any], cfg: JobConfig, step: int, *, export_only: bool = False) -> None:
    """ConfigError unless a checkpoint at `step` written under config `saved` may go on under `cfg`: only
    RESUMABLE_KEYS changed, and steps are left to train (or the job only re-exports)."""
    changed = changed_keys(with_defaults(saved), config_to_dict(cfg))
    fixed = [key for key in changed if key.split(".")[0] not in RESUMABLE_KEYS and key not in RESUMABLE_KEYS]
    if fixed:
        raise ConfigError(f"cannot resume: {', '.join(fixed)} changed since the checkpoint at step {step}")
    if step >= cfg.max_steps and not export_only:
        raise ConfigError(f"cannot resume: the checkpoint is at step {step}, max_steps is {cfg.max_steps}")
