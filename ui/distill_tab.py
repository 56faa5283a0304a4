"""Distill tab: launch, watch, cancel, resume and delete distillation jobs; finished students join the Live tab."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from PIL import Image

from distillation.jobs import (
    DONE,
    LIVE,
    METHODS,
    PROBE_STEPS,
    RESUMABLE,
    TEACHER_KINDS,
    Estimate,
    Job,
    JobError,
    JobStore,
    Progress,
    folder_sketches,
    job_overrides,
    load_preset,
    presets,
    teacher_overrides,
)
from pipelines.engine import Request
from pipelines.preprocess import InputError
from pipelines.registry import Registry
from ui.live import LiveSessions

DEFAULT_PRESET = "tiny_scm_ladd"
DEFAULT_PAIRS = "data/sketch_tiny/128"
TEACHER_SOURCES = [
    ("the preset's teacher", "preset"),
    ("a model of this app", "model"),
    ("a Hugging Face hub id", "hub"),
    ("a local folder", "folder"),
]
DATA_KINDS = [
    ("synthetic: random samples and conditions of the teacher's shapes (built in, offline)", "synthetic"),
    ("prepared sketch pairs: the bundled offline sets (OpenMoji, Open Clip Art, Tux Paint)", "sketch_pairs"),
    ("a folder of your images, each with an optional same-name .txt caption", "image_folder"),
]
SKETCH_TITLES = {
    "canny": "Canny edges",
    "lineart": "line art (dark strokes of drawings)",
    "hed": "HED (learned edges)",
}
DATA_NOTE = (
    "Sketch pairs are made by `python -m distillation.data fetch`, then `prepare --resolution 128 --edges "
    "auto|hed|canny` (the sources' own outlines, else HED or Canny lines). A folder of images (png, jpg, webp, bmp; "
    "subfolders too) is prepared by the job itself on first use, or by its estimate: centre-cropped to the "
    "teacher's size, sketches drawn by the chosen extractor, captions embedded; an image without a caption (or "
    "with an empty one) trains the empty prompt, unreadable images are skipped, and the log lists both. The "
    "result is kept in `data/cache/folders` and reused while the folder is unchanged. Needs a teacher that takes "
    "a sketch and text (SketchTinyNet)."
)
RESOLUTION_NOTE = (
    "Resolution: the teacher's own (tiny Sana 256 px, SketchTinyNet its configured size; image folders are "
    "prepared at it): the trainer has no separate resolution setting."
)
SESSION_JS = "(s, j, n) => [window.__ss ? window.__ss.session : s, j, n]"
LOG_TO_END_JS = "() => { const t = document.querySelector('#ss-log textarea'); if (t) t.scrollTop = t.scrollHeight; }"


# ---- plain functions ------------------------------------------------------------------------------------------------


def teacher_models(registry: Registry) -> tuple[list[str], str]:
    """Registry models the trainer can take as a teacher, and a note naming the others with the reason."""
    usable, notes = [], []
    for name, spec in sorted(registry.specs().items()):
        try:
            teacher_overrides(spec)
            usable.append(name)
        except JobError as error:
            notes.append(f"{name}: {error}")
    return usable, "; ".join(notes)


def preset_fields(name: str) -> dict[str, Any]:
    """A preset's values for the form (method, steps, learning rate, batch, LoRA rank, data kind)."""
    cfg = load_preset(presets()[name])
    return {
        "method": cfg.method.name,
        "steps": cfg.max_steps,
        "lr": cfg.optim.lr,
        "batch": cfg.batch_size,
        "lora_rank": cfg.student.lora_rank,
        "data": cfg.data.kind,
    }


