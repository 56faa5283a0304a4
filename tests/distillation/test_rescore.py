"""python -m distillation.rescore RUN: each kept checkpoint's EMA student from select.start on is scored on the run's
validation pairs with another select metric, the lowest is picked and, with --export, exported; the run's own record is
left as it trained."""

import json

import pytest
import torch
from safetensors.torch import load_file

from distillation import rescore
from distillation.checkpoint import checkpoints, load_checkpoint
from distillation.config import load_config
from distillation.trainer import Trainer
from tests.distillation.test_validate import PRESET, needs_effnet, overrides, pairs_with_pool


def test_pick_takes_the_lowest_finite_score_and_the_earliest_on_ties():
    rows = [{"step": 1, "m": 3.0}, {"step": 2, "m": float("nan")}, {"step": 3, "m": 1.0}, {"step": 4, "m": 1.0}]
    assert rescore.pick(rows, "m")["step"] == 3
    with pytest.raises(ValueError, match="no checkpoint has a finite m"):
        rescore.pick([{"step": 1, "m": float("inf")}], "m")


@needs_effnet
def test_rescore_scores_each_checkpoint_and_exports_the_best(tmp_path, capsys):
    root = pairs_with_pool(tmp_path / "pairs")
    args = overrides(root, tmp_path / "models", "--select.every=1", "--select.n=10", "--checkpoint_every=1")
    run = tmp_path / "run"
    trainer = Trainer(load_config(PRESET, [*args, "--keep_checkpoints=5", "--select.start=2"]), run, progress="json")
    trainer.setup()
    assert trainer.train() == 0
    record, metrics = (run / "config.toml").read_text(), (run / "metrics.jsonl").read_text()
    capsys.readouterr()
    code = rescore.main([str(run), "--metric", "fd_colour", "--export", f"--export.models_dir={tmp_path / 'again'}"])
    assert code == 0, capsys.readouterr().err
    result = json.loads((run / "rescore.json").read_text())
    assert [row["step"] for row in result["rows"]] == [2, 3]  # from select.start on, as the run's own selection
    assert rescore.step_of(checkpoints(run / "checkpoints")[1]) == 2
    assert all({"fd_effnet", "colour_recall", "fd_colour"} <= row.keys() for row in result["rows"])
    for row in result["rows"]:
        assert row["fd_colour"] == pytest.approx(row["fd_effnet"] * (2 - row["colour_recall"]))
    best = min(result["rows"], key=lambda row: row["fd_colour"])
    assert result["best"]["step"] == best["step"]
    ema = load_checkpoint(checkpoints(run / "checkpoints")[best["step"] - 1]).ema
    exported = load_file(str(tmp_path / "again" / "tiny-scm-ladd" / "model.safetensors"))
    for name, value in ema.items():
        written = exported[name.split("flow_model.", 1)[-1]]
        assert torch.equal(written, value.to(written.dtype)), name
    manifest = (tmp_path / "again" / "tiny-scm-ladd.toml").read_text()
    assert f"step {best['step']} picked by validation fd_colour" in manifest
    assert (run / "config.toml").read_text() == record  # the run's record says how it trained
    assert (run / "metrics.jsonl").read_text() == metrics  # scoring step 2 does not rewind the log to step 2


def test_rescore_refuses_a_run_without_validation_in_words(tmp_path, capsys):
    root = pairs_with_pool(tmp_path / "pairs")
    run = tmp_path / "run"
    trainer = Trainer(load_config(PRESET, overrides(root, tmp_path / "models", "--checkpoint_every=1")), run)
    trainer.setup()
    assert trainer.train() == 0
    assert rescore.main([str(run)]) == 2
    assert "no [select] section" in capsys.readouterr().err
    assert rescore.main([str(run), "--optim.lr=1.0"]) == 2
    assert "only export.* and teacher.licence" in capsys.readouterr().err
