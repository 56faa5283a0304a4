"""Checkpoints: resume is exact (a new process continues bit for bit), saves are atomic, a full disk loses nothing."""

import errno
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from distillation import checkpoint
from distillation.checkpoint import (
    CheckpointError,
    TrainState,
    checkpoints,
    load_checkpoint,
    resolve,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from distillation.config import load_config
from distillation.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
PRESET = ROOT / "distillation" / "presets" / "tiny_scm_ladd.toml"
QUIET = ["--preview.every=0", "--export.enabled=false"]


def same(a, b) -> bool:
    """Exact equality of nested checkpoint data (tensors: same dtype and bits)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def assert_same_state(a: TrainState, b: TrainState) -> None:
    assert (a.step, a.position, a.skipped) == (b.step, b.position, b.skipped)
    for group in ("roles", "ema", "optimizers", "scaler", "rng"):
        assert same(getattr(a, group), getattr(b, group)), f"{group} differ"


def tiny_state(step: int) -> TrainState:
    g = torch.Generator().manual_seed(step)
    weights = {"w": torch.randn(3, 2, generator=g), "b": torch.randn(2, generator=g)}
    return TrainState(
        step=step,
        position=4 * step,
        skipped=0,
        roles={"student": weights},
        ema={"w": weights["w"].clone()},
        optimizers={"student": {"state": {0: {"step": torch.tensor(float(step))}}, "param_groups": [{"lr": 0.1}]}},
        rng=[rng_state()],
        config={"name": "t"},
    )


def test_rng_state_round_trip():
    state = rng_state()
    draws = torch.rand(3), np.random.rand(3), random.random()
    set_rng_state(state)
    assert torch.equal(torch.rand(3), draws[0]) and np.array_equal(np.random.rand(3), draws[1])
    assert random.random() == draws[2]


def test_save_load_prune_and_latest(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, tiny_state(step), keep=2)
    assert [p.name for p in checkpoints(tmp_path)] == ["step_00000002", "step_00000003"]
    assert resolve(tmp_path, "latest").name == "step_00000003"
    assert_same_state(load_checkpoint(resolve(tmp_path, "latest")), tiny_state(3))
    save_checkpoint(tmp_path, tiny_state(3), keep=2)  # the same step again replaces it in place
    assert [p.name for p in checkpoints(tmp_path)] == ["step_00000002", "step_00000003"]
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        resolve(tmp_path / "empty", "latest")
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        resolve(tmp_path, str(tmp_path))


def fail_writes_in(monkeypatch, step_name: str) -> None:
    """Simulate a full disk: every write into the temporary folder of checkpoint `step_name` fails."""
    real = checkpoint._write_file

    def write(path, writer):
        if f".tmp-{step_name}-" in str(path):
            real(path, writer)  # part of the file reaches the disk, then the device is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, writer)

    monkeypatch.setattr(checkpoint, "_write_file", write)


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, tiny_state(1), keep=2)
    before = {p.name: p.read_bytes() for p in (tmp_path / "step_00000001").iterdir()}
    fail_writes_in(monkeypatch, "step_00000002")
    with pytest.raises(CheckpointError, match=r"step 2 not written .*No space left on device.*step_00000001 kept"):
        save_checkpoint(tmp_path, tiny_state(2), keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_00000001"]  # no half-written folder
    assert {p.name: p.read_bytes() for p in (tmp_path / "step_00000001").iterdir()} == before
    assert resolve(tmp_path, "latest").name == "step_00000001"


def test_full_disk_during_a_job_fails_it_with_the_reason(tmp_path, monkeypatch):
    fail_writes_in(monkeypatch, "step_00000002")
    cfg = load_config(PRESET, [*QUIET, "--max_steps=3", "--checkpoint_every=1"])
    assert Trainer(cfg, tmp_path, progress="json").run() == 1
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "failed" and status["step"] == 2
    assert "No space left on device" in status["reason"] and "step_00000001 kept" in status["reason"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step_00000001"]
    assert load_checkpoint(resolve(tmp_path / "checkpoints", "latest")).step == 1


def resume(path: Path, overrides: list[str], out: Path, *, new_process: bool) -> list[dict]:
    """Continue the job in `out` from its latest checkpoint; returns the events it printed (new process only)."""
    if not new_process:
        assert Trainer(load_config(path, overrides), out, resume="latest", progress="json").run() == 0
        return []
    command = [
        sys.executable,
        "-m",
        "distillation.train",
        str(path),
        *overrides,
        "--out",
        str(out),
        "--resume",
        "latest",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.mark.parametrize(
    "preset, new_process",
    [("tiny_scm_ladd.toml", True), ("tiny_dmd2.toml", False)],
    ids=["scm_ladd-full-weights-new-process", "dmd2-lora-new-trainer"],
)
def test_resume_is_bit_exact(tmp_path, preset, new_process):
    """4 steps straight == 2 steps, checkpoint, resume with --resume latest (in a new process: a subprocess), 2 more
    steps: weights, EMA, optimizer states, RNG states, sampler position and logged losses all equal bit for bit."""
    path = ROOT / "distillation" / "presets" / preset
    overrides = [*QUIET, "--checkpoint_every=2"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert Trainer(load_config(path, [*overrides, "--max_steps=4"]), straight, progress="json").run() == 0
    assert Trainer(load_config(path, [*overrides, "--max_steps=2"]), split, progress="json").run() == 0
    events = resume(path, [*overrides, "--max_steps=4"], split, new_process=new_process)
    if new_process:
        assert events[0]["event"] == "start" and events[0]["step"] == 2 and events[-1]["event"] == "done"
    a = load_checkpoint(straight / "checkpoints" / "step_00000004")
    b = load_checkpoint(split / "checkpoints" / "step_00000004")
    assert_same_state(a, b)
    assert not same(a.roles, load_checkpoint(straight / "checkpoints" / "step_00000002").roles)  # it trained
    rows = [[json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()] for run in (straight, split)]
    strip = [[{k: v for k, v in r.items() if k != "time"} for r in run] for run in rows]
    assert strip[0] == strip[1] and [r["step"] for r in strip[1]] == [1, 2, 3, 4]
