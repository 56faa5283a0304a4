"""The Fine-tune-on-my-pictures path: the folder's pictures and captions are counted, a two-step trial turns the
time budget into steps in seconds, and the job passes every pre-start check."""

import time

import pytest

from distillation.config import load_config
from distillation.jobs import FINETUNE_PRESET, QUEUED, JobError, JobStore
from pipelines.registry import Registry
from tests.distillation.test_jobs_store import make_teacher_models
from ui.finetune_form import (
    STARTUP_S,
    STOP_MARGIN_S,
    check_folder,
    estimate_words,
    finetune_check,
    finetune_overrides,
    free_name,
)


@pytest.fixture
def models(tmp_path) -> Registry:
    return Registry(make_teacher_models(tmp_path / "models"))


@pytest.fixture
def store(tmp_path, models, monkeypatch):
    """A JobStore with no scheduler thread; its probe processes get one thread each."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    store = JobStore(tmp_path / "jobs", models, gpus=0, poll_s=0.1, start=False)
    yield store
    store.close()


def test_finetune_form_checks_the_folder_and_its_estimate_answers_in_seconds(store, tmp_path):
    """The Distill tab's first path: the folder's usable pictures and captions are counted without preparing it;
    a two-step trial turns the budget into steps in under 10 s, then answers at once for another folder or budget."""
    from tests.distillation.test_data_folders import image_folder

    folder = image_folder(tmp_path / "my pictures")
    check = check_folder(f"  {folder}  ")
    assert (check.images, check.captioned, check.named, check.unreadable) == (5, 4, 1, ["broken.jpg"])
    assert "**5 usable pictures**" in check.text() and "1 cannot be opened and are skipped: broken.jpg" in check.text()
    with pytest.raises(JobError, match="does not exist"):
        check_folder(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(JobError, match="no pictures in"):
        check_folder(str(tmp_path / "empty"))
    with pytest.raises(JobError, match="more than 0 minutes"):
        finetune_overrides(str(folder), minutes=0, estimate=None)

    # how long the estimate takes is measured by `python -m bench.finetune --json` (estimate_s), not asserted here
    estimate = store.quick_estimate(FINETUNE_PRESET, finetune_overrides(str(folder), minutes=10, estimate=None))
    assert estimate.device == "cpu" and estimate.s_per_step > 0
    overrides = finetune_overrides(str(folder), minutes=10, estimate=estimate)
    cfg = load_config(FINETUNE_PRESET, overrides)
    assert cfg.data.path == str(folder) and cfg.time_limit_s == 600 - STOP_MARGIN_S and cfg.student.init
    assert STARTUP_S + estimate.setup_s + cfg.max_steps * estimate.s_per_step < cfg.time_limit_s  # the steps fit
    words = estimate_words(estimate, cfg.max_steps, 10)
    assert f"for {cfg.max_steps} steps** on this CPU" in words and "stops at 10 minutes" in words
    started = time.perf_counter()
    again = store.quick_estimate(FINETUNE_PRESET, finetune_overrides(str(tmp_path), minutes=3, estimate=None))
    assert again == estimate and time.perf_counter() - started < 1
    job = store.launch(FINETUNE_PRESET, overrides, name="mine")  # every pre-start check passes (teacher, data, disk)
    assert job.state == QUEUED and job.total == cfg.max_steps


def test_finetune_form_folder_box_says_what_is_wrong_and_the_name_box_offers_a_free_name(models, tmp_path):
    assert "Give the folder" in finetune_check("  ")
    assert finetune_check(str(tmp_path / "nowhere")).startswith("**Not usable:**")
    store = JobStore(tmp_path / "jobs", models, gpus=0, start=False)
    assert free_name(models, store) == "my-style" and free_name(models, store, "tiny-teacher") == "tiny-teacher-2"
