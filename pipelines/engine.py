"""The Engine protocol every backend satisfies, and the single per-device worker with a latest-wins slot."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from PIL import Image

MAX_REMEMBERED = 256  # sessions the worker keeps a last frame and a shown version for (least recent go first)
# While the person draws in one tab (a foreground request within FOREGROUND_HOLD_S), other tabs' requests wait for the
# device, each at most BACKGROUND_MAX_WAIT_S: the drawing tab's frames never queue behind theirs, and every tab still
# gets a frame at least once a second.
FOREGROUND_HOLD_S = 0.5
BACKGROUND_MAX_WAIT_S = 1.0


@dataclass(frozen=True)
class PromptCond:
    """Encoded prompt: backend-specific tensors plus what the UI should be told about the text."""

    text: str
    tensors: dict[str, Any]
    truncated: bool = False
    n_tokens: int = 0


@dataclass(frozen=True)
class ControlCond:
    """Encoded control image (sketch) at one resolution; `key` identifies the pixels it came from."""

    key: str
    resolution: tuple[int, int]
    tensors: dict[str, Any]


@dataclass
class GenResult:
    """One generated frame with per-stage wall times in milliseconds."""

    image: Image.Image
    timings: dict[str, float] = field(default_factory=dict)
    notice: str = ""


class Engine(Protocol):
    """What the UI and the worker know about a backend (ARCHITECTURE.md, Contracts)."""

    name: str
    native_resolution: int
    resolution_multiple: int  # the latent grid in pixels (pipelines.resolution.snap)
    resolution_bins: dict[int, list[tuple[int, int]]]  # the sizes a binned model draws at; {} = any multiple
    allowed_steps: tuple[int, ...]
    default_steps: int  # the manifest's steps: what a frame runs when the request asks for none the model allows
    can_refine: bool  # a multi-step teacher is loaded, so `refine` draws the pen-up pass

    def warmup(self, resolution: int) -> None: ...

    def encode_prompt(self, text: str) -> PromptCond: ...

    def encode_control(self, image: np.ndarray, resolution: tuple[int, int]) -> ControlCond: ...

    def generate(
        self,
        prompt: PromptCond,
        control: ControlCond,
        *,
        seed: int,
        steps: int,
        strength: float,
        resolution: tuple[int, int],
    ) -> GenResult: ...

    def refine(
        self, prompt: PromptCond, control: ControlCond, *, seed: int, strength: float, resolution: tuple[int, int]
    ) -> GenResult: ...


class LRU:
    """A small least-recently-used map (prompt embeddings, control tensors)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_make(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)


def check_control_image(image: np.ndarray) -> None:
    """Refuse a control image that is not HxWx3 uint8 (what every engine's encode_control takes)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"control image must be HxWx3 uint8, got shape {image.shape} dtype {image.dtype}")


def check_decoder(engine: str, value: str, choices: tuple[str, ...], missing: Mapping[str, str]) -> str:
    """`value` when it names one of the engine's decoders (`choices`) whose component loaded (`missing`: decoder ->
    the component it lacks); a ValueError that says which otherwise."""
    if value not in choices:
        raise ValueError(f"decoder must be one of {choices}, got {value!r}")
    if value in missing:
        raise ValueError(f"{engine} has no {missing[value]} component")
    return value


def image_key(image: np.ndarray) -> str:
    """Content hash of an image array (shape and dtype included)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str((image.shape, image.dtype.str)).encode())
    h.update(np.ascontiguousarray(image).data)
    return h.hexdigest()


@dataclass(frozen=True)
class Request:
    """One live-canvas request; `version` grows monotonically per session."""

    session: str
    version: int
    model: str
    prompt: str
    sketch: np.ndarray = field(compare=False, repr=False)
    seed: int = 0
    steps: int = 1
    strength: float = 1.0
    resolution: int = 512
    sketch_key: str = ""
    mode: str = "live"  # live: the few-step generate; refine: the multi-step teacher pass (pen-up)
    foreground: bool = False  # from the tab the person is drawing in: served before background tabs

    def key(self) -> tuple:
        """What decides the output: an equal key is not recomputed."""
        return (
            self.mode,
            self.model,
            self.prompt,
            self.sketch_key or image_key(self.sketch),
            self.seed,
            self.steps,
            round(self.strength, 4),
            self.resolution,
        )


@dataclass
class Frame:
    """The worker's answer to one request. status: ok | cached | stale | error."""

    version: int
    status: str
    image: Image.Image | None = None
    timings: dict[str, float] = field(default_factory=dict)
    message: str = ""
    queue_ms: float = 0.0


class Ticket:
    """A handle on a submitted request; `wait()` returns its Frame."""

    def __init__(self, request: Request):
        self.request = request
        self.submitted = time.perf_counter()
        self._done = threading.Event()
        self._frame: Frame | None = None

    def _resolve(self, frame: Frame) -> None:
        if not self._done.is_set():
            self._frame = frame
            self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> Frame:
        if not self._done.wait(timeout):
            return Frame(self.request.version, "error", message=f"no answer within {timeout} s")
        assert self._frame is not None
        return self._frame


