"""Atomic checkpoints and exact resume: role weights, optimizers, EMA, per-process RNG states, sampler position, step.

A checkpoint is a folder `step_XXXXXXXX/` written as `.tmp-*` first (every file fsynced), then renamed into place
and named in `latest`; a failed write (a full disk) removes the temporary folder and leaves the earlier checkpoints
as they were. state.json is written last, so a folder without it is never a checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

PREFIX = "step_"
LATEST = "latest"
FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written or read; the message says which and what was kept."""


@dataclass
class TrainState:
    """Everything a job needs to continue bit for bit.

    roles: role -> its tensors (full state_dict, or only its LoRA adapter); ema: the student's EMA weights;
    optimizers: role -> optimizer state_dict; scaler: fp16 GradScaler state (None otherwise);
    rng: one `rng_state()` per process; position: samples drawn by the data sampler over all processes;
    skipped: non-finite role updates so far; config: the job's config as plain data.
    """

    step: int
    position: int
    skipped: int
    roles: dict[str, dict[str, Tensor]]
    ema: dict[str, Tensor]
    optimizers: dict[str, dict[str, Any]]
    rng: list[dict[str, Any]]
    config: dict[str, Any]
    scaler: dict[str, Any] | None = None


# ---- RNG states ---------------------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """This process's torch (CPU and CUDA), numpy and Python RNG states, as tensors and numbers."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos)},
        "numpy_gauss": [int(has_gauss), float(cached)],
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `rng_state`."""
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    has_gauss, cached = state["numpy_gauss"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"], has_gauss, cached))
    python = state["python"]
    random.setstate((python["version"], tuple(int(v) for v in python["internal"].tolist()), python["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---- writing ------------------------------------------------------------------------------------------------------


def _write_file(path: Path, write: Callable[[Path], None]) -> None:
    """Write one file with `write(path)` and fsync it (the single place data reaches the disk)."""
    write(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _flat(groups: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
    return {
        f"{group}/{name}": t.detach().contiguous().cpu()
        for group, tensors in groups.items()
        for name, t in tensors.items()
    }


def checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def save_checkpoint(root: Path, state: TrainState, *, keep: int) -> Path:
    """Write `state` atomically as root/step_XXXXXXXX, point `latest` at it and keep the newest `keep`."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{state.step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=root))
    try:
        _write_file(tmp / "roles.safetensors", lambda p: save_file(_flat(state.roles), str(p)))
        _write_file(tmp / "ema.safetensors", lambda p: save_file(_flat({"ema": state.ema}), str(p)))
        optim = {"optimizers": state.optimizers, "scaler": state.scaler}
        _write_file(tmp / "optimizers.pt", lambda p: torch.save(optim, p))
        _write_file(tmp / "rng.pt", lambda p: torch.save(state.rng, p))
        meta = {
            "format": FORMAT,
            "step": state.step,
            "position": state.position,
            "skipped": state.skipped,
            "processes": len(state.rng),
            "config": state.config,
        }
        _write_file(tmp / "state.json", lambda p: p.write_text(json.dumps(meta, indent=2)))
        _fsync_dir(tmp)
        if final.exists():  # the same step saved again (a resume stopped at once): swap, then drop the old one
            old = Path(tempfile.mkdtemp(prefix=f".old-{final.name}-", dir=root))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(root)
        pointer = root / f".{LATEST}.tmp"
        _write_file(pointer, lambda p: p.write_text(final.name))
        os.replace(pointer, root / LATEST)
        _fsync_dir(root)
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        kept = [p.name for p in checkpoints(root)]
        previous = f"earlier checkpoint {kept[-1]} kept" if kept else "no earlier checkpoint"
        raise CheckpointError(f"checkpoint at step {state.step} not written ({error}); {previous}") from error
    for old in checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-*"):  # left by a process killed mid-save
        shutil.rmtree(stale, ignore_errors=True)
    return final


# ---- reading ------------------------------------------------------------------------------------------------------


def resolve(root: Path, which: str) -> Path:
    """`which` = "latest" (the newest complete checkpoint under root) or a checkpoint folder."""
    if which != LATEST:
        path = Path(which)
        if not (path / "state.json").is_file():
            raise CheckpointError(f"--resume {which}: not a checkpoint folder (no state.json)")
        return path
    pointer = root / LATEST
    if pointer.is_file():
        named = root / pointer.read_text().strip()
        if (named / "state.json").is_file():
            return named
    found = checkpoints(root)
    if not found:
        raise CheckpointError(f"--resume latest: no checkpoint in {root}")
    return found[-1]


def _unflat(tensors: dict[str, Tensor]) -> dict[str, dict[str, Tensor]]:
    groups: dict[str, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        group, name = key.split("/", 1)
        groups.setdefault(group, {})[name] = value
    return groups


def load_checkpoint(path: Path) -> TrainState:
    """Read a checkpoint folder written by `save_checkpoint`."""
    try:
        meta = json.loads((path / "state.json").read_text())
        optim = torch.load(path / "optimizers.pt", weights_only=True)
        rng = torch.load(path / "rng.pt", weights_only=True)
        roles = _unflat(load_file(str(path / "roles.safetensors")))
        ema = _unflat(load_file(str(path / "ema.safetensors"))).get("ema", {})
    except (OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error}") from error
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {meta.get('format')} is not {FORMAT}")
    return TrainState(
        step=meta["step"],
        position=meta["position"],
        skipped=meta["skipped"],
        roles=roles,
        ema=ema,
        optimizers=optim["optimizers"],
        scaler=optim["scaler"],
        rng=rng,
        config=meta["config"],
    )
