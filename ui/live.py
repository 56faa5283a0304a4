"""Live tab logic: the canvas server function (latest-wins via LiveHost), history on disk, export, variations."""

from __future__ import annotations

import base64
import io
import json
import math
import re
import threading
import time
from collections import OrderedDict
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


MAX_SESSIONS = 64  # tabs remembered at once; the least recently used one is forgotten first
IDLE_SECONDS = 15 * 60  # a tab that sent nothing for this long is forgotten (its socket may never have closed)
PNG_LEVEL = 1  # history PNGs: 7 ms instead of 18.5 ms (level 6) for a 256 px frame and its sketch, files 1.1x larger
HISTORY_KEEP = 500  # history files kept on disk; the oldest go first
LIMITS = {  # what a request may ask for; anything else is refused with the value named
    "seed": (0, MAX_SEED),
    "steps": (1, 50),
    "strength": (0.0, 2.0),
    "resolution": (16, 2048),  # 16: the smallest native size a model of this app has (the tests' tiny networks)
}


@dataclass
class Shown:
    """The newest frame a tab was sent, with the sketch and parameters that made it (what Export saves)."""

    seq: int
    sketch: np.ndarray
    params: dict
    image: Image.Image


@dataclass
class SessionState:
    """What the server remembers of one page load of one tab: its newest request and its newest frame."""

    sketch: np.ndarray | None = None
    params: dict = field(default_factory=dict)
    seq: int = 0  # the newest request accepted; an older one arriving later is answered "stale"
    shown: Shown | None = None
    last_history_key: tuple | None = None
    last_used: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def shown_value(value) -> str:
    """A value from the browser as the person would write it (JSON spelling for the odd floats)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    text = json.dumps(value) if isinstance(value, (str, list, dict)) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def number(raw: dict, key: str, default, cast: type):
    """One numeric parameter, checked against LIMITS; InputError naming the value sent when it is not allowed."""
    value = raw.get(key, default)
    low, high = LIMITS[key]
    kind = "a whole number" if cast is int else "a number"
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError
        parsed = float(value)
        if not math.isfinite(parsed) or (cast is int and parsed != int(parsed)):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{key} {shown_value(value)} is not {kind} from {low} to {high}") from None
    if not low <= parsed <= high:
        raise InputError(f"{key} {shown_value(value)} is out of range: choose {low} to {high}")
    return cast(parsed)


def parse_params(raw, default_model: str) -> dict:
    """Browser parameters -> typed values; InputError naming the value when one is missing its mark."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InputError(f"params must be an object of named values, got {shown_value(raw)}")
    model = raw.get("model") or default_model
    return {
        "prompt": str(raw.get("prompt", ""))[:20_000],
        "seed": number(raw, "seed", 0, int),
        "steps": number(raw, "steps", 1, int),
        "strength": number(raw, "strength", 1.0, float),
        "resolution": number(raw, "resolution", 512, int),
        "model": str(model)[:200],
    }


def parse_seq(payload) -> int:
    """The request's sequence number: a whole number >= 0 (the tab counts its requests from 1)."""
    seq = payload.get("seq") if isinstance(payload, dict) else None
    if isinstance(seq, bool) or not isinstance(seq, (int, float)) or not math.isfinite(seq) or seq != int(seq):
        raise InputError(f"seq {shown_value(seq)} is not a whole number")
    if not 0 <= seq <= 2**53:
        raise InputError(f"seq {shown_value(seq)} is out of range")
    return int(seq)


def reply_seq(payload):
    """The seq to answer with: the request's own when it has a usable one, else None."""
    try:
        return parse_seq(payload)
    except InputError:
        return None


