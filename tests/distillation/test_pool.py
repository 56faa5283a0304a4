"""distillation.pool: the teacher-sample split (teacher's pictures for seeded training sketches), read as a split."""

import json

import numpy as np
import pytest

from distillation.data import DataError, SketchPairs
from distillation.data.cli import main
from distillation.pool import build_teacher_pool, pick_items
from tests.fakes import write_sketch_pairs, write_tiny_student_with_teacher


def test_pick_items_is_seeded_sorted_and_distinct():
    a, b = pick_items(50, 10, seed=3), pick_items(50, 10, seed=3)
    assert np.array_equal(a, b) and np.array_equal(a, np.sort(a)) and len(set(a.tolist())) == 10
    assert not np.array_equal(a, pick_items(50, 10, seed=4))
    assert np.array_equal(pick_items(5, 10, seed=0), np.arange(5))


def test_teacher_pool_holds_the_teachers_pictures_for_training_sketches_and_reads_as_a_split(tmp_path):
    write_tiny_student_with_teacher(tmp_path / "models")
    root, sketch, image = write_sketch_pairs(tmp_path / "pairs", n=5, size=32)
    report = build_teacher_pool(root, tmp_path / "models" / "teacher", n=3, steps=2, seed=0, batch=2, progress=False)
    assert report["n"] == 3 and report["steps"] == 2
    with np.load(root / "teacher_pool.npz") as pool:
        items = pool["train_index"]
        assert pool["image"].shape == (3, 32, 32, 3) and pool["image"].dtype == np.uint8
        assert np.array_equal(pool["sketch"], sketch[items]) and np.array_equal(pool["caption_index"], items % 2)
        assert not np.array_equal(pool["image"], image[items])  # the teacher's pictures, not the training images
        first = pool["image"].copy()
    build_teacher_pool(root, tmp_path / "models" / "teacher", n=3, steps=2, seed=0, batch=3, progress=False)
    with np.load(root / "teacher_pool.npz") as pool:
        assert np.array_equal(pool["image"], first)  # per-item noise: the batch size does not change the pool
    pairs = SketchPairs(root, "teacher_pool")
    assert len(pairs) == 3 and pairs[0]["image"].shape == (3, 32, 32)
    assert not list(root.glob("*.partial*"))


def test_teacher_pool_refuses_a_student_a_missing_split_and_another_resolution(tmp_path):
    write_tiny_student_with_teacher(tmp_path / "models")
    root, _, _ = write_sketch_pairs(tmp_path / "pairs", n=3, size=32)
    with pytest.raises(DataError, match="distilled student"):
        build_teacher_pool(root, tmp_path / "models" / "student", n=2, steps=1, progress=False)
    with pytest.raises(DataError, match="teacher: .*config.json is missing"):
        build_teacher_pool(root, tmp_path / "nowhere", n=2, steps=1, progress=False)
    small, _, _ = write_sketch_pairs(tmp_path / "small", n=3, size=16)
    with pytest.raises(DataError, match="16 px sketches; the teacher draws 32 px"):
        build_teacher_pool(small, tmp_path / "models" / "teacher", n=2, steps=1, progress=False)
    with pytest.raises(DataError, match="distillation.data prepare"):
        build_teacher_pool(tmp_path / "empty", tmp_path / "models" / "teacher", n=2, steps=1, progress=False)
    with pytest.raises(DataError, match="build it with: python -m distillation.data teacher-pool"):
        SketchPairs(small, "teacher_pool")


def test_teacher_pool_cli_prints_a_json_report(tmp_path, capsys):
    write_tiny_student_with_teacher(tmp_path / "models")
    root, _, _ = write_sketch_pairs(tmp_path / "pairs", n=4, size=32)
    argv = ["teacher-pool", "--data", str(root), "--teacher", str(tmp_path / "models" / "teacher"), "--n", "2"]
    assert main([*argv, "--steps", "1", "--threads", "1"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["command"] == "teacher-pool" and report["n"] == 2 and (root / "teacher_pool.npz").is_file()


@pytest.mark.gpu
def test_teacher_pool_on_cuda_matches_the_cpu_pool_to_rounding(tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    write_tiny_student_with_teacher(tmp_path / "models")
    root, _, _ = write_sketch_pairs(tmp_path / "pairs", n=4, size=32)
    pools = {}
    for device in ("cpu", "cuda"):
        report = build_teacher_pool(root, tmp_path / "models" / "teacher", n=4, steps=2, device=device, progress=False)
        assert report["device"] == device
        with np.load(root / "teacher_pool.npz") as pool:
            pools[device] = pool["image"].astype(int)
    assert np.abs(pools["cpu"] - pools["cuda"]).max() <= 2  # the same noise; only float rounding differs


def test_teacher_pool_cli_pools_the_pairs_at_the_teachers_resolution_by_default(tmp_path, capsys, monkeypatch):
    write_tiny_student_with_teacher(tmp_path / "models")  # a 32 px teacher
    monkeypatch.chdir(tmp_path)  # the default data folder is relative: data/sketch_tiny/<resolution>
    write_sketch_pairs(tmp_path / "data" / "sketch_tiny" / "16", n=4, size=16)  # another resolution's pairs
    root, _, _ = write_sketch_pairs(tmp_path / "data" / "sketch_tiny" / "32", n=4, size=32)
    argv = ["teacher-pool", "--teacher", str(tmp_path / "models" / "teacher"), "--n", "2", "--steps", "1"]
    assert main([*argv, "--threads", "1"]) == 0
    assert (root / "teacher_pool.npz").is_file()
    assert not (tmp_path / "data" / "sketch_tiny" / "16" / "teacher_pool.npz").exists()
    assert main(["teacher-pool", "--teacher", str(tmp_path / "nowhere")]) == 2
    assert "give --data" in capsys.readouterr().err
