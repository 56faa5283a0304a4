"""What this machine has for a new job: memory (GPU 0, else the host's) and free disk."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

MIN_FREE_DISK_GB = 0.25  # without an estimate: room for the log, metrics and a checkpoint of a small model


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
