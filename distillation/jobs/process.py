"""A job's training process, told apart from a later one given the same pid: its pid and its start time (/proc)."""

from __future__ import annotations

import os
from pathlib import Path


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
