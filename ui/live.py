"""Live tab logic: the canvas server function (latest-wins via LiveHost), history on disk, export, variations."""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from pipelines.engine import Request
from pipelines.host import LiveHost
from pipelines.preprocess import InputError
from ui.canvas import decode_data_url, decode_image_bytes, encode_data_url, encode_jpeg, jpeg_data_url

SESSION_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ENTRY_RE = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")
HISTORY_LIMIT = 48
MAX_SEED = 2**31 - 1


@dataclass
class SessionState:
    """What the server remembers of one browser tab: its latest sketch, parameters and frame."""

    sketch: np.ndarray | None = None
    params: dict = field(default_factory=dict)
    image: Image.Image | None = None
    seq: int = 0
    last_history_key: tuple | None = None


def parse_params(raw: dict, default_model: str) -> dict:
    """Browser parameters -> typed, clamped values (anything odd falls back to a default)."""

    def number(key, cast, default, low, high):
        try:
            return min(high, max(low, cast(raw.get(key, default))))
        except (TypeError, ValueError):
            return default

    model = raw.get("model") or default_model
    return {
        "prompt": str(raw.get("prompt", ""))[:20_000],
        "seed": number("seed", int, 0, 0, MAX_SEED),
        "steps": number("steps", int, 1, 1, 50),
        "strength": number("strength", float, 1.0, 0.0, 2.0),
        "resolution": number("resolution", int, 512, 64, 2048),
        "model": str(model)[:200],
    }


class History:
    """Recent results as PNG files with their metadata (prompt, seed, model, steps, sketch); survives restarts."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history")
        self._pending: list[Future] = []

    def add(self, image: Image.Image, sketch: np.ndarray, params: dict) -> Path:
        entry = time.strftime("%Y%m%d-%H%M%S") + "-" + f"{time.time_ns() & 0xFFFFFF:06x}"
        path = self.folder / f"{entry}.png"
        with self._lock:
            save_png_with_metadata(image, sketch, params, path)
        return path

    def add_later(self, image: Image.Image, sketch: np.ndarray, params: dict) -> Future:
        """`add` on the writer thread: a pen-up frame's reply does not wait for two PNG encodes (about 15 ms)."""
        future = self._writer.submit(self.add, image, sketch, params)
        with self._lock:
            self._pending = [f for f in self._pending if not f.done()] + [future]
        return future

    def flush(self) -> None:
        """Wait for the writes `add_later` queued."""
        with self._lock:
            pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def entries(self, limit: int = HISTORY_LIMIT) -> list[Path]:
        self.flush()
        files = sorted((p for p in self.folder.glob("*.png") if ENTRY_RE.match(p.stem)), reverse=True)
        return files[:limit]

    def resolve(self, entry: str) -> Path:
        """An entry name from the browser -> its file; anything that is not a plain entry name is refused."""
        if not ENTRY_RE.match(entry or ""):
            raise InputError("refused: not a history entry")
        path = self.folder / f"{entry}.png"
        if not path.is_file():
            raise InputError("that history entry no longer exists")
        return path


def png_metadata(params: dict, sketch: np.ndarray | None) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("sketchsprint", json.dumps({k: params[k] for k in sorted(params)}))
    for key in ("prompt", "seed", "model", "steps", "strength", "resolution"):
        if key in params:
            info.add_itxt(key, str(params[key]))
    if sketch is not None:
        buffer = io.BytesIO()
        Image.fromarray(sketch).save(buffer, format="PNG")
        info.add_text("sketch", base64.b64encode(buffer.getvalue()).decode(), zip=True)
    return info


def save_png_with_metadata(image: Image.Image, sketch: np.ndarray | None, params: dict, path: Path) -> Path:
    tmp = path.with_suffix(".tmp")
    image.save(tmp, format="PNG", pnginfo=png_metadata(params, sketch))
    tmp.replace(path)
    return path


def read_png_metadata(path: Path) -> tuple[dict, np.ndarray | None]:
    """Inverse of `save_png_with_metadata`: (params, sketch)."""
    with Image.open(path) as image:
        text = dict(image.text)
    params = json.loads(text.get("sketchsprint", "{}"))
    sketch = None
    if "sketch" in text:
        with Image.open(io.BytesIO(base64.b64decode(text["sketch"]))) as s:
            sketch = np.asarray(s.convert("RGB"))
    return params, sketch


