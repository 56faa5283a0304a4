"""The Distill tab's layout and wiring: launch, watch, cancel, resume, delete and compare jobs; students join Live."""

from __future__ import annotations

import time

import gradio as gr
from PIL import Image

from distillation.data import folder_sketches
from distillation.jobs import DONE, PROBE_STEPS, JobError, JobStore
from pipelines.engine import Request
from pipelines.lines import usable_extractors
from pipelines.preprocess import InputError
from pipelines.registry import Registry
from ui.distill_form import (
    DEFAULT_PRESETS,
    DEFAULT_TEACHER,
    METHOD_TITLES,
    TEACHER_KINDS,
    default_preset,
    preset_choices,
    preset_fields,
    request,
    teacher_models,
)
from ui.distill_views import estimate_text, job_rows, loss_frame, progress_text, validation_frame
from ui.finetune_form import check_ok, finetune_check, finetune_estimate, finetune_launch, free_name
from ui.live import LiveSessions

DEFAULT_PAIRS = "data/sketch_tiny/256"
DEFAULT_MINUTES = 10
TEACHER_SOURCES = [
    ("the preset's teacher", "preset"),
    ("a model of this app", "model"),
    ("a Hugging Face hub id", "hub"),
    ("a local folder", "folder"),
]
DATA_KINDS = [
    ("synthetic: random samples and conditions of the teacher's shapes (built in, offline)", "synthetic"),
    ("prepared sketch pairs: the offline sets (emoji and icon sets, Open Clip Art, Tux Paint)", "sketch_pairs"),
    ("a folder of your images, each with an optional same-name .txt caption", "image_folder"),
]
SKETCH_TITLES = {
    "canny": "Canny edges",
    "lineart": "line art (dark strokes of drawings)",
    "hed": "HED (learned edges)",
    "aux_hed": "HED (controlnet-aux)",
    "aux_pidinet": "PiDiNet (controlnet-aux)",
    "aux_lineart": "line art (controlnet-aux)",
}
DATA_NOTE = (
    "Sketch pairs are made by `python -m distillation.data fetch`, then `prepare --resolution 256 --edges "
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


def default_recipe_note(default: str) -> str:
    """The line under the teacher picker: what the default Launch runs, and what the shipped recipe needs first."""
    note = f"Default: the bundled `{DEFAULT_TEACHER}` (offline, CPU) and its student recipe `{default}`"
    if default != DEFAULT_PRESETS[0]:
        note += (
            " (sCM on synthetic conditions: the shipped recipe needs the prepared sketch pairs, "
            "`python -m distillation.data fetch && python -m distillation.data prepare`, then `teacher-pool`)"
        )
    return note + "."


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
        request = Request(
            session=f"{session_id}-{who}",
            version=time.time_ns(),
            sketch=state.sketch,
            **{**params, "model": model, "steps": steps},
        )
        frame = sessions.host.draw(request)
        if frame.image is None:
            return None, f"{who}: {frame.message or 'no image'}"
        ms = frame.timings.get("host_total", frame.timings.get("total", 0.0))
        note = f"; {frame.message}" if frame.message else ""
        return frame.image, f"{who} `{model}`, {steps} step{'s' if steps > 1 else ''}: {ms:.0f} ms{note}"

    student, text = draw(job.name, 1, "student")
    notes.append(text)
    teacher = None
    if not job.teacher_model:
        notes.append(
            "no teacher shown: this job's teacher (the preset's, a hub id or a folder) is not a model of "
            "this app, so no engine here can draw it"
        )
    elif job.teacher_model not in registry.specs():
        notes.append(f"no teacher shown: the model {job.teacher_model!r} is no longer in the models folder")
    else:
        teacher, text = draw(job.teacher_model, int(teacher_steps), "teacher")
        notes.append(text)
    notes.append(f"seed {params.get('seed', 0)}, prompt {params.get('prompt', '')!r}")
    return teacher, student, "\n\n".join(notes)


# ---- the tab --------------------------------------------------------------------------------------------------------


FINETUNE_NOTE = (
    "**What happens:** your pictures are cut to squares at the model's 128 px, their lines are traced (Canny edges, "
    "like a sketch on the canvas) and their captions read: the `.txt` beside a picture, else its file name "
    "(`red_house_02.png` → \"red house\"). Then the app's 1-step model `sketch-tiny` learns to turn each picture's "
    "lines into that picture (an L1 loss) while a discriminator on the frozen `sketch-tiny-teacher` pushes its "
    "pictures to look like yours (LADD with your folder as the real pictures). The job stops at the time budget "
    "and the new model joins the Live tab's model picker. Measured on a style folder of 40 pictures: "
    '`python -m bench.finetune` (README, "Fine-tune on your own pictures").'
)


def build_distill_tab(jobs: JobStore, sessions: LiveSessions, registry: Registry, live_model: gr.Dropdown) -> None:
    """The Distill tab inside the current Blocks; `live_model` is the Live tab's model picker (students join it).
    Two paths: "Fine-tune on my pictures" (a folder, a name, a time budget, Start) and "Distill a teacher" (the
    bundled teacher and its student recipe by default; every setting under Advanced)."""
    choices = preset_choices()
    default = default_preset()
    fields = preset_fields(default)
    teachers, teacher_note = teacher_models(registry)
    default_teacher = DEFAULT_TEACHER if DEFAULT_TEACHER in teachers else (teachers[0] if teachers else None)
    sketch_choices = [(title, key) for key, title in SKETCH_TITLES.items() if key in folder_sketches()]
    sketch_note = "; ".join(f"{SKETCH_TITLES[key]}: {why}" for key, why in usable_extractors()[1].items())
    with gr.Tab("Distill", elem_id="ss-distill"):
        gr.Markdown(
            "Make a model of your own: fine-tune the app's fast model on a folder of your pictures, or distill a "
            "slow multi-step teacher into a 1-4 step student. One job runs at a time (others wait in the queue); "
            "a finished model appears in the Live tab's model picker. Jobs keep running if the app stops."
        )
        with gr.Row():
            with gr.Column(scale=2):
                with gr.Tabs():
                    with gr.Tab("Fine-tune on my pictures", elem_id="ss-ft"):
                        ft_folder = gr.Textbox(
                            label="Folder of your pictures", placeholder="/path/to/my_pictures", elem_id="ss-ft-folder"
                        )
                        ft_check = gr.Markdown(finetune_check(""), elem_id="ss-ft-check")
                        with gr.Row():
                            ft_name = gr.Textbox(
                                free_name(registry, jobs),
                                label="Name of the new model",
                                max_length=64,
                                elem_id="ss-ft-name",
                            )
                            ft_minutes = gr.Number(
                                DEFAULT_MINUTES, minimum=0.1, label="Time budget (minutes)", elem_id="ss-ft-minutes"
                            )
                        ft_estimate = gr.Markdown(elem_id="ss-ft-estimate")
                        ft_start = gr.Button("Start", variant="primary", elem_id="ss-ft-start")
                        ft_note = gr.Markdown(elem_id="ss-ft-note")
                        gr.Markdown(FINETUNE_NOTE)
                    with gr.Tab("Distill a teacher", elem_id="ss-dt"):
                        teacher_model = gr.Dropdown(
                            teachers, value=default_teacher, label="Teacher model", info=teacher_note or None
                        )
                        gr.Markdown(default_recipe_note(default))
                        student_name = gr.Textbox(label="Student name (optional)", max_length=64)
                        with gr.Row():
                            estimate_btn = gr.Button("Estimate")
                            launch_btn = gr.Button("Launch", variant="primary", elem_id="ss-launch")
                        launch_note = gr.Markdown(elem_id="ss-launch-note")
                        with gr.Accordion("Advanced", open=False, elem_id="ss-advanced"):
                            preset = gr.Dropdown(choices, value=default, label="Preset")
                            method = gr.Dropdown(
                                [(title, key) for key, title in METHOD_TITLES.items()],
                                value=fields["method"],
                                label="Method",
                            )
                            teacher = gr.Radio(
                                TEACHER_SOURCES, value="model" if default_teacher else "preset", label="Teacher"
                            )
                            with gr.Row(visible=False) as teacher_row:
                                teacher_path = gr.Textbox(label="Hub id or folder", scale=3)
                                teacher_kind = gr.Dropdown(list(TEACHER_KINDS), value="sana", label="Family", scale=1)
                                controlnet_path = gr.Textbox(label="ControlNet: hub id or folder (optional)", scale=3)
                            data = gr.Radio(DATA_KINDS, value=fields["data"], label="Data")
                            with gr.Row(visible=fields["data"] == "sketch_pairs") as pairs_row:
                                data_path = gr.Textbox(DEFAULT_PAIRS, label="Prepared pairs folder", scale=3)
                            with gr.Row(visible=fields["data"] == "image_folder") as folder_row:
                                folder_path = gr.Textbox(
                                    label="Image folder", placeholder="/path/to/my_images", scale=3
                                )
                                sketch = gr.Dropdown(
                                    sketch_choices,
                                    value="canny",
                                    label="Sketch extractor",
                                    scale=1,
                                    info=sketch_note or None,
                                )
                            augment = gr.Checkbox(
                                label="hand-drawn sketch variants (random stroke width and wobble)",
                                visible=fields["data"] != "synthetic",
                            )
                            gr.Markdown(DATA_NOTE)
                            with gr.Row():
                                steps = gr.Number(fields["steps"], precision=0, minimum=1, label="Steps")
                                lr = gr.Number(fields["lr"], minimum=0, label="Learning rate")
                                batch = gr.Number(fields["batch"], precision=0, minimum=1, label="Batch")
                                lora_rank = gr.Number(
                                    fields["lora_rank"], precision=0, minimum=0, label="LoRA rank (0: full)"
                                )
                            gr.Markdown(RESOLUTION_NOTE)
                            probe_first = gr.Checkbox(
                                True, label=f"Estimate memory and time first ({PROBE_STEPS}-step probe)"
                            )
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
                log = gr.Textbox(
                    label="Log (the raw JSON lines stay in the job folder's log.txt)",
                    lines=8,
                    max_lines=8,
                    interactive=False,
                    elem_id="ss-log",
                )
                with gr.Accordion("Compare teacher and student on the Live tab's sketch", open=False):
                    teacher_steps = gr.Slider(1, 50, value=8, step=1, label="Teacher steps")
                    compare_btn = gr.Button("Compare")
                    with gr.Row():
                        teacher_img = gr.Image(label="Teacher", interactive=False, height=256)
                        student_img = gr.Image(label="Student (1 step)", interactive=False, height=256)
                    compare_note = gr.Markdown()
        session = gr.Textbox(visible=False)
        seen = gr.State({"models": sorted(registry.specs())})

    form = [
        preset,
        method,
        teacher,
        teacher_model,
        teacher_path,
        teacher_kind,
        controlnet_path,
        data,
        data_path,
        augment,
        steps,
        lr,
        batch,
        lora_rank,
        folder_path,
        sketch,
    ]

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
    teacher.change(lambda t: gr.Row(visible=t in ("hub", "folder")), teacher, teacher_row)
    data.change(
        lambda d: (
            gr.Row(visible=d == "sketch_pairs"),
            gr.Row(visible=d == "image_folder"),
            gr.Checkbox(visible=d != "synthetic"),
        ),
        data,
        [pairs_row, folder_row, augment],
    )

    def on_minutes(folder, minutes):
        return finetune_estimate(jobs, folder, minutes) if check_ok(folder) else ""

    def on_start(folder, name, minutes):
        try:
            launched = finetune_launch(jobs, registry, folder, name, minutes)
        except JobError as error:
            return f"**Not started:** {error}", gr.skip(), gr.skip()
        running = jobs.running()
        where = "starting now" if running is None or running.id == launched.id else f"queued behind job {running.id}"
        note = (
            f"Started job **{launched.id}**: `{launched.name}` will join the Live tab's model picker when it is "
            f"done ({where}; at most {float(minutes):g} minutes)."
        )
        return note, gr.Dropdown(choices=[j.id for j in jobs.jobs()], value=launched.id), free_name(registry, jobs)

    for event in (ft_folder.submit, ft_folder.blur):  # the count at once, then the estimate (seconds the first time)
        event(finetune_check, ft_folder, ft_check).then(on_minutes, [ft_folder, ft_minutes], ft_estimate)
    ft_minutes.change(on_minutes, [ft_folder, ft_minutes], ft_estimate)
    ft_start.click(on_start, [ft_folder, ft_name, ft_minutes], [ft_note, job, ft_name])
    estimate_btn.click(on_estimate, form, launch_note)
    launch_btn.click(on_launch, [*form, student_name, probe_first], [launch_note, job])
    cancel_btn.click(lambda j: act("cancel", j), job, action_note)
    resume_btn.click(lambda j: act("resume", j), job, action_note)
    delete_btn.click(lambda j: act("delete", j), job, action_note)
    table.select(pick_row, None, job)
    log.change(None, None, None, js=LOG_TO_END_JS)  # the newest lines in view (autoscroll skips backend updates)
    compare_btn.click(
        on_compare, [session, job, teacher_steps], [teacher_img, student_img, compare_note], js=SESSION_JS
    )
    gr.Timer(1.0).tick(
        poll, [job, seen], [table, job, status, plot, vplot, preview, log, live_model, seen], show_progress="hidden"
    )
