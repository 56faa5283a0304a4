"""Is a process alive: by pid alone, or by pid and start time (Linux /proc) so that a later process given the same pid
(a job's training process, restarted machines) does not count."""

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


def pid_alive(pid: int) -> bool:
    """Is some process `pid` running (it may be one that reused the pid: process_alive tells them apart)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive, owned by someone else
        return True
    return True
