"""The Distill tab: the form becomes overrides the trainer accepts, the views say what a job is doing, the compare
view draws teacher and student with real engines, and in Chromium a click on Launch shows the job's progress and its
student joins the Live tab's model picker."""

import dataclasses
import json
import shutil
import time

import gradio as gr
import numpy as np
import pytest

from distillation.config import load_config
from distillation.jobs import DONE, RUNNING, Job, JobError, JobStore, Progress, load_preset
from pipelines.host import LiveHost
from pipelines.registry import MODELS_DIR, Registry
from pipelines.tiny import save_tiny
from tests.distillation.test_jobs import PRESET, make_teacher_models, tiny_net
from ui.distill_tab import (
    best_validation,
    compare,
    job_rows,
    loss_frame,
    progress_text,
    request,
    teacher_models,
    validation_frame,
)
from ui.live import LiveSessions

STUDENT_MANIFEST = """name = "tiny-student"
title = "Tiny random student"
backend = "tiny"
resolution = 16
steps = 1
allowed_steps = [1, 2]
dtype = "float32"

[components]
weights = "./tiny-student"
"""


@pytest.fixture
def models(tmp_path) -> Registry:
    return Registry(make_teacher_models(tmp_path / "models"))


def form(**changes):
    """The tab's inputs in order (preset, method, teacher, model, path, family, controlnet, data, data path, augment,
    steps, lr, batch, LoRA rank, image folder, sketch extractor) as gr.Number gives them (floats)."""
    values = {"preset": "tiny_scm_ladd", "method": "scm_ladd", "teacher": "preset", "teacher_model": None,
              "teacher_path": "", "teacher_kind": "sana", "controlnet_path": "", "data": "synthetic",
              "data_path": "data/sketch_tiny/128", "augment": False, "steps": 20.0, "lr": 1e-4, "batch": 2.0,
              "lora_rank": 0.0, "folder_path": "", "sketch": "canny"}  # fmt: skip
    values.update(changes)
    return list(values.values())


def test_distill_tab_form_becomes_overrides_that_the_trainer_accepts(models):
    path, overrides, teacher = request(models, *form(method="scm", teacher="model", teacher_model="tiny-teacher",
                                                     steps=5.0, lr=1e-3, lora_rank=0.0))  # fmt: skip
    cfg = load_config(path, overrides)
    assert teacher == "tiny-teacher" and cfg.teacher.kind == "sketch_tiny" and not cfg.teacher.random
    assert cfg.teacher.path == str(models.models_dir / "tiny-teacher") and cfg.teacher.controlnet is False
    assert cfg.method.name == "scm" and cfg.optim.role_lr == {} and cfg.data.kind == "synthetic"
    assert (cfg.max_steps, cfg.optim.lr, cfg.batch_size, cfg.student.lora_rank) == (5, 1e-3, 2, 0)

    _, overrides, _ = request(models, *form(method="dmd2", lora_rank=4.0))  # the preset's sCM options are dropped
    cfg = load_config(path, overrides)
    assert cfg.method.name == "dmd2" and "tangent_warmup" not in cfg.method.options and cfg.student.lora_rank == 4
    _, overrides, _ = request(models, *form(method="twinflow"))
    with pytest.raises(JobError, match="batch_size: twinflow needs at least 4 samples"):
        load_preset(path, overrides)

    _, overrides, _ = request(models, *form(teacher="hub", teacher_path="someone/sana-teacher",
                                            controlnet_path="someone/sana-controlnet"))  # fmt: skip
    cfg = load_config(path, overrides)
    assert (cfg.teacher.path, cfg.teacher.controlnet_path, cfg.teacher.controlnet) == (
        "someone/sana-teacher",
        "someone/sana-controlnet",
        True,
    )
    with pytest.raises(JobError, match="teacher hub id 'not an id'"):
        request(models, *form(teacher="hub", teacher_path="not an id"))
    with pytest.raises(JobError, match="data 'my_photos': synthetic, sketch_pairs or image_folder"):
        request(models, *form(data="my_photos"))


