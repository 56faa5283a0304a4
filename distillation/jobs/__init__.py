"""Distillation jobs: records on disk, pre-launch checks, the probe's estimate, and the one-at-a-time queue.

records.py   a job's record (job.json) and its states
process.py   a job's training process, told apart from a reused pid
progress.py  what a job's folder says: the log in words, trainer events, the newest checkpoint
checks.py    a preset, its overrides, teacher and data refused before anything starts
probe.py     the estimate: a few real steps in a probe process (`python -m distillation.jobs probe ...`)
resources.py the memory and disk a new job may use
store.py     JobStore: launch, watch, cancel, resume, delete; the scheduler
"""

from distillation.jobs.checks import (
    FINETUNE_PRESET,
    PRESETS_DIR,
    check_data,
    check_overrides,
    check_preset,
    check_teacher,
    load_preset,
    presets,
)
from distillation.jobs.probe import PROBE_STEPS, QUICK_PROBE_STEPS, Estimate, EstimateTimeout, probe
from distillation.jobs.progress import Progress, readable
from distillation.jobs.records import (
    ACTIVE,
    DONE,
    FAILED,
    INTERRUPTED,
    JOBS_DIR,
    LIVE,
    QUEUED,
    RESUMABLE,
    RUNNING,
    STOPPED,
    STOPPING,
    Job,
    JobError,
    toml_string,
)
from distillation.jobs.store import JobStore

__all__ = [
    "ACTIVE",
    "DONE",
    "FAILED",
    "FINETUNE_PRESET",
    "INTERRUPTED",
    "JOBS_DIR",
    "LIVE",
    "PRESETS_DIR",
    "PROBE_STEPS",
    "QUEUED",
    "QUICK_PROBE_STEPS",
    "RESUMABLE",
    "RUNNING",
    "STOPPED",
    "STOPPING",
    "Estimate",
    "EstimateTimeout",
    "Job",
    "JobError",
    "JobStore",
    "Progress",
    "check_data",
    "check_overrides",
    "check_preset",
    "check_teacher",
    "load_preset",
    "presets",
    "probe",
    "readable",
    "toml_string",
]
