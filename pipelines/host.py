"""LiveHost: owns the device's engines and its single latest-wins worker; turns canvas requests into frames."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np

from pipelines.engine import Engine, Frame, GenResult, LatestWinsWorker, Request, Ticket, image_key
from pipelines.preprocess import InputError, fit, is_empty, sketch_to_scribble
from pipelines.registry import ModelError, Registry
from pipelines.remote import EngineCrashed, EngineProcess, Loader, is_oom
from pipelines.resolution import MIN_RESOLUTION, snap
from pipelines.resolution import notice as resolution_notice

MAX_PROMPT_CHARS = 2000


def frame_size(engine: Engine, resolution: int) -> tuple[int, int]:
    """The (h, w) `engine` draws a square request at: the one resolution policy (pipelines.resolution.snap)."""
    return snap(
        resolution,
        resolution,
        native=engine.native_resolution,
        multiple=engine.resolution_multiple,
        bins=engine.resolution_bins,
    )


class LiveHost:
    """One per device. Engines load lazily (one resident at a time) and every generation runs on the worker thread,
    so the device is never oversubscribed however many tabs draw at once.

    With `engine_process`, the engines live in a child process (pipelines.remote) and `engine(name)` returns
    RemoteEngine proxies: torch never holds this process's GIL, so the web server answers while a frame is computed.
    Validation, notices, the OOM fallback and the latest-wins worker stay here either way. `loader(registry, name,
    device, dtype)` replaces Registry.load (it must be picklable by reference to run in the child)."""

    def __init__(
        self,
        registry: Registry,
        device: str,
        dtype: str | None = None,
        max_engines: int = 1,
        *,
        engine_process: bool = False,
        loader: Loader | None = None,
    ):
        self.registry = registry
        self.device = device
        self.dtype = dtype
        self.max_engines = max_engines
        self.loader = loader
        self.process = (
            EngineProcess(registry, device, dtype, max_engines=max_engines, loader=loader) if engine_process else None
        )
        self._engines: dict[str, Engine] = {}
        self._resolution_cap: dict[str, tuple[int, int]] = {}  # the size an out-of-memory frame fell back to
        self._load_lock = threading.Lock()
        self.worker = LatestWinsWorker(self._render)

    def engine(self, name: str) -> Engine:
        """The loaded engine for `name`, loading (and warming) it on first use; raises ModelError."""
        with self._load_lock:
            if name not in self._engines:
                spec = self.registry.get(name)
                while len(self._engines) >= self.max_engines:
                    self._unload(next(iter(self._engines)))
                if self.process is not None:
                    engine = self.process.engine(name)  # loaded and warmed up in the engine process
                else:
                    if self.loader is not None:
                        engine = self.loader(self.registry, name, self.device, self.dtype)
                    else:
                        engine = self.registry.load(name, self.device, self.dtype)
                    engine.warmup(spec.resolution)
                self._engines[name] = engine
            return self._engines[name]

    def _unload(self, name: str) -> None:
        self._engines.pop(name)
        if self.process is None:
            self._free_device_memory()
            return
        try:
            self.process.unload(name)
        except EngineCrashed:  # a restarted engine process has nothing loaded
            pass

    def can_refine(self, name: str) -> bool:
        """Whether a model offers the multi-step refine-on-pen-up pass: its manifest names a teacher (the engine
        confirms it when loaded)."""
        try:
            spec = self.registry.get(name)
        except ModelError:
            return False
        return "teacher" in spec.components

    def loaded(self) -> list[str]:
        return list(self._engines)

    def submit(self, request: Request) -> Ticket:
        """Validate cheaply on the caller's thread, then queue; bad input is answered at once as an error frame."""
        try:
            self.registry.get(request.model)
            if request.sketch.ndim != 3 or request.sketch.shape[2] != 3:
                raise InputError("the sketch must be an RGB image")
            if request.mode == "refine" and not self.can_refine(request.model):
                raise InputError(f"{request.model} has no refine pass (no multi-step teacher in its manifest)")
        except (ModelError, InputError) as error:
            ticket = Ticket(request)
            ticket._resolve(Frame(request.version, "error", message=str(error)))
            return ticket
        if not request.sketch_key:
            request = replace(request, sketch_key=image_key(request.sketch))
        return self.worker.submit(request)

    def forget(self, session: str) -> None:
        """Drop what the worker keeps for a session and its helper sessions (the tab is gone)."""
        self.worker.forget(session)

    def draw(self, request: Request, timeout: float | None = 120.0) -> Frame:
        return self.submit(request).wait(timeout)

    def close(self) -> None:
        """Stop the worker and the engine process (a request in flight is answered with an error frame)."""
        if self.process is not None:
            self.process.close()
        self.worker.close()

    def _free_device_memory(self) -> None:
        if self.process is not None:  # the engine process frees its own memory (after an OOM, on unload)
            return
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _render(self, request: Request) -> GenResult:
        t0 = time.perf_counter()
        engine = self.engine(request.model)
        notices = []
        if is_empty(fit(request.sketch, (64, 64))):
            notices.append("the canvas is empty: drawing from the prompt alone")
        prompt_text = request.prompt
        if len(prompt_text) > MAX_PROMPT_CHARS:
            prompt_text = prompt_text[:MAX_PROMPT_CHARS]
        size = frame_size(engine, request.resolution)
        cap = self._resolution_cap.get(request.model)
        if cap is not None and size[0] * size[1] > cap[0] * cap[1]:
            size = cap
        notices.append(resolution_notice((request.resolution, request.resolution), size))
        steps = request.steps if request.steps in engine.allowed_steps else engine.allowed_steps[0]
        if steps != request.steps:
            notices.append(f"{request.steps} steps not allowed for this model: using {steps}")
        t1 = time.perf_counter()
        prompt = engine.encode_prompt(prompt_text)
        if prompt.truncated:
            notices.append(f"prompt truncated to {prompt.n_tokens} tokens")
        while True:
            try:
                scribble = sketch_to_scribble(request.sketch, size)
                control = engine.encode_control(scribble, size)
                if request.mode == "refine":
                    if not engine.can_refine:
                        raise InputError(f"{request.model} has no refine pass (its teacher did not load)")
                    result = engine.refine(
                        prompt, control, seed=request.seed, strength=request.strength, resolution=size
                    )
                else:
                    result = engine.generate(
                        prompt, control, seed=request.seed, steps=steps, strength=request.strength, resolution=size
                    )
                break
            except Exception as error:
                if not is_oom(error) or min(size) // 2 < MIN_RESOLUTION:
                    raise
                self._free_device_memory()
                smaller = frame_size(engine, min(size) // 2)
                notices.append(f"out of GPU memory at {size[0]}x{size[1]}: using {smaller[0]}x{smaller[1]}")
                self._resolution_cap[request.model] = smaller
                size = smaller
        timings = {"preprocess": (t1 - t0) * 1e3, **result.timings, "host_total": (time.perf_counter() - t0) * 1e3}
        notice = "; ".join(filter(None, [*notices, result.notice]))
        return GenResult(result.image, timings, notice)


def blank_sketch(size: int = 512) -> np.ndarray:
    return np.full((size, size, 3), 255, np.uint8)
