"""Distillation jobs: records on disk, one training subprocess at a time, cancel / resume / delete, restart-safe.

    store = JobStore(Path("runs/jobs"), registry)          # the app's registry: students appear in it when done
    job = store.launch(PRESET, ["--max_steps=200"], name="my-student")
    store.progress(job.id).step;  store.cancel(job.id);  store.resume(job.id)

A job is a folder <jobs>/<id>/: job.json (this module's record), log.txt (the trainer's stdout and stderr) and what
`python -m distillation.train PRESET ... --out <folder>` writes there (status.json, metrics.jsonl, previews/,
checkpoints/). The folders are the truth: every JobStore on a folder reads the same records, and the one holding
<jobs>/.lock runs the queue: it starts the oldest queued job when none runs (argument lists, never a shell), watches
it, records its end from the exit code and status.json, and after a restart reconciles records whose process is gone.
Training processes run in their own session and write straight to log.txt, so they outlive the app; the next app
adopts a live one by pid (checked against the process start time, so a reused pid is not mistaken for the job).

Estimate (`JobStore.estimate`: a probe subprocess runs the job's own settings for PROBE_STEPS steps):
    weights = P_frozen x bytes(teacher.dtype) + P_trainable x 20 B     (fp32 weight, gradient, AdamW m and v, EMA)
    memory  = max(probe peak, weights) + P_student x 4 B               (+ the float32 student copy the export makes)
    time    = setup + max_steps x s/step     (s/step: mean of the probe's steps after the first; previews excluded;
                                              setup includes preparing an image folder the first time: the probe
                                              leaves it in the shared cache, so the job itself reuses it)
    disk    = (keep_checkpoints + 1) x P_trainable x 16 B + P_student x bytes(export.dtype)
P_student is the teacher network's size (the student is shaped like the teacher). The probe peak is the process's
peak resident memory on a CPU and the peak allocated CUDA memory on a GPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from distillation.checkpoint import PREFIX, checkpoints
from distillation.config import DATA_SKETCHES, ConfigError, JobConfig, load_config
from distillation.data import FOLDER_SUFFIXES, DataError, folder_sketches, list_images  # noqa: F401 (the tab's)
from distillation.trainer import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, EXIT_STOPPED, Trainer
from pipelines.registry import ModelError, ModelSpec, Registry, hub_offline, is_local

log = logging.getLogger("sketchsprint.jobs")

ROOT = Path(__file__).resolve().parent.parent
JOBS_DIR = ROOT / "runs" / "jobs"
PRESETS_DIR = ROOT / "distillation" / "presets"
PROBE_STEPS = 3
QUICK_PROBE_STEPS = 2  # the fine-tune path's estimate: the first step warms up, the second is timed
FINETUNE_PRESET = PRESETS_DIR / "finetune_sketch_tiny.toml"
# the fine-tune path: what the job spends before its trainer is set up (python start and imports: 5-9 s on an idle
# 2-core CPU, 15 s on a loaded one), what the budget keeps back for the app to start the process, and the headroom
# asked of the step count so the wall-clock stop (counted from the process's start) rarely has to act
STARTUP_S = 10.0
STOP_MARGIN_S = 2.0
STEP_HEADROOM = 1.1
MIN_FREE_DISK_GB = 0.25  # without an estimate: room for the log, metrics and a checkpoint of a small model
LOG_TAIL_BYTES = 64 * 1024

QUEUED, RUNNING, STOPPING, DONE, STOPPED, INTERRUPTED, FAILED = (
    "queued", "running", "stopping", "done", "stopped", "interrupted", "failed"
)  # fmt: skip
LIVE = (RUNNING, STOPPING)  # a process exists (or existed when last seen)
ACTIVE = (QUEUED, *LIVE)
RESUMABLE = (STOPPED, INTERRUPTED, FAILED)

METHODS = {
    "scm_ladd": "sCM + LADD (SANA-Sprint)",
    "scm": "sCM (consistency only)",
    "dmd2": "DMD2",
    "twinflow": "TwinFlow",
    "lcm": "LCM",
    "ladd": "LADD (adversarial only)",
}
TEACHER_KINDS = ("sana", "unet", "sketch_tiny")  # distillation.teachers families a folder or hub id can be
ID_RE = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6}")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # distillation.export.NAME, bounded
OVERRIDE_RE = re.compile(r"--([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)=(.*)", re.DOTALL)
HUB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
RESERVED_KEYS = ("export.models_dir", "export.name")  # the store sends students to the registry's folder
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".svg")


class JobError(ValueError):
    """A job request or action is refused; the message is for the person using the app, and nothing was changed."""


class EstimateTimeout(JobError):
    """The estimate's trial run took too long (a busy machine): the settings may still be fine."""


# ---- records --------------------------------------------------------------------------------------------------------


@dataclass
class Job:
    """One job record (job.json). state: queued | running | stopping | done | stopped | interrupted | failed."""

    id: str
    preset: str
    overrides: list[str]
    name: str  # the student's model name (export.name)
    created: float
    total: int = 0  # max_steps
    state: str = QUEUED
    queued: float = 0.0  # when it last entered the queue (the queue runs oldest first)
    teacher_model: str = ""  # the registry model the teacher came from; "" = none (the compare view shows no teacher)
    pid: int | None = None
    pid_start: int | None = None  # the process's start time (/proc), so a reused pid is not taken for the job
    exit_code: int | None = None  # None while running, or when the process ended unwatched
    reason: str = ""
    resume: bool = False  # the next start continues from the latest checkpoint
    runs: int = 0  # training processes started so far
    started: float | None = None
    finished: float | None = None
    export: str = ""  # the registry's verdict on the exported manifest: "listed", or why not


@dataclass(frozen=True)
class Estimate:
    """What a probe measured and predicts for the whole job (an estimate; formulas in the module docstring)."""

    device: str
    max_steps: int
    frozen_params: int
    trainable_params: int
    student_params: int
    setup_s: float
    s_per_step: float
    peak_memory_gb: float
    weights_gb: float
    memory_gb: float
    time_s: float
    disk_gb: float


