"""What a job's folder says about its run: the log's tail, trainer events in words, the newest checkpoint."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillation.checkpoint import PREFIX, checkpoints

LOG_TAIL_BYTES = 64 * 1024


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
        losses = [
            f"{key.replace('/loss', '').replace('_loss', '')} {value:.3g}"
            for key, value in numbers.items()
            if key.endswith("loss")
        ]
        speed = f"{1 / event['it_s']:.2f} s/step" if event.get("it_s") else ""
        parts = [
            f"step {step}/{event.get('total')}",
            "losses: " + ", ".join(losses) if losses else "",
            speed,
            f"about {_minutes(event.get('eta_s'))} left" if event.get("eta_s") is not None else "",
        ]
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
        ),
        "stopped": lambda e: f"step {e.get('step')}: stopped (checkpoint saved; Resume continues)",
        "failed": lambda e: f"step {e.get('step')}: failed: {e.get('reason')}",
        "done": lambda e: f"done at step {e.get('step')}",
    }
    return words[kind](event) if kind in words else line


def failure_hint(lines: Sequence[str], count: int = 3) -> str:
    """The last non-event lines of the log (the end of a traceback, an error line)."""
    text = [line.strip() for line in lines if line.strip() and not line.startswith(("{", "--- "))]
    return " | ".join(text[-count:])
