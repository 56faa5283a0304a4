"""`python -m distillation.train`: a run writes progress, metrics, previews, checkpoints and an export, resumes, and
refuses bad input with the reason; the GPU benchmark runs on a CPU at tiny size; `accelerate launch` (slow)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.state import AcceleratorState
from PIL import Image

from bench import train_gpu
from distillation import train
from distillation.config import load_config
from distillation.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
PRESET = ROOT / "distillation" / "presets" / "tiny_scm_ladd.toml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def events_of(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_a_run_writes_progress_metrics_previews_checkpoints_and_an_export_then_resumes(tmp_path, capsys):
    """In process (`python -m distillation.train` itself runs in test_checkpoint's new-process resume)."""
    out = tmp_path / "run"
    assert (
        train.main([str(PRESET), "--max_steps=2", "--checkpoint_every=1", "--preview.every=1", "--out", str(out)]) == 0
    )
    events = events_of(capsys.readouterr().out)
    kinds = [e["event"] for e in events]
    assert kinds == ["start", "preview"] + ["progress", "checkpoint", "preview"] * 2 + ["export", "done"]
    progress = [e for e in events if e["event"] == "progress"]
    assert [e["step"] for e in progress] == [1, 2] and all(e["total"] == 2 for e in progress)
    assert all(isinstance(e["it_s"], float) and e["eta_s"] is not None for e in progress)
    assert {"student/loss", "student/scm_loss", "student/adv_loss", "heads/loss", "heads/d_acc"} <= progress[0].keys()
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and rows[1]["student/loss"] == progress[1]["student/loss"]
    grids = sorted((out / "previews").glob("*.png"))
    assert [p.name for p in grids] == ["step_00000000.png", "step_00000001.png", "step_00000002.png"]
    assert Image.open(grids[0]).size == (4 * 64 + 3 * 2, 3 * 64 + 2 * 2)  # 4 seeds x (teacher, 1 step, 2 steps)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest", "step_00000001", "step_00000002"]
    export = events[-2]
    assert Path(export["manifest"]).is_file() and (Path(export["weights"]) / "transformer" / "config.json").is_file()
    # tiny_scm_ladd is a pipeline check: its student has no base model, so the registry never calls it usable
    assert export["registry"].startswith("not usable: cannot draw")
    assert json.loads((out / "status.json").read_text())["state"] == "done"

    assert train.main([str(PRESET), "--max_steps=3", "--out", str(out), "--resume", "latest"]) == 0
    resumed = events_of(capsys.readouterr().out)
    assert resumed[0] == {**resumed[0], "event": "start", "step": 2} and resumed[-1] == {"event": "done", "step": 3}
    assert [json.loads(r)["step"] for r in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert train.main([str(PRESET), "--max_steps=3", "--out", str(out), "--resume", "latest"]) == 2
    assert "the checkpoint is at step 3, max_steps is 3" in capsys.readouterr().err


@pytest.mark.parametrize(
    "arguments, reason",
    [
        (["--optim.lrr=1"], "unknown key 'optim.lrr'"),
        (["--max_steps=ten"], "max_steps: expected int, got str 'ten'"),
        (["--batch_size=1"], "batch_size: scm_ladd needs at least 2 samples per process"),
        (["--teacher.random=", "--teacher.path=/nonexistent/sana"], "teacher.path: /nonexistent/sana does not exist"),
        (["--teacher.kind=sdxl"], "teacher.kind: unknown teacher 'sdxl'"),
    ],
)
def test_bad_input_fails_before_the_job_with_the_reason(tmp_path, capsys, arguments, reason):
    assert train.main([str(PRESET), *arguments, "--out", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert reason in captured.err
    assert events_of(captured.out)[-1]["event"] == "failed" and reason in events_of(captured.out)[-1]["reason"]
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "failed" and reason in status["reason"]
    assert not (tmp_path / "checkpoints").exists()


def test_progress_bar_on_a_terminal(tmp_path, capsys):
    cfg = load_config(PRESET, ["--max_steps=2", "--preview.every=0", "--export.enabled=false"])
    assert Trainer(cfg, tmp_path, progress="bar").run() == 0
    captured = capsys.readouterr()
    assert "2/2" in captured.err and "student/loss" in captured.err  # tqdm's bar with the losses
    assert [e["event"] for e in events_of(captured.out)] == ["start", "checkpoint", "done"]


def test_gpu_benchmark_runs_on_a_cpu_at_tiny_size(capsys):
    AcceleratorState._reset_state(True)  # the benchmark runs bf16; this process's state may be set to "no"
    try:
        result = train_gpu.main(["--config", "tiny", "--steps", "2", "--warmup", "1", "--json"])
    finally:
        AcceleratorState._reset_state(True)
    assert events_of(capsys.readouterr().out)[-1] == result
    assert result["method"] == "scm_ladd" and result["dtype"] == "bf16" and result["batch"] == 2
    assert result["s_per_step"] > 0 and result["peak_memory_gb"] > 0 and result["skipped_updates"] == 0
    assert 0 < result["trainable_params_m"] and result["lora_rank"] == 32


@pytest.mark.slow
@pytest.mark.parametrize("launcher, processes", [("--cpu", 1), ("--multi_gpu", 2)])
def test_accelerate_launch(tmp_path, launcher, processes):
    """`accelerate launch --cpu` (accelerate 1.15: one process unless under mpirun) and `--multi_gpu` (torchrun; on a
    machine without CUDA the processes form a gloo group on the CPU) both run the job; only the main one prints."""
    out = tmp_path / "run"
    command = ["accelerate", "launch", launcher, "--num_processes", "2", "--num_machines", "1"]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no", "-m", "distillation.train", str(PRESET)]
    command += ["--max_steps=2", "--out", str(out)]
    env = {**ENV, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    events = events_of(done.stdout)
    assert events[0]["processes"] == processes and events[-1] == {"event": "done", "step": 2}
    assert sum(e["event"] == "progress" for e in events) == 2 and sum(e["event"] == "done" for e in events) == 1
    state = json.loads((out / "checkpoints" / "step_00000002" / "state.json").read_text())
    assert state["processes"] == processes and state["position"] == 2 * 2 * processes  # steps x batch x processes