class History:
    """Recent results as PNG files with their metadata (prompt, seed, model, steps, sketch); survives restarts."""

    def __init__(self, folder: Path, keep: int = HISTORY_KEEP):
        self.folder = Path(folder)
        self.keep = keep
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history")
        self._pending: list[Future] = []

    def add(self, image: Image.Image, sketch: np.ndarray, params: dict) -> Path:
        with self._lock:
            path = self._new_path()
            save_png_with_metadata(image, sketch, params, path)
            self._prune()
        return path

    def _new_path(self) -> Path:
        """A free file name that sorts after every earlier entry: the local time to the second, then the
        microseconds within it (ENTRY_RE; older folders' entries end in 6 hex digits and still match)."""
        now = time.time_ns() // 1000
        while True:
            seconds, micros = divmod(now, 1_000_000)
            path = self.folder / f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(seconds))}-{micros:06d}.png"
            if not path.exists():
                return path
            now += 1

    def _prune(self) -> None:
        """Keep the newest `keep` entries on disk."""
        files = sorted(p for p in self.folder.glob("*.png") if ENTRY_RE.match(p.stem))
        for old in files[: max(0, len(files) - self.keep)]:
            old.unlink(missing_ok=True)

    def close(self) -> None:
        """Finish the queued writes and stop the writer thread."""
        self.flush()
        self._writer.shutdown(wait=True)

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
        Image.fromarray(sketch).save(buffer, format="PNG", compress_level=PNG_LEVEL)
        info.add_text("sketch", base64.b64encode(buffer.getvalue()).decode())  # a PNG already: no second zlib pass
    return info