def test_distill_tab_takes_a_folder_of_images_with_a_sketch_extractor(models, tmp_path, monkeypatch):
    from distillation import data as data_module
    from tests.distillation.test_data_folders import image_folder

    folder = image_folder(tmp_path / "my photos")
    choice = form(teacher="model", teacher_model="tiny-teacher", method="scm", data="image_folder",
                  folder_path=f"  {folder}  ", sketch="lineart", augment=True)  # fmt: skip
    path, overrides, _ = request(models, *choice)
    cfg = load_config(path, overrides)
    assert (cfg.data.kind, cfg.data.path, cfg.data.sketch, cfg.data.augment) == (
        "image_folder", str(folder), "lineart", True
    )  # fmt: skip
    assert not any("sketch_tiny/128" in item for item in overrides)  # the pairs textbox is not the folder
    with pytest.raises(JobError, match="give the folder of your images"):
        request(models, *form(data="image_folder", folder_path=""))
    _, overrides, _ = request(models, *form(data="image_folder", folder_path=str(tmp_path / "nowhere")))
    with pytest.raises(JobError, match="nowhere does not exist"):
        load_preset(path, overrides)
    monkeypatch.setattr(data_module.HED, "available", staticmethod(lambda: False))
    _, overrides, _ = request(models, *form(data="image_folder", folder_path=str(folder), sketch="hed"))
    with pytest.raises(JobError, match="'hed' needs the HED weights"):
        load_preset(path, overrides)


def test_distill_tab_shows_the_folder_box_and_only_usable_extractors(models, tmp_path, monkeypatch):
    from distillation import data as data_module
    from ui.distill_tab import build_distill_tab

    monkeypatch.setattr(data_module.HED, "available", staticmethod(lambda: False))
    store = JobStore(tmp_path / "jobs", models, gpus=0, start=False)
    host = LiveHost(models, "cpu")
    try:
        with gr.Blocks() as demo:
            build_distill_tab(store, LiveSessions(host, "tiny-teacher", tmp_path / "outputs"), models, gr.Dropdown())
    finally:
        host.close()
    by_label = {getattr(block, "label", None): block for block in demo.blocks.values()}
    assert isinstance(by_label["Image folder"], gr.Textbox)
    extractor = by_label["Sketch extractor"]
    assert [value for _, value in extractor.choices] == ["canny", "lineart"]  # no HED without its weights
    assert "HED (learned edges): its weights are not installed" in extractor.info  # and why the others are not
    assert "PiDiNet (controlnet-aux): its weights (table5_pidinet.pth" in extractor.info
    assert ("a folder of your images, each with an optional same-name .txt caption", "image_folder") in [
        tuple(choice) for choice in by_label["Data"].choices
    ]


