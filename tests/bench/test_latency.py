"""bench.latency as a subprocess on the tiny random model: the JSON contract (inputs and positive figures)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_latency_tiny_cpu_prints_json_report():
    command = [
        sys.executable,
        "-m",
        "bench.latency",
        "--config",
        "tiny",
        "--device",
        "cpu",
        "--iters",
        "3",
        "--warmup",
        "1",
        "--threads",  # a tiny model on a shared 2-core machine: see test_sd_turbo's one_thread
        "1",
        "--json",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    inputs = {
        "backend": "sd-turbo",
        "resolution": 256,
        "device": "cpu",
        "steps": 1,
        "dtype": "float32",
        "decoder": "vae",
        "iters": 3,
        "threads": 1,
    }
    assert {key: report[key] for key in inputs} == inputs
    assert report["device_name"] and report["torch"] and report["diffusers"]
    assert 0 < report["p50_ms"] <= report["p95_ms"]
    assert set(report["stages_p50_ms"]) == {"prompt", "control", "denoise", "decode"}
    assert report["stages_p50_ms"]["denoise"] > 0 and report["stages_p50_ms"]["decode"] > 0
    assert report["stages_p50_ms"]["denoise"] + report["stages_p50_ms"]["decode"] <= report["p95_ms"]
    assert report["peak_memory_mb"] is None  # measured on CUDA only


def test_latency_of_a_small_model_student_reports_its_teacher_ratio(tmp_path):
    """--model on a tiny-backend student whose manifest ships a teacher: the teacher@N / student@1 ratio is in the
    same JSON (issue "offline default")."""
    from tests.fakes import write_tiny_student_with_teacher

    write_tiny_student_with_teacher(tmp_path)
    command = [sys.executable, "-m", "bench.latency", "--model", "s", "--models-dir", str(tmp_path), "--device", "cpu"]
    command += ["--iters", "4", "--warmup", "1", "--threads", "1", "--teacher-steps", "4", "--json"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["backend"] == "tiny" and report["steps"] == 1 and report["resolution"] == 32
    assert report["teacher"]["steps"] == 4 and report["teacher"]["p50_ms"] > 0
    assert report["teacher_over_student_p50"] == report["teacher"]["p50_ms"] / report["p50_ms"]
    assert set(report["params_m"]) == {"model", "teacher"}
