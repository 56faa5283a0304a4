"""The Blocks: Live tab (canvas, controls, upload, history, export, variations) and Models tab."""

from __future__ import annotations

import random
from pathlib import Path

import gradio as gr
import numpy as np

from distillation.jobs import JobStore
from pipelines.lines import TITLES, usable_extractors
from pipelines.preprocess import LINE_METHODS, InputError, extract_lines, fit, is_empty, load_image
from pipelines.registry import Registry
from ui.canvas import CANVAS_SIZE, live_canvas
from ui.distill_tab import build_distill_tab
from ui.live import LiveSessions, read_png_metadata

RESOLUTIONS = (256, 384, 512, 768, 1024)
UPLOAD_KINDS = ("PNG", "JPEG", "WebP", "BMP", "GIF", "TIFF")
UPLOAD_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
PARAM_NAMES = ("prompt", "seed", "lock", "refine", "steps", "strength", "resolution", "model")
PUSH_PARAMS_JS = f"""({", ".join(PARAM_NAMES)}) => {{
  const p = {{prompt, seed: Number(seed), lock, refine, steps: Number(steps), strength: Number(strength),
             resolution: Number(resolution), model}};
  if (window.__ss) window.__ss.setParams(p); else window.__ssPending = p;
}}"""
SESSION_JS = "(s) => [window.__ss ? window.__ss.session : s]"
LOAD_SKETCH_JS = "(img) => { if (img && img.url && window.__ss) window.__ss.loadImage(img.url); }"


def resolution_choices(specs: dict) -> list[int]:
    """The Resolution control's choices: the usual sizes and every listed model's native one (`registry.specs()`)."""
    return sorted({*RESOLUTIONS, *(spec.resolution for spec in specs.values())})


def models_table(registry: Registry) -> list[list]:
    """Rows for the Models tab: what is usable now, what can be downloaded, what is missing and why."""
    rows = [
        [
            s.spec.name,
            s.spec.title,
            s.state,
            s.reason,
            s.spec.resolution,
            "/".join(map(str, s.spec.allowed_steps)),
            s.spec.download_gb,
            s.spec.min_vram_gb,
            s.spec.licence,
        ]
        for s in registry.list()
    ]
    broken = registry.errors().items()
    rows += [[name, "(broken manifest)", "missing", why, "", "", "", "", ""] for name, why in broken]
    return rows


def upload_to_lines(file, method: str) -> np.ndarray | None:
    """An uploaded file -> the line drawing that will become the sketch (preview first); None, with a warning in
    words, when there is nothing to draw with."""
    if file is None:
        return None
    try:
        path = Path(file if isinstance(file, str) else file.name)
        if path.suffix.lower() not in UPLOAD_SUFFIXES:
            raise InputError(f"{path.name} is not a picture this app reads: use {', '.join(UPLOAD_KINDS)}")
        rgb, notice = load_image(path.read_bytes())
        scale = CANVAS_SIZE / max(rgb.shape[:2])
        rgb = fit(rgb, (max(1, round(rgb.shape[0] * scale)), max(1, round(rgb.shape[1] * scale))))
        lines = extract_lines(rgb, method)
    except InputError as error:
        gr.Warning(str(error))
        return None
    if is_empty(lines):
        gr.Warning(f"no lines found in {path.name} with {method!r}: it looks blank; try another picture or method")
        return None
    if notice:
        gr.Info(notice)
    return lines