def request(
    registry: Registry,
    preset: str,
    method: str,
    teacher: str,
    teacher_model: str,
    teacher_path: str,
    teacher_kind: str,
    controlnet_path: str,
    data: str,
    data_path: str,
    augment: bool,
    steps: float | None,
    lr: float | None,
    batch: float | None,
    lora_rank: float | None,
    folder_path: str = "",
    sketch: str = "canny",
) -> tuple[Path, list[str], str]:
    """The form -> (preset path, overrides, teacher model name or ""); JobError when a choice is invalid. `data_path`
    is the prepared-pairs folder, `folder_path` the image folder (data "image_folder") with its `sketch` extractor."""
    if preset not in presets():
        raise JobError(f"preset {preset!r}: one of {', '.join(presets())}")
    path = presets()[preset]
    overrides = job_overrides(
        path,
        registry,
        method=method,
        teacher=teacher,
        teacher_model=teacher_model or "",
        teacher_path=teacher_path or "",
        teacher_kind=teacher_kind,
        controlnet_path=controlnet_path or "",
        data=data,
        data_path=(folder_path if data == "image_folder" else data_path) or "",
        augment=bool(augment),
        sketch=sketch or "canny",
        steps=steps,
        lr=lr,
        batch=batch,
        lora_rank=lora_rank,
    )
    return path, overrides, teacher_model if teacher == "model" else ""


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def estimate_text(estimate: Estimate) -> str:
    """An Estimate as one labelled paragraph."""
    return (
        f"**Estimate** (a {PROBE_STEPS}-step probe of these settings on {estimate.device}; formulas in "
        f"`distillation/jobs.py`): memory ≈ **{estimate.memory_gb:.2f} GB** (probe peak {estimate.peak_memory_gb:.2f} "
        f"GB; weights and optimizer state by parameter count {estimate.weights_gb:.3f} GB), time ≈ "
        f"**{duration(estimate.time_s)}** (set-up {estimate.setup_s:.0f} s + {estimate.max_steps} steps × "
        f"{estimate.s_per_step:.2f} s), disk ≈ {estimate.disk_gb * 1024:.0f} MB. Parameters: "
        f"{estimate.frozen_params:,} frozen, {estimate.trainable_params:,} trained."
    )


def job_rows(jobs: list[Job]) -> list[list[Any]]:
    """Rows of the jobs table, newest first."""
    return [
        [
            job.id,
            job.state,
            job.total,
            job.name,
            Path(job.preset).stem,
            time.strftime("%Y-%m-%d %H:%M", time.localtime(job.created)),
            job.reason,
        ]
        for job in jobs
    ]


def progress_text(job: Job, progress: Progress) -> str:
    """The selected job in a few lines: state, step/total, it/s, ETA, checkpoint, why it ended, its student."""
    head = f"**{job.id} · {job.state}** · step {progress.step}/{progress.total}"
    if job.state in LIVE and progress.it_s:
        head += f" · {progress.it_s:.2f} it/s · ETA {duration(progress.eta_s)}"
    if progress.checkpoint_step is not None:
        head += f" · checkpoint at step {progress.checkpoint_step}"
    lines = [head]
    if best := best_validation(progress.metrics):
        key, step, score = best
        name = key.removeprefix("val/")
        lines.append(f"Best validation {name}: {score:.1f} at step {step} (the student it exports).")
    if job.reason:
        lines.append(job.reason)
    if job.state in RESUMABLE:
        lines.append("Resume continues in the same folder" + (" from the checkpoint." if job.resume else "."))
    if job.state == DONE:
        where = "listed in the Live tab's model picker" if job.export == "listed" else f"registry: {job.export}"
        lines.append(f"Student `{job.name}`: {where}.")
    return "\n\n".join(lines)


