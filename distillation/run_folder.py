"""A run folder's records, which jobs and the UI read: status.json replaced atomically, metrics.jsonl rows appended
and cut back to a checkpoint's step on resume."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN or infinity: a non-finite logged value is written as null."""
    return value if math.isfinite(value) else None


def atomic_write(path: Path, text: str) -> None:
    """Write `path` whole or not at all (a temporary sibling renamed over it): a reader sees the old text or the new,
    never a part; a failed write leaves no temporary file behind."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_status(out: Path, state: str, **fields: Any) -> None:
    """out/status.json: the job record jobs and the UI read (state: running | done | failed | stopped)."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "status.json", json.dumps({"state": state, "updated": time.time(), **fields}, indent=2))


def append_metrics(out: Path, row: dict[str, Any]) -> None:
    """One row of out/metrics.jsonl."""
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def truncate_metrics(out: Path, step: int) -> None:
    """Drop the rows of out/metrics.jsonl logged after `step` (a resumed run logs them again)."""
    metrics = out / "metrics.jsonl"
    if metrics.is_file():
        rows = [r for r in metrics.read_text().splitlines() if r and json.loads(r)["step"] <= step]
        atomic_write(metrics, "".join(r + "\n" for r in rows))
