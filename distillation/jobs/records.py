"""A job's record: its states, the Job dataclass as job.json in <jobs>/<id>/, read and written atomically."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillation.run_folder import atomic_write

ROOT = Path(__file__).resolve().parents[2]
JOBS_DIR = ROOT / "runs" / "jobs"

QUEUED, RUNNING, STOPPING, DONE, STOPPED, INTERRUPTED, FAILED = (
    "queued",
    "running",
    "stopping",
    "done",
    "stopped",
    "interrupted",
    "failed",
)
LIVE = (RUNNING, STOPPING)  # a process exists (or existed when last seen)
ACTIVE = (QUEUED, *LIVE)
RESUMABLE = (STOPPED, INTERRUPTED, FAILED)

ID_RE = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6}")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # distillation.export.NAME, bounded


class JobError(ValueError):
    """A job request or action is refused; the message is for the person using the app, and nothing was changed."""


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


def toml_string(value: str) -> str:
    """A TOML basic string (an override value that stays a string whatever it looks like: 1e3, true, a path)."""
    return json.dumps(value)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`; {} when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_job(folder: Path, job: Job) -> None:
    """The record as <folder>/job.json."""
    atomic_write(folder / "job.json", json.dumps(dataclasses.asdict(job), indent=2))


def read_job(folder: Path) -> Job:
    """The record in <folder>/job.json (unknown keys ignored); JobError if there is none."""
    data = read_json(folder / "job.json")
    known = {f.name for f in dataclasses.fields(Job)}
    try:
        return Job(**{k: v for k, v in data.items() if k in known})
    except TypeError as error:
        raise JobError(f"no job {folder.name!r} (no readable job.json)") from error
