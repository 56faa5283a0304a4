"""The estimate: a probe process runs a job's own settings for a few steps, and its figures become an Estimate.

    python -m distillation.jobs probe [--quick] PRESET --key=value ...     (one JSON line: an Estimate or an error)

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

import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from distillation.config import ConfigError, load_config
from distillation.jobs.progress import failure_hint
from distillation.jobs.records import JobError
from distillation.trainer import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, Trainer

PROBE_STEPS = 3
QUICK_PROBE_STEPS = 2  # the fine-tune path's estimate: the first step warms up, the second is timed


class EstimateTimeout(JobError):
    """The estimate's trial run took too long (a busy machine): the settings may still be fine."""


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


def probe_command(python: str, preset: Path, overrides: Sequence[str], *, quick: bool = False) -> list[str]:
    """The probe process's argument list (never a shell string)."""
    return [python, "-m", "distillation.jobs", "probe", *(["--quick"] if quick else []), str(preset), *overrides]


def read_probe(done: subprocess.CompletedProcess, failed: str) -> Estimate:
    """The Estimate a finished probe process printed (its last JSON line); JobError "`failed`: why" when it failed."""
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    try:
        result = json.loads(lines[-1]) if lines else {}
    except ValueError:
        result = {}
    if done.returncode != 0 or "error" in result:
        reason = result.get("error") or failure_hint(done.stderr.splitlines()) or f"exit code {done.returncode}"
        raise JobError(f"{failed}: {reason}")
    return Estimate(**result)


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
        probe_overrides += [
            "--data.kind=synthetic",
            f"--data.size={target.batch_size}",
            "--select.every=0",
            "--time_limit_s=0",
        ]
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
