"""The Distill tab: its layout offers only the usable sketch extractors, the compare view draws teacher and student
with real engines, and in Chromium a click on Launch shows the job's progress and its student joins the Live tab's
model picker."""

import dataclasses
import json
import shutil
import time

import gradio as gr
import numpy as np
import pytest

from distillation.jobs import DONE, RUNNING, Job, JobError, JobStore
from pipelines.host import LiveHost
from pipelines.registry import MODELS_DIR, Registry
from pipelines.tiny import save_tiny
from tests.distillation.test_jobs_store import PRESET, make_teacher_models, tiny_net
from tests.ui.test_distill_form import STUDENT_MANIFEST
from ui.distill_tab import compare
from ui.live import LiveSessions


@pytest.fixture
def models(tmp_path) -> Registry:
    return Registry(make_teacher_models(tmp_path / "models"))


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


def test_distill_tab_compare_draws_teacher_and_student_on_the_live_sketch_or_says_why_not(models, tmp_path):
    save_tiny(tiny_net(seed=1), models.models_dir / "tiny-student", extra={"kind": "trigflow"})
    (models.models_dir / "tiny-student.toml").write_text(STUDENT_MANIFEST)
    models.refresh()
    store = JobStore(tmp_path / "jobs", models, gpus=0, start=False)
    base = Job(
        id="20260101-000000-000001",
        preset=str(PRESET),
        overrides=[],
        name="tiny-student",
        created=0.0,
        state=DONE,
        teacher_model="tiny-teacher",
    )
    records = [
        base,
        dataclasses.replace(base, id="20260101-000000-000002", teacher_model=""),
        dataclasses.replace(base, id="20260101-000000-000003", state=RUNNING),
    ]
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
        page.wait_for_function(
            "/Started job|Not started/.test(document.querySelector('#ss-ft-note').innerText)", timeout=120_000
        )
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