@dataclass(frozen=True)
class Progress:
    """A job as the tab shows it: from the last progress event, status.json, metrics.jsonl, previews and log.txt."""

    step: int
    total: int
    it_s: float | None
    eta_s: float | None
    checkpoint_step: int | None
    metrics: list[dict[str, Any]] = field(repr=False)
    preview: Path | None
    log_tail: str = field(repr=False)


def toml_string(value: str) -> str:
    """A TOML basic string (an override value that stays a string whatever it looks like: 1e3, true, a path)."""
    return json.dumps(value)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def process_start(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks since boot (Linux /proc), None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def process_alive(pid: int | None, start: int | None) -> bool:
    """Is the job's process still running (the same process, not a later one given the same pid)?"""
    if pid is None:
        return False
    if Path("/proc").is_dir():
        return start is not None and process_start(pid) == start
    try:  # no /proc: the pid alone
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def checkpoint_step(folder: Path) -> int | None:
    """The step of the job's newest complete checkpoint (what --resume latest continues from), or None."""
    found = checkpoints(folder / "checkpoints")
    return int(found[-1].name[len(PREFIX) :]) if found else None


def log_tail(folder: Path, size: int = LOG_TAIL_BYTES) -> list[str]:
    """The last lines of log.txt (whole lines only)."""
    path = folder / "log.txt"
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            end = f.seek(max(0, f.tell() - size))
            data = f.read()
    except OSError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[1:] if end > 0 and lines else lines


def last_event(lines: Sequence[str], kind: str) -> dict[str, Any] | None:
    """The newest trainer event of `kind` among log lines (JSON lines on the trainer's stdout)."""
    for line in reversed(lines):
        if line.startswith('{"event": "' + kind + '"'):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def readable(line: str) -> str:
    """One log line as a person reads it: a trainer event (a JSON line) in words, with its step, losses and the time
    left; any other line as it is."""
    if line.startswith("--- ") and " $ " in line:
        return f"--- {line[4:].split(' $ ', 1)[0]}: training process started"
    if not line.startswith('{"event": '):
        return line
    try:
        event = json.loads(line)
    except ValueError:
        return line
    kind, step = event.get("event"), event.get("step")
    if kind == "progress":
        numbers = {key: value for key, value in event.items() if isinstance(value, int | float)}
        losses = [f"{key.replace('/loss', '').replace('_loss', '')} {value:.3g}"
                  for key, value in numbers.items() if key.endswith("loss")]  # fmt: skip
        speed = f"{1 / event['it_s']:.2f} s/step" if event.get("it_s") else ""
        parts = [f"step {step}/{event.get('total')}", "losses: " + ", ".join(losses) if losses else "", speed,
                 f"about {_minutes(event.get('eta_s'))} left" if event.get("eta_s") is not None else ""]  # fmt: skip
        return " · ".join(part for part in parts if part)
    words = {
        "start": lambda e: f"training on {e.get('device')} from step {e.get('step')} to {e.get('total')}",
        "data": lambda e: (
            f"data ready: {e.get('counts', {}).get('used', '?')} pictures "
            f"({'reused' if e.get('reused') else 'prepared'} in {e.get('path')})"
        ),
        "preview": lambda e: f"step {e.get('step')}: preview saved",
        "checkpoint": lambda e: f"step {e.get('step')}: checkpoint saved",
        "validate": lambda e: (
            f"step {e.get('step')}: validation "
            + ", ".join(f"{k.removeprefix('val/')} {v}" for k, v in e.items() if k.startswith("val/"))
            + f" (best so far: step {e.get('best_step')})"
        ),
        "time_limit": lambda e: (
            f"step {e.get('step')}: time budget reached ({_minutes(e.get('seconds'))} of "
            f"{_minutes(e.get('limit_s'))}); finishing with what was learnt"
        ),
        "export": lambda e: (
            "exported: "
            + ("listed in the Live tab's model picker" if e.get("registry") == "listed" else str(e.get("registry")))
        ),  # fmt: skip
        "stopped": lambda e: f"step {e.get('step')}: stopped (checkpoint saved; Resume continues)",
        "failed": lambda e: f"step {e.get('step')}: failed: {e.get('reason')}",
        "done": lambda e: f"done at step {e.get('step')}",
    }
    return words[kind](event) if kind in words else line


def failure_hint(lines: Sequence[str], count: int = 3) -> str:
    """The last non-event lines of the log (the end of a traceback, an error line)."""
    text = [line.strip() for line in lines if line.strip() and not line.startswith(("{", "--- "))]
    return " | ".join(text[-count:])


# ---- checks before a job starts -------------------------------------------------------------------------------------


def check_overrides(overrides: Sequence[str]) -> list[str]:
    """Overrides as `--dotted.key=value` strings, one argument each; the store's own keys are refused."""
    checked = []
    for item in overrides:
        match = OVERRIDE_RE.fullmatch(item) if isinstance(item, str) else None
        if match is None:
            raise JobError(f"override {item!r}: write it as --key=value (dotted keys for sections)")
        if any(c in match.group(2) for c in "\x00\n\r"):
            raise JobError(f"override --{match.group(1)}: the value may not hold NUL or line breaks")
        if match.group(1) in RESERVED_KEYS:
            raise JobError(f"override --{match.group(1)}: set by the app (students go to the models folder)")
        checked.append(item)
    return checked


def check_preset(preset: str | Path) -> Path:
    """A preset must be an existing .toml file."""
    path = Path(preset).expanduser()
    if path.suffix != ".toml" or not path.is_file():
        raise JobError(f"preset {str(preset)!r}: not a .toml file (presets live in {PRESETS_DIR})")
    return path.resolve()


def _has_model_files(folder: Path) -> bool:
    if (folder / "config.json").is_file():
        return True
    return any((sub / "config.json").is_file() for sub in folder.iterdir() if sub.is_dir())


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot_download(repo_id, local_files_only=True)
    except LocalEntryNotFoundError:
        return False
    return True


def check_teacher(cfg: JobConfig) -> list[str]:
    """Refuse a teacher that cannot be loaded (a folder with no model, a malformed hub id, an uncached id offline);
    returns notices (a hub id that will be downloaded)."""
    notices = []
    tc = cfg.teacher
    if tc.random:
        return notices
    sources = {"teacher.path": tc.path, "teacher.controlnet_path": tc.controlnet_path if tc.controlnet else ""}
    for key, value in sources.items():
        if not value:
            continue
        if is_local(value):
            folder = Path(value).expanduser()
            if not folder.is_dir() or not _has_model_files(folder):
                raise JobError(f"{key}: {value} holds no model (no config.json in it or in a subfolder)")
        elif not HUB_ID_RE.fullmatch(value) or ".." in value:
            raise JobError(f"{key}: {value!r} is neither a folder (./x, /x, ~/x) nor a hub id (owner/name)")
        elif not _in_hub_cache(value):
            if hub_offline():
                raise JobError(f"{key}: {value} is not in the local cache and the hub is offline (HF_HUB_OFFLINE=1)")
            notices.append(f"{value} is not cached: the job downloads it first (needs the network)")
    return notices


def npz_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Array shapes in an .npz from the headers alone (no array is decompressed); JobError if it is unreadable."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    shapes = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version not in readers:
                        raise ValueError(f"npy format {version}")
                    shapes[info.filename.removesuffix(".npy")] = tuple(readers[version](member)[0])
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise JobError(f"data.path: cannot read {path.name} ({error}): damaged, or not prepared pairs") from error
    return shapes


def check_data(cfg: JobConfig) -> None:
    """Refuse an image folder with no images, and a sketch-pairs folder with no pairs, unreadable files or arrays of
    the wrong shapes."""
    if cfg.data.kind == "image_folder":
        root = Path(cfg.data.path).expanduser()
        try:
            images = list_images(root)
        except DataError as error:
            raise JobError(f"data.path: {error}") from error
        if not images:
            hint = " (it holds prepared pairs: choose those instead)" if (root / "train.npz").is_file() else ""
            raise JobError(f"data.path: no images in {root}{hint}; looked for {'/'.join(FOLDER_SUFFIXES)} files "
                           "there and in its subfolders")  # fmt: skip
        return
    if cfg.data.kind != "sketch_pairs":
        return
    root = Path(cfg.data.path).expanduser()
    if not (root / "train.npz").is_file():
        images = [p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES] if root.is_dir() else []
        if images:
            raise JobError(
                f"data.path: {root} holds {len(images)} images but no prepared pairs (train.npz): to train on them, "
                "choose the data 'a folder of images' (data.kind = 'image_folder'), which prepares them itself"
            )
        raise JobError(
            f"data.path: no data in {root} (no train.npz); make it with: python -m distillation.data prepare"
        )
    train = npz_shapes(root / "train.npz")
    captions = npz_shapes(root / "captions.npz") if (root / "captions.npz").is_file() else {}
    expected = {"sketch": 3, "image": 4, "caption_index": 1}
    if any(len(train.get(key, ())) != dims for key, dims in expected.items()) or "embedding" not in captions:
        raise JobError(f"data.path: {root} is not prepared sketch pairs (train.npz {train}, captions.npz {captions})")
    if train["sketch"][0] == 0:
        raise JobError(f"data.path: no data in {root}: train.npz holds 0 pairs")
    if not train["sketch"][0] == train["image"][0] == train["caption_index"][0]:
        raise JobError(f"data.path: {root}/train.npz: sketch, image and caption_index counts differ")


# ---- what the Distill tab asks for -> preset + overrides ------------------------------------------------------------


def presets() -> dict[str, Path]:
    """The bundled presets by file stem."""
    return {path.stem: path for path in sorted(PRESETS_DIR.glob("*.toml"))}


def teacher_overrides(spec: ModelSpec) -> list[str]:
    """Overrides that make a registry model the teacher; JobError says why a model cannot be one."""
    if spec.backend == "tiny":
        path = spec.component_path("weights")
        if _read_json(Path(path) / "config.json").get("kind") == "trigflow":
            raise JobError(f"{spec.name} is a distilled student (TrigFlow), not a flow-matching teacher")
        return ["--teacher.kind=sketch_tiny", '--teacher.random=""', f"--teacher.path={toml_string(path)}",
                "--teacher.controlnet=false", f"--teacher.licence={toml_string(spec.licence)}"]  # fmt: skip
    if spec.backend == "sd":
        if spec.random_init:
            return ["--teacher.kind=unet", f"--teacher.random={toml_string(spec.random_init)}"]
        controlnet = spec.components.get("controlnet", "")
        return [
            "--teacher.kind=unet",
            '--teacher.random=""',
            f"--teacher.licence={toml_string(spec.licence)}",
            f"--teacher.path={toml_string(spec.component_path('base'))}",
            f"--teacher.controlnet={'true' if controlnet else 'false'}",
            f"--teacher.controlnet_path={toml_string(spec.component_path('controlnet') if controlnet else '')}",
        ]
    if spec.backend == "sana":
        raise JobError(
            f"{spec.name}: its teacher is an NVlabs checkpoint the trainer cannot read yet; give a diffusers Sana "
            "teacher folder or hub id (e.g. Efficient-Large-Model/Sana_Sprint_0.6B_1024px_teacher_diffusers)"
        )
    raise JobError(f"{spec.name}: the trainer has no teacher family for backend {spec.backend!r} yet")


def job_overrides(
    preset: Path,
    registry: Registry,
    *,
    method: str = "",
    teacher: str = "preset",
    teacher_model: str = "",
    teacher_path: str = "",
    teacher_kind: str = "sana",
    controlnet_path: str = "",
    data: str = "",
    data_path: str = "",
    augment: bool = False,
    sketch: str = "canny",
    steps: int | None = None,
    lr: float | None = None,
    batch: int | None = None,
    lora_rank: int | None = None,
) -> list[str]:
    """The Distill tab's choices as overrides of `preset`. teacher: preset | model (a registry name) | hub (an id) |
    folder, with a ControlNet (hub id or folder; "" = none) for hub and folder teachers; a method other than the
    preset's starts from that method's defaults (the preset's method options and per-role learning rates are
    dropped); data: "" (the preset's), synthetic, sketch_pairs (a prepared folder) or image_folder (a folder of
    images with optional .txt captions; `sketch` is its line extractor)."""
    base = load_preset(preset)
    out: list[str] = []
    if teacher == "model":
        try:
            out += teacher_overrides(registry.get(teacher_model))
        except ModelError as error:
            raise JobError(str(error)) from error
    elif teacher in ("hub", "folder"):
        if teacher_kind not in TEACHER_KINDS:
            raise JobError(f"teacher family {teacher_kind!r}: one of {', '.join(TEACHER_KINDS)}")
        if teacher_kind == "sketch_tiny" and controlnet_path.strip():
            raise JobError("a sketch_tiny teacher takes the sketch itself: it has no ControlNet")
        value = _model_source(teacher, teacher_path, "teacher")
        out += [f"--teacher.kind={teacher_kind}", '--teacher.random=""', f"--teacher.path={toml_string(value)}",
                '--teacher.licence=""']  # fmt: skip
        if controlnet_path.strip():
            source = "folder" if is_local(controlnet_path.strip()) else "hub"
            out += [
                "--teacher.controlnet=true",
                f"--teacher.controlnet_path={toml_string(_model_source(source, controlnet_path, 'ControlNet'))}",
            ]
        else:
            out.append("--teacher.controlnet=false")
    elif teacher != "preset":
        raise JobError(f"teacher source {teacher!r}: one of preset, model, hub, folder")
    if method and method != base.method.name:
        if method not in METHODS:
            raise JobError(f"method {method!r}: one of {', '.join(METHODS)}")
        out += [f"--method={{name = {toml_string(method)}}}", "--optim.role_lr={}"]
    if data == "synthetic":
        out.append("--data.kind=synthetic")
    elif data == "sketch_pairs":
        if not data_path.strip():
            raise JobError("data: give the prepared sketch-pairs folder (python -m distillation.data prepare)")
        path = str(Path(data_path.strip()).expanduser().resolve())
        out += ["--data.kind=sketch_pairs", f"--data.path={toml_string(path)}", f"--data.augment={augment!r}".lower()]
    elif data == "image_folder":
        if not data_path.strip():
            raise JobError("data: give the folder of your images (each with an optional same-name .txt caption)")
        if sketch not in DATA_SKETCHES:
            raise JobError(f"sketch extractor {sketch!r}: one of {', '.join(DATA_SKETCHES)}")
        path = str(Path(data_path.strip()).expanduser().resolve())
        out += ["--data.kind=image_folder", f"--data.path={toml_string(path)}", f"--data.sketch={toml_string(sketch)}",
                f"--data.augment={augment!r}".lower()]  # fmt: skip
    elif data:
        raise JobError(f"data {data!r}: synthetic, sketch_pairs or image_folder (the kinds the trainer reads)")
    numbers = {"max_steps": (steps, int), "optim.lr": (lr, float), "batch_size": (batch, int),
               "student.lora_rank": (lora_rank, int)}  # fmt: skip
    out += [f"--{key}={cast(value)!r}" for key, (value, cast) in numbers.items() if value is not None]
    return out


@dataclass(frozen=True)
class FolderCheck:
    """What a folder of pictures holds for fine-tuning, found without preparing it."""

    folder: str
    images: int  # pictures that open (header read)
    captioned: int  # of those, with a non-empty same-name .txt caption
    named: int  # without one, captioned from the file name instead
    unreadable: list[str]

    def text(self) -> str:
        """The check in one plain sentence."""
        if not self.images:
            return f"No usable pictures in {self.folder}."
        plural = "s" if self.images != 1 else ""
        parts = [
            f"**{self.images} usable picture{plural}** in {self.folder}: {self.captioned} with a caption (.txt "
            f"beside it), {self.named} captioned from the file name"
        ]
        rest = self.images - self.captioned - self.named
        if rest:
            parts.append(f", {rest} with no caption (trained with an empty prompt)")
        if self.unreadable:
            names = ", ".join(self.unreadable[:3])
            parts.append(f"; {len(self.unreadable)} cannot be opened and are skipped: {names}")
        if self.images < 8:
            parts.append("; 8 or more pictures give a clearer style (20-50 is a good size)")
        return "".join(parts) + "."


def check_folder(path: str) -> FolderCheck:
    """Count a folder's usable pictures and captions (the fine-tune path's validation); JobError says what is wrong
    with the path itself."""
    from PIL import Image

    from distillation.data import caption_from_name, read_caption

    text = (path or "").strip()
    if not text:
        raise JobError("give the folder that holds your pictures (png, jpg, webp or bmp; subfolders too)")
    root = Path(text).expanduser()
    try:
        images = list_images(root)
    except DataError as error:
        raise JobError(str(error)) from error
    usable, captioned, named, unreadable = 0, 0, 0, []
    for image in images:
        try:
            with Image.open(image) as opened:
                opened.size  # noqa: B018 - the header is read: a file that is not a picture fails here
        except Exception:
            unreadable.append(image.relative_to(root).as_posix())
            continue
        usable += 1
        caption, _ = read_caption(image)
        if caption:
            captioned += 1
        elif caption_from_name(image):
            named += 1
    if not images:
        raise JobError(f"no pictures in {root} (looked for {'/'.join(FOLDER_SUFFIXES)} files there and in its "
                       "subfolders)")  # fmt: skip
    return FolderCheck(str(root.resolve()), usable, captioned, named, unreadable)


def finetune_overrides(folder: str, *, minutes: float, estimate: Estimate | None) -> list[str]:
    """The fine-tune path as overrides of FINETUNE_PRESET: the folder, a wall-clock stop at the budget (less the
    process start) and, with an estimate, max_steps = the steps that fit at its measured s/step."""
    if not minutes or minutes <= 0:
        raise JobError("the time budget must be more than 0 minutes")
    limit = max(1.0, minutes * 60 - STOP_MARGIN_S)
    out = [f"--data.path={toml_string(str(Path(folder.strip()).expanduser().resolve()))}",
           f"--time_limit_s={limit:.1f}"]  # fmt: skip
    if estimate is not None:
        train_s = limit - STARTUP_S - estimate.setup_s - 5.0
        out.append(f"--max_steps={max(1, int(train_s / (estimate.s_per_step * STEP_HEADROOM)))}")
    return out


def estimate_words(estimate: Estimate, steps: int, minutes: float | None = None) -> str:
    """An estimate as a person reads it: "about N minutes for M steps on this CPU"."""
    where = "this CPU" if estimate.device == "cpu" else "this GPU" if estimate.device.startswith("cuda") else (
        estimate.device)  # fmt: skip
    total = estimate.setup_s + STARTUP_S + steps * estimate.s_per_step
    minutes_text = f"About {round(total / 60)} minute{'s' if round(total / 60) > 1 else ''}" if total >= 90 else (
        "About 1 minute" if total >= 45 else "Under a minute")  # fmt: skip
    text = (f"**{minutes_text} for {steps} steps** on {where} ({estimate.s_per_step:.2f} s a step, measured "
            "just now)")  # fmt: skip
    if minutes:
        text += f"; the job stops at {minutes:g} minutes whatever happens, and keeps what it learnt by then"
    return text + "."


def _model_source(source: str, value: str, what: str) -> str:
    """A hub id as given (owner/name) or a folder made absolute; JobError when it is neither."""
    value = value.strip()
    if source == "folder":
        if not value:
            raise JobError(f"{what} folder: give the folder of a diffusers model (or of a SketchTinyNet)")
        return str(Path(value).expanduser().resolve())
    if not HUB_ID_RE.fullmatch(value) or ".." in value:
        raise JobError(f"{what} hub id {value!r}: write it as owner/name")
    return value


def load_preset(preset: str | Path, overrides: Sequence[str] = ()) -> JobConfig:
    """A checked config; JobError with the config's message when the preset or an override is invalid."""
    try:
        return load_config(check_preset(preset), check_overrides(overrides))
    except ConfigError as error:
        raise JobError(str(error)) from error


# ---- the probe (its own process: python -m distillation.jobs probe PRESET --key=value ...) --------------------------


def probe(preset: str | Path, overrides: Sequence[str], *, steps: int = PROBE_STEPS, quick: bool = False) -> Estimate:
    """Set up the job's trainer in a scratch folder, time `steps` steps, and turn the figures into an Estimate.
    quick: the teacher's synthetic samples of the same shapes stand in for the data (an image folder is not prepared,
    so set-up leaves out its preparation), and no validation: the s/step of a few seconds' probe."""
    import resource
    import statistics
    import tempfile

    import torch

    target = load_config(preset, overrides)
    probe_overrides = [f"--max_steps={steps}", "--preview.every=0", "--export.enabled=false", "--checkpoint_every=0"]
    if quick:
        probe_overrides += ["--data.kind=synthetic", f"--data.size={target.batch_size}", "--select.every=0",
                            "--time_limit_s=0"]  # fmt: skip
    cfg = load_config(preset, [*overrides, *probe_overrides])
    with tempfile.TemporaryDirectory(prefix="sketchsprint-probe-") as out:
        trainer = Trainer(cfg, Path(out), progress="json", cpu=not torch.cuda.is_available())
        started = time.perf_counter()
        trainer.setup()
        setup_s = time.perf_counter() - started
        cuda = trainer.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(trainer.device)
        times = []
        for _ in range(steps):
            started = time.perf_counter()
            trainer.train_step()
            if cuda:
                torch.cuda.synchronize(trainer.device)
            times.append(time.perf_counter() - started)
    if cuda:
        peak_gb = torch.cuda.max_memory_allocated(trainer.device) / 2**30
    else:
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    frozen = sum(p.numel() for p in trainer.teacher.model.parameters() if not p.requires_grad)
    trainable = sum(p.numel() for role in trainer.roles.values() for p in role.params.values())
    size = {"float32": 4, "bfloat16": 2, "float16": 2}
    weights_gb = (frozen * size[target.teacher.dtype] + trainable * 20) / 2**30
    s_per_step = statistics.fmean(times[1:] or times)
    checkpoints_bytes = (target.keep_checkpoints + 1) * trainable * 16
    return Estimate(
        device=str(trainer.device),
        max_steps=target.max_steps,
        frozen_params=frozen,
        trainable_params=trainable,
        student_params=frozen,
        setup_s=round(setup_s, 2),
        s_per_step=round(s_per_step, 4),
        peak_memory_gb=round(peak_gb, 3),
        weights_gb=round(weights_gb, 3),
        memory_gb=round(max(peak_gb, weights_gb) + frozen * 4 / 2**30, 3),
        time_s=round(setup_s + target.max_steps * s_per_step, 1),
        disk_gb=round((checkpoints_bytes + frozen * size[target.export.dtype]) / 2**30, 3),
    )


# ---- resources ------------------------------------------------------------------------------------------------------


def available_memory_gb(busy: bool) -> tuple[float, str]:
    """(GB, where) a new job may use: free memory now, or the total when a running job will have freed its share
    before the new one starts (the queue runs one job at a time). GPU 0 with CUDA, else host memory."""
    import torch

    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info(0)
        return (total if busy else free) / 2**30, f"GPU 0 ({'total' if busy else 'free'})"
    info = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info[key] = int(value.split()[0]) * 1024
    key = "MemTotal" if busy else "MemAvailable"
    if key in info:
        return info[key] / 2**30, f"host memory ({'total' if busy else 'available'})"
    pages = os.sysconf("SC_PHYS_PAGES" if busy else "SC_AVPHYS_PAGES")
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**30, "host memory"


def free_disk_bytes(path: Path) -> int:
    """Free bytes on the file system that holds `path` (or its nearest existing parent)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


# ---- the store -----------------------------------------------------------------------------------------------------


class JobStore:
    """Job records under `folder`; launches `python -m distillation.train` (or `accelerate launch` over several
    GPUs) one job at a time; students are exported into `registry.models_dir` and the registry is refreshed when a
    job is done, then `on_finish(job)` runs. `start=False`: no scheduler thread (call `tick()` yourself)."""

    def __init__(
        self,
        folder: Path | str = JOBS_DIR,
        registry: Registry | None = None,
        *,
        on_finish: Callable[[Job], None] | None = None,
        python: str = sys.executable,
        poll_s: float = 0.5,
        memory: Callable[[bool], tuple[float, str]] = available_memory_gb,
        disk_free: Callable[[Path], int] = free_disk_bytes,
        gpus: int | None = None,
        start: bool = True,
    ):
        self.folder = Path(folder).resolve()
        self.registry = registry or Registry()
        self.on_finish = on_finish
        self.python = python
        self.poll_s = poll_s
        self.memory = memory
        self.disk_free = disk_free
        if gpus is None:
            import torch

            gpus = torch.cuda.device_count()
        self.gpus = gpus
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._procs: dict[str, subprocess.Popen] = {}
        self._estimates: dict[tuple[str, tuple[str, ...]], Estimate] = {}
        self._metrics: dict[str, tuple[int, int, list[dict[str, Any]]]] = {}
        self._lock_file: Any = None
        self._closed = False
        self._thread = None
        if start:
            self._thread = threading.Thread(target=self._loop, name="distill-jobs", daemon=True)
            self._thread.start()

    # -- records

    def job_folder(self, job_id: str) -> Path:
        if not ID_RE.fullmatch(job_id or ""):
            raise JobError(f"no job {job_id!r}")
        return self.folder / job_id

    def _save(self, job: Job) -> None:
        _atomic_write(self.job_folder(job.id) / "job.json", json.dumps(dataclasses.asdict(job), indent=2))

    def get(self, job_id: str) -> Job:
        """The record of `job_id`; JobError if there is none."""
        data = _read_json(self.job_folder(job_id) / "job.json")
        known = {f.name for f in dataclasses.fields(Job)}
        try:
            return Job(**{k: v for k, v in data.items() if k in known})
        except TypeError as error:
            raise JobError(f"no job {job_id!r} (no readable job.json)") from error

    def jobs(self) -> list[Job]:
        """Every readable record, newest first (an unreadable job.json is skipped and logged)."""
        found = []
        if self.folder.is_dir():
            for path in self.folder.iterdir():
                if ID_RE.fullmatch(path.name) and (path / "job.json").is_file():
                    try:
                        found.append(self.get(path.name))
                    except JobError as error:
                        log.warning("%s", error)
        return sorted(found, key=lambda job: job.created, reverse=True)

    # -- launching

    def _checked(self, preset: str | Path, overrides: Sequence[str]) -> tuple[Path, list[str], JobConfig]:
        path, overrides = check_preset(preset), check_overrides(overrides)
        return path, overrides, load_preset(path, overrides)

    @staticmethod
    def _refuse_duplicate(jobs: list[Job], preset: str, overrides: list[str], exclude: str = "") -> None:
        """Two launches (or a double click) of the same settings queue one job, not two."""
        for job in jobs:
            if job.id != exclude and job.state in ACTIVE and (job.preset, job.overrides) == (preset, overrides):
                raise JobError(f"job {job.id} with the same settings is already {job.state}")

    def running(self) -> Job | None:
        """The job that holds the device now, if any."""
        return next((job for job in self.jobs() if job.state in LIVE), None)

    def estimate(self, preset: str | Path, overrides: Sequence[str] = (), *, timeout: float = 600.0) -> Estimate:
        """Probe these settings in a subprocess (PROBE_STEPS real steps) and remember the Estimate for launch()."""
        path, overrides, cfg = self._checked(preset, overrides)
        busy = self.running()
        if busy is not None and self.gpus > 0:
            raise JobError(f"the GPU is busy with job {busy.id}: estimate when it is done (or launch without one)")
        argv = [self.python, "-m", "distillation.jobs", "probe", str(path), *overrides]
        try:
            done = subprocess.run(argv, cwd=ROOT, env=self._env(), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as error:
            why = ""
            if cfg.data.kind == "image_folder":
                why = " (it prepares the image folder first, which takes long for many images: launch without one)"
            raise JobError(f"the probe took over {timeout:.0f} s; no estimate{why}") from error
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        try:
            result = json.loads(lines[-1]) if lines else {}
        except ValueError:
            result = {}
        if done.returncode != 0 or "error" in result:
            reason = result.get("error") or failure_hint(done.stderr.splitlines()) or f"exit code {done.returncode}"
            raise JobError(f"these settings fail in a {PROBE_STEPS}-step probe: {reason}")
        estimate = Estimate(**result)
        with self._lock:
            self._estimates[(str(path), tuple(overrides))] = estimate
        return estimate

    def quick_estimate(self, preset: str | Path, overrides: Sequence[str] = (), *, timeout: float = 60.0) -> Estimate:
        """A few seconds' estimate: a QUICK_PROBE_STEPS-step probe on synthetic samples of the job's shapes (the
        data is not prepared), remembered per preset and settings other than the data, step count and time limit, so
        a second folder or budget answers at once. JobError in plain words when it fails."""
        path, overrides, _ = self._checked(preset, overrides)
        varying = ("--data.path=", "--max_steps=", "--time_limit_s=")
        key = (str(path), "quick", tuple(o for o in overrides if not o.startswith(varying)))
        with self._lock:
            if key in self._estimates:
                return self._estimates[key]
        busy = self.running()
        if busy is not None and self.gpus > 0:
            raise JobError(f"the GPU is busy with job {busy.id}; the estimate can run when it is done")
        argv = [self.python, "-m", "distillation.jobs", "probe", "--quick", str(path), *overrides]
        try:
            done = subprocess.run(argv, cwd=ROOT, env=self._env(), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as error:
            why = f"measuring this machine's speed took over {timeout:.0f} s (is it very busy?)"
            raise EstimateTimeout(f"{why}; you can start anyway: the job stops at its time budget") from error
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        try:
            result = json.loads(lines[-1]) if lines else {}
        except ValueError:
            result = {}
        if done.returncode != 0 or "error" in result:
            reason = result.get("error") or failure_hint(done.stderr.splitlines()) or f"exit code {done.returncode}"
            raise JobError(f"a two-step trial of these settings failed: {reason}")
        estimate = Estimate(**result)
        with self._lock:
            self._estimates[key] = estimate
        return estimate

    def known_estimate(self, preset: str | Path, overrides: Sequence[str]) -> Estimate | None:
        """The Estimate of an earlier estimate() with the same settings, if any."""
        return self._estimates.get((str(check_preset(preset)), tuple(overrides)))

    def launch(
        self, preset: str | Path, overrides: Sequence[str] = (), *, name: str = "", teacher_model: str = ""
    ) -> Job:
        """Check everything that can be checked before a process starts (config, teacher, data, memory against an
        earlier estimate of the same settings, disk, duplicates), then queue the job; JobError says what is wrong and
        nothing is written. Returns the queued record (the scheduler starts it when the device is free)."""
        path, overrides, cfg = self._checked(preset, overrides)
        check_teacher(cfg)
        check_data(cfg)
        name = name.strip()
        if name and not NAME_RE.fullmatch(name):
            raise JobError(f"student name {name!r}: letters, digits, '.', '_' and '-' (at most 64)")
        estimate = self.known_estimate(path, overrides)
        with self._lock:
            jobs = self.jobs()
            busy = any(job.state in LIVE for job in jobs)
            if estimate is not None:
                available, where = self.memory(busy)
                if estimate.memory_gb > available:
                    raise JobError(
                        f"not enough memory: these settings need about {estimate.memory_gb:.2f} GB (estimate) and "
                        f"{available:.2f} GB is {where}; lower the batch size, use LoRA (rank > 0) or a smaller rank"
                    )
            need = estimate.disk_gb if estimate is not None else MIN_FREE_DISK_GB
            free = self.disk_free(self.folder) / 2**30
            if free < need:
                raise JobError(f"not enough disk space in {self.folder}: {free:.2f} GB free, the job needs about "
                               f"{need:.2f} GB (checkpoints and the exported student)")  # fmt: skip
            self._refuse_duplicate(jobs, str(path), overrides)
            job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
            name = name or f"{cfg.name}-{job_id[-6:]}"
            taken = set(self.registry.specs()) | {job.name for job in jobs if job.state != DONE}
            if name in taken:
                raise JobError(f"student name {name!r} is taken by a model or another job; choose another")
            now = time.time()
            job = Job(id=job_id, preset=str(path), overrides=overrides, name=name, created=now,
                      total=cfg.max_steps, queued=now, teacher_model=teacher_model)  # fmt: skip
            folder = self.folder / job_id
            try:
                folder.mkdir(parents=True)
                self._save(job)
            except OSError as error:
                shutil.rmtree(folder, ignore_errors=True)
                raise JobError(f"cannot write the job record in {self.folder}: {error}") from error
            self._wake.notify_all()
        return job

    # -- actions

    def cancel(self, job_id: str) -> Job:
        """SIGTERM to a running job (the trainer checkpoints after the current step, then stops: resumable), or take
        a queued job out of the queue."""
        with self._lock:
            job = self.get(job_id)
            if job.state == QUEUED:
                job.state, job.reason, job.finished = STOPPED, "cancelled before it started", time.time()
            elif job.state in LIVE:
                proc = self._procs.get(job.id)
                if proc is not None or process_alive(job.pid, job.pid_start):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid if proc is not None else job.pid, signal.SIGTERM)
                job.state, job.reason = STOPPING, "cancel requested: the trainer saves a checkpoint, then stops"
            else:
                raise JobError(f"job {job.id} is {job.state}: nothing to cancel")
            self._save(job)
            self._wake.notify_all()
            return job

    def resume(self, job_id: str) -> Job:
        """Queue a stopped, interrupted or failed job again in its folder: --resume latest from its newest checkpoint,
        or from the start when it has none."""
        with self._lock:
            job = self.get(job_id)
            if job.state not in RESUMABLE:
                raise JobError(f"job {job.id} is {job.state}: only stopped, interrupted or failed jobs resume")
            self._checked(job.preset, job.overrides)
            self._refuse_duplicate(self.jobs(), job.preset, job.overrides, job.id)
            folder = self.job_folder(job.id)
            job.resume = checkpoint_step(folder) is not None
            if not job.resume:  # starting over: rows of the lost run would repeat steps
                (folder / "metrics.jsonl").unlink(missing_ok=True)
                (folder / "status.json").unlink(missing_ok=True)
                self._metrics.pop(job.id, None)
            job.state, job.queued, job.reason, job.exit_code = QUEUED, time.time(), "", None
            self._save(job)
            self._wake.notify_all()
            return job

    def delete(self, job_id: str) -> None:
        """Remove a job's folder (not while it runs). Its exported student stays in the models folder."""
        with self._lock:
            job = self.get(job_id)
            if job.state in LIVE:
                raise JobError(f"job {job.id} is {job.state}: cancel it first")
            shutil.rmtree(self.job_folder(job.id))
            self._metrics.pop(job.id, None)

    # -- watching

    def metrics(self, job_id: str) -> list[dict[str, Any]]:
        """metrics.jsonl rows, read incrementally (a rewrite on resume is noticed by its new inode or smaller size)."""
        path = self.job_folder(job_id) / "metrics.jsonl"
        try:
            stat = path.stat()
        except OSError:
            return []
        with self._lock:
            inode, offset, rows = self._metrics.get(job_id, (-1, 0, []))
            if inode != stat.st_ino or stat.st_size < offset:
                offset, rows = 0, []
            if stat.st_size > offset:
                with open(path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
                complete = data[: data.rfind(b"\n") + 1]
                rows = rows + [json.loads(line) for line in complete.decode().splitlines() if line.strip()]
                offset += len(complete)
            self._metrics[job_id] = (stat.st_ino, offset, rows)
            return list(rows)

    def progress(self, job_id: str) -> Progress:
        """Step/total, it/s and ETA (last progress event, else status.json), metrics, newest preview, log tail."""
        job = self.get(job_id)
        folder = self.job_folder(job.id)
        lines = log_tail(folder)
        event = last_event(lines, "progress") or {}
        status = _read_json(folder / "status.json")
        previews = sorted((folder / "previews").glob("step_*.png"))
        return Progress(
            step=max(event.get("step", 0), status.get("step", 0)),
            total=event.get("total") or status.get("total") or job.total,
            it_s=event.get("it_s") if job.state in LIVE else None,
            eta_s=event.get("eta_s") if job.state in LIVE else None,
            checkpoint_step=checkpoint_step(folder),
            metrics=self.metrics(job.id),
            preview=previews[-1] if previews else None,
            log_tail="\n".join(readable(line) for line in lines[-40:]),
        )

    # -- the scheduler

    def _env(self) -> dict[str, str]:
        """The environment of the trainer and the probe: the project on PYTHONPATH; without GPUs, half the cores
        (OMP_NUM_THREADS, unless set) so the live canvas keeps the rest."""
        paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        if self.gpus == 0:
            env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // 2)))
        return env

    def command(self, job: Job) -> list[str]:
        """The training command of `job` as an argument list (never a shell string)."""
        folder = self.job_folder(job.id)
        exports = [f"--export.models_dir={toml_string(str(self.registry.models_dir.resolve()))}",
                   f"--export.name={toml_string(job.name)}"]  # fmt: skip
        train = ["-m", "distillation.train", job.preset, *job.overrides, *exports, "--out", str(folder)]
        train += ["--progress", "json"] + (["--resume", "latest"] if job.resume else [])
        if self.gpus > 1:
            launch = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(self.gpus)]
            return [self.python, *launch, "--num_machines", "1", "--dynamo_backend", "no", *train]
        return [self.python, *train]

    def _start(self, job: Job) -> None:
        folder = self.job_folder(job.id)
        argv = self.command(job)
        try:
            with open(folder / "log.txt", "ab") as out:
                out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} $ {shlex.join(argv)}\n".encode())
                out.flush()
                proc = subprocess.Popen(argv, cwd=ROOT, env=self._env(), stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        except OSError as error:
            job.state, job.reason, job.finished = FAILED, f"cannot start the trainer: {error}", time.time()
            self._save(job)
            return
        self._procs[job.id] = proc
        job.state, job.pid, job.pid_start = RUNNING, proc.pid, process_start(proc.pid)
        job.exit_code, job.reason = None, ""
        job.runs, job.started, job.finished = job.runs + 1, time.time(), None
        self._save(job)

    def _finish(self, job: Job, code: int | None) -> None:
        """Record how a job's process ended: its exit code (None: it ended unwatched) and status.json say which."""
        folder = self.job_folder(job.id)
        status = _read_json(folder / "status.json")
        said = status.get("state")
        lines = log_tail(folder)
        step = max((last_event(lines, "progress") or {}).get("step", 0), status.get("step", 0))
        ckpt = checkpoint_step(folder)
        resumable = f"resumable from step {ckpt}" if ckpt is not None else "no checkpoint: resume starts over"
        cancelled = job.state == STOPPING
        if (code == EXIT_OK or code is None) and said == "done":
            state, reason = DONE, ""
        elif code in (EXIT_STOPPED, -signal.SIGTERM) or (code is None and said == "stopped"):
            verb = "cancelled" if cancelled else "stopped by SIGTERM"
            state, reason = STOPPED, f"{verb} at step {step}; {resumable}"
        elif code is None and said == "failed":
            state, reason = FAILED, f"{status.get('reason', 'failed')} (at step {step}; {resumable})"
        elif code is None:
            state = INTERRUPTED
            reason = f"the trainer ended while no app watched it (killed or crashed) at step {step}; {resumable}"
        elif code < 0:
            state, reason = FAILED, f"killed by {signal.Signals(-code).name} at step {step}; {resumable}"
        else:
            why = status.get("reason") if said == "failed" else failure_hint(lines) or f"exit code {code}"
            kind = "bad input" if code == EXIT_BAD_INPUT else "failed"
            state, reason = FAILED, f"{kind}: {why} (exit code {code}, step {step}; {resumable})"
        job.state, job.reason, job.exit_code, job.finished = state, reason, code, time.time()
        export = last_event(lines, "export")
        if state == DONE and export is not None:
            job.export = export.get("registry", "")
        self._save(job)
        if state == DONE:
            self.registry.refresh()
            if self.on_finish is not None:
                self.on_finish(job)

    def _own(self) -> bool:
        """Hold <folder>/.lock: only its holder runs the queue (several apps may share one jobs folder)."""
        if self._lock_file is not None:
            return True
        if not self.folder.is_dir():
            return False
        handle = open(self.folder / ".lock", "a")  # noqa: SIM115 - held open as long as this store runs the queue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._lock_file = handle
        return True

    def tick(self) -> None:
        """One scheduler pass: record ended processes, reconcile records whose process is gone, start the next job."""
        with self._lock:
            if self._closed or not self._own():
                return
            for job_id, proc in list(self._procs.items()):
                code = proc.poll()
                if code is not None:
                    del self._procs[job_id]
                    self._finish(self.get(job_id), code)
            jobs = self.jobs()
            for job in jobs:
                if job.state in LIVE and job.id not in self._procs and not process_alive(job.pid, job.pid_start):
                    self._finish(job, None)
            jobs = self.jobs()
            if not any(job.state in LIVE for job in jobs):
                queued = sorted((job for job in jobs if job.state == QUEUED), key=lambda job: job.queued)
                if queued:
                    self._start(queued[0])

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                self._wake.wait(self.poll_s)
            try:
                self.tick()
            except Exception:  # the queue must outlive any one bad record or full disk
                log.exception("job scheduler pass failed")

    def close(self) -> None:
        """Stop scheduling and release the queue (running training processes go on; the next store adopts them)."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()
            if self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m distillation.jobs probe [--quick] PRESET --key=value ...`: one JSON line (an Estimate, or
    {"error": ...})."""
    args = list(sys.argv[1:] if argv is None else argv)
    quick = len(args) > 1 and args[1] == "--quick"
    if quick:
        del args[1]
    if len(args) < 2 or args[0] != "probe":
        print(main.__doc__, file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        estimate = probe(args[1], args[2:], steps=QUICK_PROBE_STEPS if quick else PROBE_STEPS, quick=quick)
    except ConfigError as error:
        print(json.dumps({"error": str(error)}), flush=True)
        return EXIT_BAD_INPUT
    except Exception as error:  # a teacher that cannot load, out of memory, a shape mismatch: the probe's verdict
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(json.dumps({"error": f"{type(error).__name__}: {first}"}), flush=True)
        return EXIT_FAILED
    print(json.dumps(dataclasses.asdict(estimate)), flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
