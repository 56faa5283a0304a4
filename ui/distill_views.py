"""A job as the Distill tab shows it: the jobs table's rows, its status in words, an estimate in words, and the loss
and validation curves."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from distillation.jobs import DONE, LIVE, PROBE_STEPS, RESUMABLE, Estimate, Job, Progress
from ui.finetune_form import estimate_words


def duration(seconds: float | None) -> str:
    """Seconds as "N s", "M min SS s" or "H h MM min"; "?" when unknown."""
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def estimate_text(estimate: Estimate) -> str:
    """An Estimate in plain words first ("about N minutes for M steps on this CPU"), then the figures behind it."""
    memory = f"memory ≈ **{estimate.memory_gb:.2f} GB** (probe peak {estimate.peak_memory_gb:.2f} GB"
    return (
        f"{estimate_words(estimate, estimate.max_steps)} Needs about {estimate.memory_gb:.1f} GB of memory and "
        f"{estimate.disk_gb * 1024:.0f} MB of disk.\n\n"
        f"Details (a {PROBE_STEPS}-step probe of these settings on {estimate.device}; formulas in "
        f"`distillation/jobs/probe.py`): {memory}; weights and optimizer state by parameter count "
        f"{estimate.weights_gb:.3f} GB), time ≈ **{duration(estimate.time_s)}** (set-up {estimate.setup_s:.0f} s + "
        f"{estimate.max_steps} steps × {estimate.s_per_step:.2f} s), disk ≈ {estimate.disk_gb * 1024:.0f} MB. "
        f"Parameters: {estimate.frozen_params:,} frozen, {estimate.trainable_params:,} trained."
    )


def job_rows(jobs: list[Job]) -> list[list[Any]]:
    """Rows of the jobs table, newest first."""
    return [
        [
            job.id,
            job.state,
            job.total,
            job.name,
            Path(job.preset).stem,
            time.strftime("%Y-%m-%d %H:%M", time.localtime(job.created)),
            job.reason,
        ]
        for job in jobs
    ]


def progress_text(job: Job, progress: Progress) -> str:
    """The selected job in a few lines: state, step/total, it/s, ETA, checkpoint, why it ended, its student."""
    head = f"**{job.id} · {job.state}** · step {progress.step}/{progress.total}"
    if job.state in LIVE and progress.it_s:
        head += f" · {progress.it_s:.2f} it/s · ETA {duration(progress.eta_s)}"
    if progress.checkpoint_step is not None:
        head += f" · checkpoint at step {progress.checkpoint_step}"
    lines = [head]
    if best := best_validation(progress.metrics):
        key, step, score = best
        name = key.removeprefix("val/")
        lines.append(f"Best validation {name}: {score:.1f} at step {step} (the student it exports).")
    if job.reason:
        lines.append(job.reason)
    if job.state in RESUMABLE:
        lines.append("Resume continues in the same folder" + (" from the checkpoint." if job.resume else "."))
    if job.state == DONE:
        where = "listed in the Live tab's model picker" if job.export == "listed" else job.export or "not exported"
        lines.append(f"Student `{job.name}`: {where}.")
    return "\n\n".join(lines)


def curve_frame(metrics: list[dict[str, Any]], keep: Callable[[str], bool], limit: int = 2000) -> pd.DataFrame | None:
    """Long-form curves (step, value, series) of every logged numeric value whose key passes `keep`, each series
    thinned to at most `limit` points; None before the first point (Gradio's plot draws no lines at all once it was
    given an empty frame)."""
    keys = sorted({key for row in metrics for key in row if keep(key)})
    rows = []
    for key in keys:
        points = [(row["step"], row[key], key) for row in metrics if isinstance(row.get(key), int | float)]
        rows += points[:: max(1, -(-len(points) // limit))]  # ceil: at most `limit` points
    if not rows:
        return None
    rows.sort(key=lambda row: row[0])
    return pd.DataFrame(rows, columns=["step", "value", "series"]).astype({"value": "float64"})


def loss_frame(metrics: list[dict[str, Any]], limit: int = 2000) -> pd.DataFrame | None:
    """The loss curves: every logged `*loss` value."""
    return curve_frame(metrics, lambda key: key.endswith("loss"), limit)


def validation_frame(metrics: list[dict[str, Any]]) -> pd.DataFrame | None:
    """The validation curves of a run with `[select]`: every logged `val/<metric>@<steps>` score."""
    return curve_frame(metrics, lambda key: key.startswith("val/"))


def best_validation(metrics: list[dict[str, Any]]) -> tuple[str, int, float] | None:
    """(key, step, score) of the lowest validation score logged (the checkpoint a `[select]` run exports; every
    metric in SELECT_METRICS is lower-is-better); None when nothing was validated."""
    scores = [
        (row[key], row["step"], key)
        for row in metrics
        for key in row
        if key.startswith("val/") and isinstance(row[key], int | float) and math.isfinite(row[key])
    ]
    if not scores:
        return None
    score, step, key = min(scores)
    return key, step, score