def build_blocks(sessions: LiveSessions, registry: Registry, default_model: str, jobs: JobStore) -> gr.Blocks:
    spec = registry.get(default_model)
    names = sorted(registry.specs())
    with gr.Blocks(title="SketchSprint") as demo:
        gr.Markdown("## SketchSprint: draw, and the picture follows the pen")
        session = gr.Textbox(visible=False)
        with gr.Tab("Live"):
            with gr.Row():
                prompt = gr.Textbox(
                    label="Prompt",
                    value="a cat sitting on a sofa, colourful illustration",
                    max_lines=3,
                    max_length=10_000,
                    scale=4,
                )
                model = gr.Dropdown(names, value=default_model, label="Model", scale=2)
            with gr.Row():
                seed = gr.Number(
                    value=0, precision=0, minimum=0, maximum=2**31 - 1, label="Seed", scale=1, elem_id="ss-seed"
                )
                dice = gr.Button("New seed", scale=0)
                lock = gr.Checkbox(value=True, label="Lock seed (off: new seed per stroke)", scale=1)
                refine = gr.Checkbox(value=False, label="Refine on pen-up (models with a teacher)", scale=1)
                steps = gr.Slider(1, 4, value=spec.steps, step=1, label="Steps", scale=1)
                strength = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Control strength", scale=1)
                resolution = gr.Dropdown(
                    resolution_choices(registry.specs()), value=spec.resolution, label="Resolution", scale=1
                )
            live_canvas(sessions.live_generate, sessions.live_refine)
            with gr.Row():
                export_btn = gr.Button("Export PNG (prompt, seed, model and sketch inside)")
                vary_btn = gr.Button("4 seed variations")
                exported = gr.DownloadButton("Download the export", visible=False)
            variations = gr.Gallery(label="Seed variations (click one to use its seed)", columns=4, height=220)
            with gr.Accordion("Start from a photo or drawing", open=False):
                with gr.Row():
                    upload = gr.File(
                        label=f"Upload a picture ({', '.join(UPLOAD_KINDS)})",
                        file_types=list(UPLOAD_SUFFIXES),
                        type="filepath",
                    )
                    usable, why_not = usable_extractors()
                    method = gr.Radio(
                        [(TITLES[m], m) for m in usable if m in LINE_METHODS]
                        + [("none (the picture as it is)", "none")],
                        value=usable[0],
                        label="Turn into lines with",
                        info="; ".join(f"{TITLES[key]}: {why}" for key, why in why_not.items()) or None,
                    )
                    preview = gr.Image(label="Lines preview", type="numpy", interactive=False)
                use_sketch = gr.Button("Use as sketch")
            history = gr.Gallery(
                value=sessions.history.entries,  # read at each page load
                label="History (click to restore prompt and seed)",
                elem_id="ss-history",
                columns=8,
                height=200,
            )
        build_distill_tab(jobs, sessions, registry, model)
        with gr.Tab("Models"):
            table = gr.Dataframe(
                models_table(registry),
                interactive=False,
                wrap=True,
                headers=["name", "title", "state", "why", "resolution", "steps", "download GB", "GPU GB", "licence"],
            )
            gr.Button("Refresh").click(lambda: registry.refresh() or models_table(registry), None, table)

        params = [prompt, seed, lock, refine, steps, strength, resolution, model]
        for component in params:
            component.change(None, params, None, js=PUSH_PARAMS_JS)
        demo.load(None, params, None, js=PUSH_PARAMS_JS)
        dice.click(lambda: random.randint(0, 2**31 - 1), None, seed)

        def export(session_id):
            try:
                path = sessions.export(session_id)
            except InputError as error:
                gr.Warning(str(error))
                return gr.DownloadButton(visible=False)
            gr.Info(f"saved {path}")
            return gr.DownloadButton(f"Download {path.name}", value=str(path), visible=True)

        def vary(session_id):
            try:
                return sessions.variations(session_id)
            except InputError as error:
                gr.Warning(str(error))
                return []

        def pick_variation(evt: gr.SelectData):
            return int(str(evt.value["caption"]).split()[-1])

        def restore(evt: gr.SelectData):
            entries = sessions.history.entries()
            if not 0 <= evt.index < len(entries):
                return [gr.skip()] * 5
            meta, _ = read_png_metadata(entries[evt.index])
            return (
                meta.get("prompt", gr.skip()),
                meta.get("seed", gr.skip()),
                meta.get("steps", gr.skip()),
                meta.get("strength", gr.skip()),
                meta.get("model", gr.skip()),
            )

        export_btn.click(export, session, exported, js=SESSION_JS)
        vary_btn.click(vary, session, variations, js=SESSION_JS)
        variations.select(pick_variation, None, seed)
        upload.change(upload_to_lines, [upload, method], preview)
        method.change(upload_to_lines, [upload, method], preview)
        use_sketch.click(None, preview, None, js=LOAD_SKETCH_JS)
        use_sketch.click(
            lambda lines: (
                gr.Warning("nothing to use yet: upload a picture with lines first") if lines is None else None
            ),
            preview,
            None,
        )

        def model_resolution(name):
            """The chosen model's native size, with the choices rebuilt: a model made after the page was built (a
            fine-tune at another size) has its size listed too, so the control never shows an empty value."""
            specs = registry.specs()  # one read of the manifest folder per change
            if name not in specs:
                return gr.skip()
            return gr.Dropdown(choices=resolution_choices(specs), value=specs[name].resolution)

        model.change(model_resolution, model, resolution)
        history.select(restore, None, [prompt, seed, steps, strength, model])
        shown_history = gr.State(None)  # per browser tab: the entries its gallery shows

        def refresh_history(shown):
            """Every 3 s: the gallery, only when this tab's differs from the folder (each send costs the server a
            check of every file)."""
            entries = sessions.history.entries()
            if entries == shown:
                return gr.skip(), shown
            return entries, entries

        gr.Timer(3.0).tick(refresh_history, shown_history, [history, shown_history], show_progress="hidden")
    return demo