def curve_frame(metrics: list[dict[str, Any]], keep: Callable[[str], bool], limit: int = 2000) -> pd.DataFrame | None:
    """Long-form curves (step, value, series) of every logged numeric value whose key passes `keep`, each series
    thinned to at most `limit` points; None before the first point (Gradio's plot draws no lines at all once it was
    given an empty frame)."""
    keys = sorted({key for row in metrics for key in row if keep(key)})
    rows = []
    for key in keys:
        points = [(row["step"], row[key], key) for row in metrics if isinstance(row.get(key), int | float)]
        rows += points[:: max(1, -(-len(points) // limit))]  # ceil: at most `limit` points
    if not rows:
        return None
    rows.sort(key=lambda row: row[0])
    return pd.DataFrame(rows, columns=["step", "value", "series"]).astype({"value": "float64"})


def loss_frame(metrics: list[dict[str, Any]], limit: int = 2000) -> pd.DataFrame | None:
    """The loss curves: every logged `*loss` value."""
    return curve_frame(metrics, lambda key: key.endswith("loss"), limit)


def validation_frame(metrics: list[dict[str, Any]]) -> pd.DataFrame | None:
    """The validation curves of a run with `[select]`: every logged `val/<metric>@<steps>` score."""
    return curve_frame(metrics, lambda key: key.startswith("val/"))


def best_validation(metrics: list[dict[str, Any]]) -> tuple[str, int, float] | None:
    """(key, step, score) of the lowest validation score logged (the checkpoint a `[select]` run exports; every
    metric in SELECT_METRICS is lower-is-better); None when nothing was validated."""
    scores = [(row[key], row["step"], key) for row in metrics for key in row
              if key.startswith("val/") and isinstance(row[key], int | float) and math.isfinite(row[key])]  # fmt: skip
    if not scores:
        return None
    score, step, key = min(scores)
    return key, step, score


def compare(
    sessions: LiveSessions, jobs: JobStore, registry: Registry, job_id: str, session_id: str, teacher_steps: int
) -> tuple[Image.Image | None, Image.Image | None, str]:
    """Teacher (N steps) and student (1 step) on the Live tab's current sketch, prompt and seed, with their times;
    the student alone, and why, when no engine of this app can draw the job's teacher."""
    job = jobs.get(job_id)
    if job.state != DONE:
        raise JobError(f"job {job.id} is {job.state}: it has no student yet")
    state = sessions.session(session_id)
    if state.sketch is None:
        raise JobError("draw something on the Live tab first (the comparison uses its sketch, prompt and seed)")
    params = dict(state.params)
    notes = []

    def draw(model: str, steps: int, who: str) -> tuple[Image.Image | None, str]:
        request = Request(session=f"{session_id}-{who}", version=time.time_ns(), sketch=state.sketch,
                          **{**params, "model": model, "steps": steps})  # fmt: skip
        frame = sessions.host.generate(request)
        if frame.image is None:
            return None, f"{who}: {frame.message or 'no image'}"
        ms = frame.timings.get("host_total", frame.timings.get("total", 0.0))
        note = f"; {frame.message}" if frame.message else ""
        return frame.image, f"{who} `{model}`, {steps} step{'s' if steps > 1 else ''}: {ms:.0f} ms{note}"

    student, text = draw(job.name, 1, "student")
    notes.append(text)
    teacher = None
    if not job.teacher_model:
        notes.append("no teacher shown: this job's teacher (the preset's, a hub id or a folder) is not a model of "
                     "this app, so no engine here can draw it")  # fmt: skip
    elif job.teacher_model not in registry.specs():
        notes.append(f"no teacher shown: the model {job.teacher_model!r} is no longer in the models folder")
    else:
        teacher, text = draw(job.teacher_model, int(teacher_steps), "teacher")
        notes.append(text)
    notes.append(f"seed {params.get('seed', 0)}, prompt {params.get('prompt', '')!r}")
    return teacher, student, "\n\n".join(notes)


# ---- the tab --------------------------------------------------------------------------------------------------------


def build_distill_tab(jobs: JobStore, sessions: LiveSessions, registry: Registry, live_model: gr.Dropdown) -> None:
    """The Distill tab inside the current Blocks; `live_model` is the Live tab's model picker (students join it)."""
    names = presets()
    default = DEFAULT_PRESET if DEFAULT_PRESET in names else next(iter(names))
    fields = preset_fields(default)
    teachers, teacher_note = teacher_models(registry)
    sketch_choices = [(title, key) for key, title in SKETCH_TITLES.items() if key in folder_sketches()]
    sketch_note = "" if "hed" in folder_sketches() else "HED: its weights are not installed"
    with gr.Tab("Distill", elem_id="ss-distill"):
        gr.Markdown(
            "Distill a multi-step teacher into a 1-4 step student. One job runs at a time (others wait in the "
            "queue); a finished student appears in the Live tab's model picker. Jobs keep running if the app "
            "stops, and show their true state when it starts again."
        )
        with gr.Row():
            with gr.Column(scale=2):
                preset = gr.Dropdown(list(names), value=default, label="Preset")
                method = gr.Dropdown([(title, key) for key, title in METHODS.items()], value=fields["method"],
                                     label="Method")  # fmt: skip
                teacher = gr.Radio(TEACHER_SOURCES, value="preset", label="Teacher")
                teacher_model = gr.Dropdown(teachers, value=teachers[0] if teachers else None, visible=False,
                                            label="Teacher model", info=teacher_note or None)  # fmt: skip
                with gr.Row(visible=False) as teacher_row:
                    teacher_path = gr.Textbox(label="Hub id or folder", scale=3)
                    teacher_kind = gr.Dropdown(list(TEACHER_KINDS), value="sana", label="Family", scale=1)
                    controlnet_path = gr.Textbox(label="ControlNet: hub id or folder (optional)", scale=3)
                data = gr.Radio(DATA_KINDS, value=fields["data"], label="Data")
                with gr.Row(visible=fields["data"] == "sketch_pairs") as pairs_row:
                    data_path = gr.Textbox(DEFAULT_PAIRS, label="Prepared pairs folder", scale=3)
                with gr.Row(visible=fields["data"] == "image_folder") as folder_row:
                    folder_path = gr.Textbox(label="Image folder", placeholder="/path/to/my_images", scale=3)
                    sketch = gr.Dropdown(sketch_choices, value="canny", label="Sketch extractor", scale=1,
                                         info=sketch_note or None)  # fmt: skip
                augment = gr.Checkbox(label="hand-drawn sketch variants (random stroke width and wobble)",
                                      visible=fields["data"] != "synthetic")  # fmt: skip
                gr.Markdown(DATA_NOTE)
                with gr.Row():
                    steps = gr.Number(fields["steps"], precision=0, minimum=1, label="Steps")
                    lr = gr.Number(fields["lr"], minimum=0, label="Learning rate")
                    batch = gr.Number(fields["batch"], precision=0, minimum=1, label="Batch")
                    lora_rank = gr.Number(fields["lora_rank"], precision=0, minimum=0, label="LoRA rank (0: full)")
                gr.Markdown(RESOLUTION_NOTE)
                student_name = gr.Textbox(label="Student name (optional)", max_length=64)
                probe_first = gr.Checkbox(True, label=f"Estimate memory and time first ({PROBE_STEPS}-step probe)")
                with gr.Row():
                    estimate_btn = gr.Button("Estimate")
                    launch_btn = gr.Button("Launch", variant="primary", elem_id="ss-launch")
                launch_note = gr.Markdown(elem_id="ss-launch-note")
            with gr.Column(scale=3):
                table = gr.Dataframe(
                    job_rows(jobs.jobs()),
                    headers=["job", "state", "max steps", "student", "preset", "created", "why"],
                    interactive=False,
                    wrap=True,
                    max_height=220,
                )
                job_ids = [job.id for job in jobs.jobs()]
                job = gr.Dropdown(job_ids, value=job_ids[0] if job_ids else None, label="Job", elem_id="ss-job")
                with gr.Row():
                    cancel_btn = gr.Button("Cancel")
                    resume_btn = gr.Button("Resume")
                    delete_btn = gr.Button("Delete")
                action_note = gr.Markdown()
                status = gr.Markdown(elem_id="ss-job-status")
                with gr.Row():
                    plot = gr.LinePlot(x="step", y="value", color="series", label="Losses", height=240, scale=3)
                    vplot = gr.LinePlot(
                        x="step",
                        y="value",
                        color="series",
                        height=240,
                        scale=2,
                        label="Validation FD-EffNetLite0 (lower is better; runs with [select])",
                    )
                    preview = gr.Image(label="Latest preview", type="filepath", interactive=False, height=240, scale=2)
                log = gr.Textbox(label="Log (tail)", lines=8, max_lines=8, interactive=False, elem_id="ss-log")
                with gr.Accordion("Compare teacher and student on the Live tab's sketch", open=False):
                    teacher_steps = gr.Slider(1, 50, value=8, step=1, label="Teacher steps")
                    compare_btn = gr.Button("Compare")
                    with gr.Row():
                        teacher_img = gr.Image(label="Teacher", interactive=False, height=256)
                        student_img = gr.Image(label="Student (1 step)", interactive=False, height=256)
                    compare_note = gr.Markdown()
        session = gr.Textbox(visible=False)
        seen = gr.State({"models": sorted(registry.specs())})

    form = [preset, method, teacher, teacher_model, teacher_path, teacher_kind, controlnet_path, data, data_path,
            augment, steps, lr, batch, lora_rank, folder_path, sketch]  # fmt: skip

    def on_preset(name):
        f = preset_fields(name)
        return f["method"], f["steps"], f["lr"], f["batch"], f["lora_rank"], f["data"]

    def on_estimate(*values):
        try:
            path, overrides, _ = request(registry, *values)
            return estimate_text(jobs.estimate(path, overrides))
        except JobError as error:
            return f"**No estimate:** {error}"

    def on_launch(*values):
        *form_values, name, probe = values
        notes = []
        try:
            path, overrides, teacher_name = request(registry, *form_values)
            known = jobs.known_estimate(path, overrides)
            if known is not None:
                notes.append(estimate_text(known))
            elif probe and jobs.gpus > 0 and jobs.running() is not None:
                notes.append("No estimate (the GPU is busy with another job): memory is not checked before launch.")
            elif probe:
                notes.append(estimate_text(jobs.estimate(path, overrides)))
            launched = jobs.launch(path, overrides, name=name or "", teacher_model=teacher_name)
        except JobError as error:
            return f"**Not launched:** {error}", gr.skip()
        running = jobs.running()
        where = "starting now" if running is None or running.id == launched.id else f"queued behind job {running.id}"
        notes.insert(0, f"Launched job **{launched.id}** (student `{launched.name}`): {where}.")
        return "\n\n".join(notes), gr.Dropdown(choices=[j.id for j in jobs.jobs()], value=launched.id)

    def act(action, job_id):
        try:
            if not job_id:
                raise JobError("choose a job first")
            if action == "delete":
                jobs.delete(job_id)
                return f"Deleted job {job_id} (its exported student, if any, stays in the models folder)."
            changed = jobs.cancel(job_id) if action == "cancel" else jobs.resume(job_id)
            return f"Job {changed.id}: {changed.state}. {changed.reason}"
        except JobError as error:
            return f"**{action.capitalize()} refused:** {error}"

    def poll(job_id, shown):
        """Every second: the jobs table and picker, the selected job's views and the Live tab's model choices; what
        this browser tab already shows is skipped (`shown`: the last value sent per output)."""
        all_jobs = jobs.jobs()
        ids = [j.id for j in all_jobs]
        selected = job_id if job_id in ids else (ids[0] if ids else None)
        rows, models = job_rows(all_jobs), sorted(registry.specs())
        fresh = {  # output -> (what identifies its content, the value to send)
            "table": (rows, rows),
            "job": (ids, gr.Dropdown(choices=ids, value=selected)),
            "models": (models, gr.Dropdown(choices=models)),
        }
        if selected is not None:
            progress = jobs.progress(selected)
            text = progress_text(next(j for j in all_jobs if j.id == selected), progress)
            last = progress.metrics[-1].get("time") if progress.metrics else None
            picture = str(progress.preview) if progress.preview else None
            fresh |= {
                "status": (text, text),
                "plot": ((selected, len(progress.metrics), last), loss_frame(progress.metrics)),
                "vplot": ((selected, len(progress.metrics), last), validation_frame(progress.metrics)),
                "preview": (picture, picture),
                "log": (progress.log_tail, progress.log_tail),
            }
        shown, result = dict(shown), []
        for name in ("table", "job", "status", "plot", "vplot", "preview", "log", "models"):
            if name in fresh and shown.get(name) != fresh[name][0]:
                shown[name] = fresh[name][0]
                result.append(fresh[name][1])
            else:
                result.append(gr.skip())
        return *result, shown

    def pick_row(evt: gr.SelectData):
        return evt.row_value[0]

    def on_compare(session_id, job_id, n):
        try:
            if not job_id:
                raise JobError("choose a finished job first")
            return compare(sessions, jobs, registry, job_id, session_id, n)
        except (JobError, InputError) as error:
            return None, None, f"**No comparison:** {error}"

    preset.change(on_preset, preset, [method, steps, lr, batch, lora_rank, data])
    teacher.change(
        lambda t: (gr.Dropdown(visible=t == "model"), gr.Row(visible=t in ("hub", "folder"))),
        teacher,
        [teacher_model, teacher_row],
    )
    data.change(
        lambda d: (
            gr.Row(visible=d == "sketch_pairs"),
            gr.Row(visible=d == "image_folder"),
            gr.Checkbox(visible=d != "synthetic"),
        ),  # fmt: skip
        data,
        [pairs_row, folder_row, augment],
    )
    estimate_btn.click(on_estimate, form, launch_note)
    launch_btn.click(on_launch, [*form, student_name, probe_first], [launch_note, job])
    cancel_btn.click(lambda j: act("cancel", j), job, action_note)
    resume_btn.click(lambda j: act("resume", j), job, action_note)
    delete_btn.click(lambda j: act("delete", j), job, action_note)
    table.select(pick_row, None, job)
    log.change(None, None, None, js=LOG_TO_END_JS)  # the newest lines in view (autoscroll skips backend updates)
    compare_btn.click(on_compare, [session, job, teacher_steps], [teacher_img, student_img, compare_note],
                      js=SESSION_JS)  # fmt: skip
    gr.Timer(1.0).tick(poll, [job, seen], [table, job, status, plot, vplot, preview, log, live_model, seen],
                       show_progress="hidden")  # fmt: skip