class LiveSessions:
    """The Live tab's server side: one LiveHost shared by every tab, per-tab state, history and exports."""

    def __init__(self, host: LiveHost, default_model: str, outputs: Path):
        self.host = host
        self.default_model = default_model
        self.history = History(Path(outputs) / "history")
        self.exports = Path(outputs) / "exports"
        self.exports.mkdir(parents=True, exist_ok=True)
        self._sessions: dict[str, SessionState] = {}
        self._lock = threading.Lock()

    def session(self, session_id: str) -> SessionState:
        if not SESSION_RE.match(session_id or ""):
            raise InputError("refused: bad session id")
        with self._lock:
            return self._sessions.setdefault(session_id, SessionState())

    def live_generate(self, payload) -> dict:
        """The canvas server function (JSON over HTTP): a data-URL snapshot in, the frame as a data URL out."""
        t0 = time.perf_counter()
        if isinstance(payload, list) and len(payload) == 1:
            payload = payload[0]
        image = payload.get("image", "") if isinstance(payload, dict) else ""
        reply, jpeg = self.generate_frame(payload, lambda: decode_data_url(image))
        if jpeg is not None:
            reply["image"] = jpeg_data_url(jpeg)
        reply["server_ms"] = (time.perf_counter() - t0) * 1e3
        return reply

    def live_generate_bytes(self, header: dict, snapshot: bytes) -> tuple[dict, bytes | None]:
        """The canvas socket's call: the snapshot as encoded image bytes in, (reply, JPEG bytes or None) out."""
        t0 = time.perf_counter()
        reply, jpeg = self.generate_frame(header, lambda: decode_image_bytes(snapshot))
        reply["server_ms"] = (time.perf_counter() - t0) * 1e3
        return reply, jpeg

    def generate_frame(self, payload, decode: Callable[[], np.ndarray]) -> tuple[dict, bytes | None]:
        """One snapshot -> (reply without the image, the frame as JPEG bytes or None), whatever the transport.
        `payload` carries session, seq, final and params; `decode` reads the sketch."""
        seq = payload.get("seq", 0) if isinstance(payload, dict) else 0
        try:
            if not isinstance(payload, dict):
                raise InputError("bad request")
            seq = int(seq)
            state = self.session(str(payload.get("session", "")))
            params = parse_params(payload.get("params") or {}, self.default_model)
            sketch = decode()
        except (InputError, TypeError, ValueError) as error:
            return {"seq": seq, "status": "error", "message": str(error)}, None
        state.sketch, state.params, state.seq = sketch, params, seq
        request = Request(session=str(payload["session"]), version=seq, sketch=sketch, **params)
        frame = self.host.generate(request)
        reply = {
            "seq": seq,
            "status": frame.status,
            "message": frame.message,
            "queue_ms": frame.queue_ms,
            "timings": dict(frame.timings),
        }
        jpeg = None
        if frame.image is not None and frame.status in ("ok", "cached"):
            t1 = time.perf_counter()
            jpeg = encode_jpeg(frame.image)
            reply["timings"]["encode"] = (time.perf_counter() - t1) * 1e3
            state.image = frame.image
            if payload.get("final"):
                key = request.key()
                if key != state.last_history_key:
                    state.last_history_key = key
                    self.history.add_later(frame.image, sketch, params)
        return reply, jpeg

    def live_refine(self, payload) -> dict:
        """The pen-up refine pass for the tab's latest frame (`seq`): the model's multi-step teacher, if it has one."""
        if isinstance(payload, list) and len(payload) == 1:
            payload = payload[0]
        try:
            if not isinstance(payload, dict):
                raise InputError("bad request")
            seq = int(payload.get("seq", 0))
            session_id = str(payload.get("session", ""))
            state = self.session(session_id)
        except (InputError, TypeError, ValueError) as error:
            return {"seq": 0, "status": "error", "message": str(error)}
        if state.sketch is None or state.seq != seq:
            return {"seq": seq, "status": "stale", "message": "a newer frame exists"}
        request = Request(session=f"{session_id}-refine", version=seq, sketch=state.sketch, mode="refine",
                          **state.params)  # fmt: skip
        frame = self.host.generate(request, timeout=600)
        reply = {"seq": seq, "status": frame.status, "message": frame.message, "timings": dict(frame.timings)}
        if frame.image is not None and frame.status in ("ok", "cached"):
            reply["image"] = encode_data_url(frame.image)
            state.image = frame.image
        return reply

    def export(self, session_id: str) -> Path:
        """The tab's current frame as a PNG with prompt, seed, model, steps and the sketch embedded."""
        state = self.session(session_id)
        if state.image is None:
            raise InputError("nothing to export yet: draw something first")
        name = f"sketchsprint-{time.strftime('%Y%m%d-%H%M%S')}-seed{state.params.get('seed', 0)}.png"
        return save_png_with_metadata(state.image, state.sketch, state.params, self.exports / name)

    def variations(self, session_id: str, count: int = 4) -> list[tuple[Image.Image, str]]:
        """The same sketch and prompt with `count` other seeds, generated one after another on the worker."""
        state = self.session(session_id)
        if state.sketch is None:
            raise InputError("nothing to vary yet: draw something first")
        results = []
        base_seed = int(state.params.get("seed", 0))
        for i in range(1, count + 1):
            seed = (base_seed + i * 7919) % (MAX_SEED + 1)
            params = {**state.params, "seed": seed}
            request = Request(session=f"{session_id}-var", version=time.time_ns(), sketch=state.sketch, **params)
            frame = self.host.generate(request)
            if frame.image is None:
                raise InputError(frame.message or "variation failed")
            results.append((frame.image, f"seed {seed}"))
        return results