def test_distill_tab_offers_registry_teachers_and_says_why_others_cannot_teach(tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(MODELS_DIR, folder, ignore=shutil.ignore_patterns("*.png"))
    make_teacher_models(folder)
    save_tiny(tiny_net(seed=1), folder / "tiny-student", extra={"kind": "trigflow"})
    (folder / "tiny-student.toml").write_text(STUDENT_MANIFEST)
    usable, note = teacher_models(Registry(folder))
    assert {"tiny-teacher", "tiny-random-sd", "sd-turbo-scribble"} <= set(usable)
    assert not {"tiny-student", "sana-sprint-0.6b", "sdxl-turbo-scribble"} & set(usable)
    assert "tiny-student is a distilled student" in note and "sana-sprint-0.6b: its teacher is an NVlabs" in note
    assert "sdxl-turbo-scribble: the trainer has no teacher family for backend 'sdxl'" in note


def test_distill_tab_views_show_progress_reasons_and_typed_loss_curves():
    job = Job(id="20260101-000000-abcdef", preset=str(PRESET), overrides=[], name="s1", created=0.0, total=10,
              state=RUNNING)  # fmt: skip
    progress = Progress(step=3, total=10, it_s=1.5, eta_s=4.7, checkpoint_step=2, metrics=[], preview=None,
                        log_tail="")  # fmt: skip
    text = progress_text(job, progress)
    assert "running** · step 3/10 · 1.50 it/s · ETA 5 s · checkpoint at step 2" in text
    stopped = dataclasses.replace(job, state="stopped", reason="cancelled at step 3; resumable from step 3")
    text = progress_text(dataclasses.replace(stopped, resume=True), progress)
    assert "cancelled at step 3" in text and "Resume continues in the same folder from the checkpoint." in text
    done = dataclasses.replace(job, state=DONE, export="listed")
    assert "Student `s1`: listed in the Live tab's model picker." in progress_text(done, progress)
    assert job_rows([job])[0][:4] == [job.id, RUNNING, 10, "s1"]

    rows = [{"step": 1, "a/loss": 0.5, "a/grad_norm": 3.0}, {"step": 2, "a/loss": None, "b/loss": 1.0}]
    frame = loss_frame(rows)
    assert frame.values.tolist() == [[1, 0.5, "a/loss"], [2, 1.0, "b/loss"]]
    plot = gr.LinePlot(x="step", y="value", color="series").postprocess(frame)
    assert plot.datatypes == {"step": "quantitative", "value": "quantitative", "series": "nominal"}
    assert loss_frame([]) is None  # never an empty frame: Gradio's plot then draws no lines for later data


def test_distill_tab_plots_validation_apart_from_losses_and_names_the_selected_step():
    # metrics.jsonl of a [select] run: training rows with losses, validation rows appended between them
    rows = [{"step": s, "scm/loss": 1.0 / s} for s in range(1, 7)]
    rows.insert(3, {"step": 3, "val/fd_effnet@1": 260.0})
    rows.insert(6, {"step": 5, "val/fd_effnet@1": 240.5})
    rows.append({"step": 6, "val/fd_effnet@1": None})  # a non-finite score is logged as null
    frame = validation_frame(rows)
    assert frame.values.tolist() == [[3, 260.0, "val/fd_effnet@1"], [5, 240.5, "val/fd_effnet@1"]]
    assert "val/fd_effnet@1" not in set(loss_frame(rows)["series"])
    assert best_validation(rows) == ("val/fd_effnet@1", 5, 240.5)
    assert best_validation(rows[:3]) is None and validation_frame(rows[:3]) is None
    # thinning keeps every series: 5000 loss rows must not crowd out the sparse validation rows
    many = [{"step": s, "scm/loss": 0.1} for s in range(5000)] + [{"step": 4999, "val/fd_effnet@1": 1.0}]
    assert len(loss_frame(many, limit=100)) == 100 and len(loss_frame(many[:150], limit=100)) == 75
    assert len(validation_frame(many)) == 1
    job = Job(id="20260101-000000-abcdef", preset=str(PRESET), overrides=[], name="s1", created=0.0, total=10,
              state=RUNNING)  # fmt: skip
    progress = Progress(step=6, total=10, it_s=None, eta_s=None, checkpoint_step=None, metrics=rows, preview=None,
                        log_tail="")  # fmt: skip
    assert "Best validation fd_effnet@1: 240.5 at step 5" in progress_text(job, progress)


def test_distill_tab_compare_draws_teacher_and_student_on_the_live_sketch_or_says_why_not(models, tmp_path):
    save_tiny(tiny_net(seed=1), models.models_dir / "tiny-student", extra={"kind": "trigflow"})
    (models.models_dir / "tiny-student.toml").write_text(STUDENT_MANIFEST)
    models.refresh()
    store = JobStore(tmp_path / "jobs", models, gpus=0, start=False)
    base = Job(id="20260101-000000-000001", preset=str(PRESET), overrides=[], name="tiny-student", created=0.0,
               state=DONE, teacher_model="tiny-teacher")  # fmt: skip
    records = [base, dataclasses.replace(base, id="20260101-000000-000002", teacher_model=""),
               dataclasses.replace(base, id="20260101-000000-000003", state=RUNNING)]  # fmt: skip
    for record in records:
        (store.folder / record.id).mkdir(parents=True)
        (store.folder / record.id / "job.json").write_text(json.dumps(dataclasses.asdict(record)))
    host = LiveHost(models, "cpu")
    sessions = LiveSessions(host, "tiny-teacher", tmp_path / "outputs")
    try:
        with pytest.raises(JobError, match="draw something on the Live tab first"):
            compare(sessions, store, models, base.id, "tab1", 8)
        state = sessions.session("tab1")
        state.sketch = np.full((64, 64, 3), 255, np.uint8)
        state.sketch[10:50, 30:33] = 0
        state.params = {"prompt": "", "seed": 7, "steps": 1, "strength": 1.0, "resolution": 128, "model": "x"}
        teacher, student, note = compare(sessions, store, models, base.id, "tab1", 8)
        assert teacher is not None and student is not None and teacher.tobytes() != student.tobytes()
        assert "teacher `tiny-teacher`, 8 steps:" in note and "student `tiny-student`, 1 step:" in note
        assert " ms" in note and "seed 7" in note
        teacher, student, note = compare(sessions, store, models, records[1].id, "tab1", 8)
        assert teacher is None and student is not None and "no teacher shown" in note
        with pytest.raises(JobError, match="is running: it has no student yet"):
            compare(sessions, store, models, records[2].id, "tab1", 8)
    finally:
        host.close()


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium is not installed")
def test_distill_tab_browser_launch_shows_progress_and_the_student_joins_the_live_picker(tmp_path, monkeypatch):
    from bench.distill_ui import job_status, open_distill_tab, open_distill_teacher, wait_for_status
    from bench.e2e import browser, draw_stroke, running_app, wait_idle

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    models = make_teacher_models(tmp_path / "models")
    with (
        running_app(models_dir=models, jobs=tmp_path / "jobs", outputs=tmp_path / "outputs") as (url, _),
        browser() as chromium,
    ):
        page = open_distill_tab(chromium, url)
        open_distill_teacher(page, advanced=True)
        page.get_by_label("a model of this app").check()
        page.get_by_label("Method").click()
        page.get_by_role("option", name="sCM (consistency only)").click()
        steps = page.get_by_label("Steps", exact=True)
        steps.fill("60")  # about 3 s on one thread: several of the tab's 1 s polls (4 steps fit between two)
        steps.press("Tab")
        page.get_by_label("Estimate memory and time first").uncheck()
        page.locator("#ss-launch").click()
        note = page.locator("#ss-launch-note")
        note.get_by_text("Launched job").wait_for(timeout=60_000)
        assert "starting now" in note.inner_text()
        seen = set()
        deadline = time.time() + 240
        while "· done" not in (status := job_status(page)) and time.time() < deadline:
            if "· running · step" in status:
                seen.add(int(status.split("· step ")[1].split("/")[0]))
            page.wait_for_timeout(200)
        status = wait_for_status(page, "· done", timeout_s=5)
        assert "step 60/60" in status and "listed in the Live tab's model picker" in status
        assert seen - {0}, f"no progress was shown while the job ran: {seen}"
        student = status.split("Student ")[1].split(":")[0].strip("` \n")

        page.get_by_role("tab", name="Live").click()
        page.get_by_role("combobox", name="Model", exact=True).first.click()  # the Live tab's picker
        page.get_by_role("option", name=student).click()  # hot-swapped into the picker: no restart
        page.wait_for_timeout(500)
        draw_stroke(page, 1)
        wait_idle(page)
        stats = page.evaluate("() => window.__ss.stats")
        assert stats["frames"] >= 1 and stats["errors"] == 0
        assert "error" not in page.locator("#ss-notice").inner_text().lower()


def draws_on_the_live_canvas(page, model: str) -> None:
    """Pick `model` in the Live tab's picker, draw a stroke: frames come back and none is an error."""
    from bench.e2e import draw_stroke, wait_idle

    page.get_by_role("tab", name="Live").click()
    page.get_by_role("combobox", name="Model", exact=True).first.click()
    page.get_by_role("option", name=model, exact=True).click()
    page.wait_for_timeout(500)
    draw_stroke(page, 1)
    wait_idle(page, timeout_s=60)
    stats = page.evaluate("() => window.__ss.stats")
    assert stats["frames"] >= 1 and stats["errors"] == 0, stats
    assert "error" not in page.locator("#ss-notice").inner_text().lower()


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium is not installed")
def test_distill_tab_browser_fine_tune_on_my_pictures_then_draw_with_the_new_model(tmp_path, monkeypatch):
    """Issue 24's first path as a person takes it: a folder, the check and the estimate, a (small) budget, Start;
    when it is done the new model is in the Live tab's picker and draws."""
    from bench.distill_ui import open_distill_tab, wait_for_status
    from bench.e2e import browser, running_app
    from bench.finetune import style_folder

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    folder = tmp_path / "my pictures"
    style_folder(folder, 6)
    models = make_teacher_models(tmp_path / "models")
    with (
        running_app(models_dir=models, jobs=tmp_path / "jobs", outputs=tmp_path / "outputs") as (url, _),
        browser() as chromium,
    ):
        page = open_distill_tab(chromium, url)
        box = page.locator("#ss-ft-folder textarea, #ss-ft-folder input").first
        box.fill(str(folder))
        box.press("Tab")
        page.locator("#ss-ft-check").get_by_text("6 usable pictures").wait_for(timeout=30_000)
        assert (
            "1 with a caption (.txt beside it), 5 captioned from the file name"
            in page.locator("#ss-ft-check").inner_text()
        )
        page.locator("#ss-ft-estimate").get_by_text("steps").wait_for(timeout=120_000)
        assert "on this CPU" in page.locator("#ss-ft-estimate").inner_text()
        assert page.locator("#ss-ft-name textarea, #ss-ft-name input").first.input_value() == "my-style"
        minutes = page.locator("#ss-ft-minutes input")
        minutes.fill("0.4")  # the default is 10; a short budget keeps the test short
        minutes.press("Tab")
        page.locator("#ss-ft-start").click()
        page.wait_for_function("/Started job|Not started/.test(document.querySelector('#ss-ft-note').innerText)",
                               timeout=120_000)  # fmt: skip
        assert "Started job" in page.locator("#ss-ft-note").inner_text()
        status = wait_for_status(page, "· done", timeout_s=300)
        assert "Student my-style: listed in the Live tab's model picker." in status
        log = page.locator("#ss-log textarea").input_value()
        assert "data ready: 6 pictures" in log and '{"event"' not in log
        draws_on_the_live_canvas(page, "my-style")


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium is not installed")
def test_distill_tab_browser_default_distill_launch_gives_a_student_that_draws(tmp_path, monkeypatch):
    """ "Distill a teacher" with its defaults (the bundled teacher, its runnable student recipe, the estimate first),
    only the step count lowered for the test: the student is ready and draws."""
    from bench.distill_ui import open_distill_tab, open_distill_teacher, wait_for_status
    from bench.e2e import browser, running_app

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(MODELS_DIR / "sketch-tiny-teacher", models / "sketch-tiny-teacher")
    shutil.copy(MODELS_DIR / "sketch-tiny-teacher.toml", models)
    with (
        running_app(models_dir=models, jobs=tmp_path / "jobs", outputs=tmp_path / "outputs") as (url, _),
        browser() as chromium,
    ):
        page = open_distill_tab(chromium, url)
        open_distill_teacher(page, advanced=True)
        assert page.get_by_label("Teacher model").input_value() == "sketch-tiny-teacher"
        steps = page.get_by_label("Steps", exact=True)
        steps.fill("3")
        steps.press("Tab")
        page.locator("#ss-launch").click()
        page.locator("#ss-launch-note").get_by_text("Launched job").wait_for(timeout=300_000)
        status = wait_for_status(page, "· done", timeout_s=300)
        assert "listed in the Live tab's model picker" in status, status
        student = status.split("Student ")[1].split(":")[0].strip("` \n")
        assert student.startswith("sketch-tiny-scm-")
        draws_on_the_live_canvas(page, student)


def test_distill_tab_defaults_work_here_and_pipeline_checks_come_last_labelled(models, tmp_path, monkeypatch):
    from distillation.jobs import Estimate
    from ui import distill_tab
    from ui.distill_tab import default_preset, estimate_text, finetune_check, free_name, preset_choices

    choices = preset_choices()
    names = [name for _, name in choices]
    assert "finetune_sketch_tiny" not in names  # the other path's
    checks = [label for label, name in choices if name.startswith("tiny_")]
    assert checks and names[-len(checks) :] == ["tiny_dmd2", "tiny_scm_ladd"]
    assert all("pipeline check: random weights, its student cannot draw" in label for label in checks)
    assert default_preset() == "sketch_tiny_scm"  # no prepared pairs in a fresh clone: the runnable recipe
    monkeypatch.setattr(distill_tab, "load_preset", lambda path: path)  # as if data/sketch_tiny/128 were prepared
    monkeypatch.setattr(distill_tab, "check_data", lambda cfg: None)
    assert default_preset() == "sketch_tiny_scm_ladd"

    assert "Give the folder" in finetune_check("  ")
    assert finetune_check(str(tmp_path / "nowhere")).startswith("**Not usable:**")
    store = JobStore(tmp_path / "jobs", models, gpus=0, start=False)
    assert free_name(models, store) == "my-style" and free_name(models, store, "tiny-teacher") == "tiny-teacher-2"

    estimate = Estimate(device="cpu", max_steps=100, frozen_params=1, trainable_params=1, student_params=1,
                        setup_s=2.0, s_per_step=3.0, peak_memory_gb=0.7, weights_gb=0.1, memory_gb=0.71,
                        time_s=302.0, disk_gb=0.1)  # fmt: skip
    text = estimate_text(estimate)
    assert text.startswith("**About 5 minutes for 100 steps** on this CPU (3.00 s a step, measured just now).")
    assert estimate_text(dataclasses.replace(estimate, max_steps=3)).startswith("**Under a minute for 3 steps**")
    assert "Needs about 0.7 GB of memory" in text