def save_png_with_metadata(image: Image.Image, sketch: np.ndarray | None, params: dict, path: Path) -> Path:
    tmp = path.with_suffix(".tmp")
    image.save(tmp, format="PNG", pnginfo=png_metadata(params, sketch), compress_level=PNG_LEVEL)
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
    """The Live tab's server side: one LiveHost shared by every tab, per-tab state, history and exports.

    A session is one page load of one tab (the canvas makes a new id on every load). Each session takes requests
    newer-wins under its own lock, and is forgotten when its socket closes, after IDLE_SECONDS without a request,
    or when MAX_SESSIONS newer ones exist, together with what the worker keeps for it."""

    def __init__(self, host: LiveHost, default_model: str, outputs: Path):
        self.host = host
        self.default_model = default_model
        self.history = History(Path(outputs) / "history")
        self.exports = Path(outputs) / "exports"
        self.exports.mkdir(parents=True, exist_ok=True)
        self._sessions: OrderedDict[str, SessionState] = OrderedDict()
        self._lock = threading.Lock()
        self._export_lock = threading.Lock()

    def session(self, session_id: str) -> SessionState:
        """The tab's state (created on first use); refreshes its idle clock and forgets idle and surplus tabs."""
        if not isinstance(session_id, str) or not SESSION_RE.match(session_id):
            raise InputError("refused: bad session id")
        now = time.monotonic()
        with self._lock:
            state = self._sessions.pop(session_id, None) or SessionState()
            state.last_used = now
            self._sessions[session_id] = state
            gone = [k for k, s in self._sessions.items() if now - s.last_used > IDLE_SECONDS]
            gone += list(self._sessions)[: max(0, len(self._sessions) - len(gone) - MAX_SESSIONS)]
            for key in dict.fromkeys(gone):
                self._sessions.pop(key, None)
        for key in dict.fromkeys(gone):
            self.host.forget(key)
        return state

    def forget(self, session_id: str) -> None:
        """Drop a tab's state and what the worker keeps for it (the tab closed or reloaded)."""
        with self._lock:
            self._sessions.pop(session_id, None)
        self.host.forget(session_id)

    def __len__(self) -> int:
        return len(self._sessions)

    def close(self) -> None:
        """Finish the history writes (the host is closed by its owner)."""
        self.history.close()

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
        `payload` carries session, seq, final (pen-up), history (keep the frame) and params; `decode` reads the
        sketch. Every call is answered with the request's own seq (None when it has none), errors included."""
        seq = None  # until the request's own seq is read
        try:
            if not isinstance(payload, dict):
                raise InputError("bad request: expected an object with session, seq and params")
            seq = parse_seq(payload)
            session_id = payload.get("session", "")
            state = self.session(session_id)
            params = parse_params(payload.get("params"), self.default_model)
            if seq <= state.seq:
                return {"seq": seq, "status": "stale", "message": "a newer snapshot of this tab arrived first"}, None
            sketch = decode()
        except InputError as error:
            return {"seq": seq, "status": "error", "message": str(error)}, None
        with state.lock:  # newer wins: an older snapshot that lost the race to the lock never overwrites a newer one
            if seq <= state.seq:
                return {"seq": seq, "status": "stale", "message": "a newer snapshot of this tab arrived first"}, None
            state.sketch, state.params, state.seq = sketch, params, seq
        foreground = payload.get("foreground") is True
        request = Request(session=session_id, version=seq, sketch=sketch, foreground=foreground, **params)
        frame = self.host.draw(request)
        reply = {
            "seq": seq,
            "status": frame.status,
            "message": frame.message,
            "queue_ms": frame.queue_ms,
            "timings": dict(frame.timings),
            "seed": params["seed"],
        }
        jpeg = None
        if frame.image is not None and frame.status in ("ok", "cached"):
            t1 = time.perf_counter()
            jpeg = encode_jpeg(frame.image)
            reply["timings"]["encode"] = (time.perf_counter() - t1) * 1e3
            with state.lock:
                if state.shown is None or seq > state.shown.seq:
                    state.shown = Shown(seq, sketch, params, frame.image)
                key = request.key() if payload.get("history", payload.get("final")) else None
                keep = key is not None and key != state.last_history_key
                if keep:
                    state.last_history_key = key
            if keep:
                self.history.add_later(frame.image, sketch, params)
        return reply, jpeg

    def live_refine(self, payload) -> dict:
        """The pen-up refine pass for the tab's latest frame (`seq`): the model's multi-step teacher, if it has one."""
        if isinstance(payload, list) and len(payload) == 1:
            payload = payload[0]
        seq = None
        try:
            if not isinstance(payload, dict):
                raise InputError("bad request: expected an object with session and seq")
            seq = parse_seq(payload)
            session_id = payload.get("session", "")
            state = self.session(session_id)
        except InputError as error:
            return {"seq": seq, "status": "error", "message": str(error)}
        with state.lock:
            if state.sketch is None or state.seq != seq:
                return {"seq": seq, "status": "stale", "message": "a newer frame exists"}
            sketch, params = state.sketch, dict(state.params)
        request = Request(session=f"{session_id}-refine", version=seq, sketch=sketch, mode="refine", **params)
        frame = self.host.draw(request, timeout=600)
        reply = {"seq": seq, "status": frame.status, "message": frame.message, "timings": dict(frame.timings)}
        if frame.image is not None and frame.status in ("ok", "cached"):
            reply["image"] = encode_data_url(frame.image)
            with state.lock:
                if state.shown is None or seq >= state.shown.seq:
                    state.shown = Shown(seq, sketch, params, frame.image)
        return reply

    def export(self, session_id: str) -> Path:
        """The tab's shown frame as a PNG with the prompt, seed, model, steps and sketch that made it embedded."""
        state = self.session(session_id)
        with state.lock:
            shown = state.shown
        if shown is None:
            raise InputError("nothing to export yet: draw something first")
        stem = f"sketchsprint-{time.strftime('%Y%m%d-%H%M%S')}-seed{shown.params.get('seed', 0)}"
        with self._export_lock:  # two exports in the same second get two files
            path, n = self.exports / f"{stem}.png", 1
            while path.exists():
                n += 1
                path = self.exports / f"{stem}-{n}.png"
            return save_png_with_metadata(shown.image, shown.sketch, shown.params, path)

    def variations(self, session_id: str, count: int = 4) -> list[tuple[Image.Image, str]]:
        """The same sketch and prompt with `count` other seeds, generated one after another on the worker."""
        state = self.session(session_id)
        with state.lock:
            sketch, base = state.sketch, dict(state.params)
        if sketch is None:
            raise InputError("nothing to vary yet: draw something first")
        results = []
        base_seed = int(base.get("seed", 0))
        for i in range(1, count + 1):
            seed = (base_seed + i * 7919) % (MAX_SEED + 1)
            params = {**base, "seed": seed}
            request = Request(session=f"{session_id}-var", version=time.time_ns(), sketch=sketch, **params)
            frame = self.host.draw(request)
            if frame.image is None:
                raise InputError(frame.message or "variation failed")
            results.append((frame.image, f"seed {seed}"))
        return results