class LatestWinsWorker:
    """One thread owns the device. Each session has a one-deep slot: a newer request replaces a queued older one
    (the older is answered `stale`), an unchanged request is answered from the last frame without recomputing,
    and a frame older than the session's displayed one is dropped. Sessions are served first-come first-served,
    foreground requests (the tab the person draws in) first, so every tab gets its latest frame, the drawing tab
    waits for at most the frame in progress, and the device runs one generation at a time. While a foreground tab
    is drawing, background requests are held (FOREGROUND_HOLD_S, at most BACKGROUND_MAX_WAIT_S each)."""

    def __init__(self, render: Callable[[Request], GenResult], name: str = "engine-worker"):
        self._render = render
        self._cond = threading.Condition()
        self._pending: dict[str, Ticket] = {}
        self._order: deque[str] = deque()
        self._queued_at: dict[str, float] = {}  # when each queued session's slot was first filled (perf_counter)
        self._last: OrderedDict[str, tuple[tuple, Frame]] = OrderedDict()
        self._shown: OrderedDict[str, int] = OrderedDict()
        self._closed = False
        self._foreground_at = -float("inf")  # perf_counter of the latest foreground request
        self.generations = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, request: Request) -> Ticket:
        """Queue `request` in its session's slot, answering any request it replaces as stale."""
        ticket = Ticket(request)
        with self._cond:
            if self._closed:
                ticket._resolve(Frame(request.version, "error", message="the worker is shut down"))
                return ticket
            if request.version <= self._shown.get(request.session, -1):
                self.dropped += 1
                ticket._resolve(Frame(request.version, "stale", message="older than the displayed frame"))
                return ticket
            older = self._pending.get(request.session)
            if older is not None:
                if older.request.version > request.version:
                    self.dropped += 1
                    ticket._resolve(Frame(request.version, "stale", message="a newer request is queued"))
                    return ticket
                self.dropped += 1
                older._resolve(Frame(older.request.version, "stale", message="replaced by a newer request"))
            else:
                self._order.append(request.session)
                self._queued_at[request.session] = ticket.submitted
            self._pending[request.session] = ticket
            if request.foreground:
                self._foreground_at = ticket.submitted
            self._cond.notify()
        return ticket

    def forget(self, session: str) -> None:
        """Drop what is kept for a session and its helper sessions (`<session>-refine`, ...): a closed tab."""
        with self._cond:
            for memory in (self._last, self._shown):
                for key in [k for k in memory if k == session or k.startswith(session + "-")]:
                    del memory[key]

    def remembered(self) -> int:
        """How many sessions the worker keeps a frame or a version for."""
        with self._cond:
            return len(self._last.keys() | self._shown.keys())

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for ticket in self._pending.values():
                ticket._resolve(Frame(ticket.request.version, "error", message="the worker is shut down"))
            self._pending.clear()
            self._cond.notify_all()
        self._thread.join(timeout=5)

    def _next(self) -> Ticket | None:
        with self._cond:
            while True:
                while not self._order and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return None
                session = next((s for s in self._order if self._pending[s].request.foreground), None)
                if session is not None:
                    break
                session = self._order[0]
                queued = self._queued_at[session]  # kept when a newer request replaces a held one
                held = min(self._foreground_at + FOREGROUND_HOLD_S, queued + BACKGROUND_MAX_WAIT_S)
                wait = held - time.perf_counter()
                if wait <= 0:
                    break
                self._cond.wait(wait)  # a foreground request, a newer request or close wakes it early
            self._order.remove(session)
            del self._queued_at[session]
            return self._pending.pop(session)

    def _loop(self) -> None:
        while (ticket := self._next()) is not None:
            request = ticket.request
            queue_ms = (time.perf_counter() - ticket.submitted) * 1e3
            key = request.key()
            last = self._last.get(request.session)
            if last is not None and last[0] == key and last[1].image is not None:
                frame = Frame(request.version, "cached", last[1].image, dict(last[1].timings), last[1].message)
            else:
                try:
                    result = self._render(request)
                    frame = Frame(request.version, "ok", result.image, result.timings, result.notice)
                    self.generations += 1
                except Exception as error:  # the app stays up: the error is the answer
                    frame = Frame(request.version, "error", message=f"{type(error).__name__}: {error}")
            frame.queue_ms = queue_ms
            with self._cond:
                if request.version < self._shown.get(request.session, -1):
                    self.dropped += 1
                    frame = Frame(request.version, "stale", message="finished after a newer frame")
                else:
                    self._shown[request.session] = request.version
                    self._shown.move_to_end(request.session)
                    if frame.status == "ok":
                        self._last[request.session] = (key, frame)
                        self._last.move_to_end(request.session)
                    for memory in (self._last, self._shown):  # a bound even for sessions nobody forgets
                        while len(memory) > MAX_REMEMBERED:
                            memory.popitem(last=False)
            ticket._resolve(frame)
