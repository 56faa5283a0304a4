"""The Distill tab's views: a job's status in words, typed loss and validation curves, an estimate in plain words."""

import dataclasses

import gradio as gr

from distillation.jobs import DONE, RUNNING, Estimate, Job, Progress
from tests.distillation.test_jobs_store import PRESET
from ui.distill_views import best_validation, estimate_text, job_rows, loss_frame, progress_text, validation_frame


def test_distill_tab_views_show_progress_reasons_and_typed_loss_curves():
    job = Job(
        id="20260101-000000-abcdef", preset=str(PRESET), overrides=[], name="s1", created=0.0, total=10, state=RUNNING
    )
    progress = Progress(
        step=3, total=10, it_s=1.5, eta_s=4.7, checkpoint_step=2, metrics=[], preview=None, log_tail=""
    )
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
    job = Job(
        id="20260101-000000-abcdef", preset=str(PRESET), overrides=[], name="s1", created=0.0, total=10, state=RUNNING
    )
    progress = Progress(
        step=6, total=10, it_s=None, eta_s=None, checkpoint_step=None, metrics=rows, preview=None, log_tail=""
    )
    assert "Best validation fd_effnet@1: 240.5 at step 5" in progress_text(job, progress)


def test_distill_tab_estimate_reads_as_minutes_for_steps_then_the_figures():
    estimate = Estimate(
        device="cpu",
        max_steps=100,
        frozen_params=1,
        trainable_params=1,
        student_params=1,
        setup_s=2.0,
        s_per_step=3.0,
        peak_memory_gb=0.7,
        weights_gb=0.1,
        memory_gb=0.71,
        time_s=302.0,
        disk_gb=0.1,
    )
    text = estimate_text(estimate)
    assert text.startswith("**About 5 minutes for 100 steps** on this CPU (3.00 s a step, measured just now).")
    assert estimate_text(dataclasses.replace(estimate, max_steps=3)).startswith("**Under a minute for 3 steps**")
    assert "Needs about 0.7 GB of memory" in text
