"""The live canvas: a plain <canvas> in gr.HTML (js_on_load + server_functions), and data-URL <-> ndarray."""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Callable
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from pipelines.preprocess import InputError

MAX_DATA_URL_CHARS = 12_000_000
MAX_SNAPSHOT_BYTES = MAX_DATA_URL_CHARS * 3 // 4
MAX_SNAPSHOT_SIDE = 4096  # larger snapshots are refused
MAX_SKETCH_SIDE = 2048  # ... and kept ones are downscaled to this (the largest resolution a request may ask for)
CANVAS_SIZE = 512
COLORS = ("#000000", "#555555", "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")

_COLOR_BUTTONS = "".join(
    f'<button class="ss-swatch{" active" if c == COLORS[0] else ""}" data-color="{c}" style="background:{c}" '
    f'title="colour {c}" aria-label="colour {c}"></button>'
    for c in COLORS
)

HTML = f"""
<div class="ss-live">
  <div class="ss-pane">
    <div class="ss-toolbar" role="toolbar" aria-label="drawing tools">
      <button data-tool="brush" class="active" title="brush (B)">Brush</button>
      <button data-tool="eraser" title="eraser (E)">Eraser</button>
      {_COLOR_BUTTONS}
      <label title="brush size ([ and ])">size <input id="ss-size" type="range" min="1" max="64" value="6"></label>
      <button id="ss-undo" title="undo (Ctrl+Z)">↶</button>
      <button id="ss-redo" title="redo (Ctrl+Shift+Z)">↷</button>
      <button id="ss-clear" title="clear (undoable)">Clear</button>
    </div>
    <canvas id="ss-canvas" width="{CANVAS_SIZE}" height="{CANVAS_SIZE}" aria-label="sketch canvas"></canvas>
  </div>
  <div class="ss-pane">
    <canvas id="ss-output" role="img" aria-label="generated image" width="512" height="512" data-seq="0"></canvas>
    <div id="ss-notice" aria-live="polite"></div>
  </div>
  <div id="ss-hud" aria-live="off">draw on the left: the picture follows the pen</div>
</div>
"""

CSS = """
.ss-live { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
.ss-pane { display: flex; flex-direction: column; gap: 6px; min-width: 0; }
.ss-toolbar { display: flex; flex-wrap: wrap; gap: 4px; align-items: center; }
.ss-toolbar button { padding: 2px 8px; border: 1px solid #bbb; border-radius: 6px; background: #f7f7f7;
  cursor: pointer; }
.ss-toolbar button.active { outline: 2px solid #ff7f0e; }
.ss-swatch { width: 22px; height: 22px; padding: 0 !important; }
#ss-canvas { width: 100%; aspect-ratio: 1; border: 1px solid #999; border-radius: 6px; touch-action: none;
  cursor: crosshair; background: #fff; }
#ss-output { width: 100%; height: auto; border: 1px solid #999; border-radius: 6px; background: #eee;
  margin-top: 30px; }
#ss-notice { min-height: 1.3em; font-size: 0.9em; color: #555; }
#ss-notice.error { color: #b00020; }
#ss-hud { grid-column: 1 / 3; font-family: ui-monospace, monospace; font-size: 0.85em; color: #333; }
"""

JS = (Path(__file__).with_name("canvas.js")).read_text()


def decode_image_bytes(raw: bytes) -> np.ndarray:
    """An encoded canvas snapshot (JPEG/PNG bytes) -> HxWx3 uint8 RGB, at most MAX_SKETCH_SIDE on a side (no model
    draws larger); raises InputError, in words, on anything else."""
    if len(raw) > MAX_SNAPSHOT_BYTES:
        raise InputError(f"canvas snapshot too large: {len(raw):,} bytes (at most {MAX_SNAPSHOT_BYTES:,})")
    try:
        image = Image.open(io.BytesIO(raw))
    except Image.DecompressionBombError as error:
        raise InputError(f"canvas snapshot too large: {error}") from error
    except (OSError, ValueError) as error:
        raise InputError("the canvas snapshot is not a PNG or JPEG picture") from error
    with image:
        width, height = image.size
        if width > MAX_SNAPSHOT_SIDE or height > MAX_SNAPSHOT_SIDE:
            raise InputError(
                f"canvas snapshot too large: {width}x{height} pixels (at most {MAX_SNAPSHOT_SIDE}x{MAX_SNAPSHOT_SIDE})"
            )
        if width < 1 or height < 1:
            raise InputError(f"canvas snapshot is empty: {width}x{height} pixels")
        try:
            if max(width, height) > MAX_SKETCH_SIDE:
                image.thumbnail((MAX_SKETCH_SIDE, MAX_SKETCH_SIDE), Image.Resampling.BOX)
            return np.asarray(image.convert("RGB"))
        except (OSError, ValueError) as error:
            raise InputError("the canvas snapshot is damaged: its picture data cannot be read") from error


def decode_data_url(data_url: str) -> np.ndarray:
    """`data:image/...;base64,...` from the browser -> HxWx3 uint8 RGB; raises InputError on anything else."""
    if not isinstance(data_url, str) or not data_url.startswith("data:image/") or "," not in data_url:
        raise InputError("expected an image data URL from the canvas")
    if len(data_url) > MAX_DATA_URL_CHARS:
        raise InputError(f"canvas snapshot too large: {len(data_url):,} characters (at most {MAX_DATA_URL_CHARS:,})")
    try:
        raw = base64.b64decode(data_url.split(",", 1)[1], validate=True)
    except (binascii.Error, ValueError) as error:
        raise InputError("the canvas snapshot is not valid base64 data") from error
    return decode_image_bytes(raw)


def encode_jpeg(image: Image.Image, quality: int = 90) -> bytes:
    """PIL image -> JPEG bytes (the frame the browser shows)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def jpeg_data_url(jpeg: bytes) -> str:
    """JPEG bytes -> a data URL (frames sent over HTTP)."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


def encode_data_url(image: Image.Image, quality: int = 90) -> str:
    """PIL image -> JPEG data URL."""
    return jpeg_data_url(encode_jpeg(image, quality))


def live_canvas(generate: Callable[[dict], dict], refine: Callable[[dict], dict]) -> gr.HTML:
    """The canvas component; the browser calls `live_generate(payload)` and, after pen-up, `live_refine(payload)`
    directly, outside Gradio's queue."""

    def live_generate(payload):  # plain functions: Gradio marks server functions with an attribute
        return generate(payload)

    def live_refine(payload):
        return refine(payload)

    return gr.HTML(
        html_template=HTML,
        css_template=CSS,
        js_on_load=JS,
        server_functions=[live_generate, live_refine],
        elem_id="ss-live",
        apply_default_css=False,
    )
