"""Engines in their own process: the web server's threads never wait for the GIL while a frame is computed.

The parent (the app) holds an `EngineProcess` per device and `RemoteEngine` proxies that satisfy the Engine protocol;
the child (`python -c "...serve(fd)"`, a fresh interpreter) owns the registry-loaded engines of that device, their
caches and warm-up. They talk over a socket pair with multiprocessing's Connection framing: one request, one reply,
the parent's waiting thread blocked in os.read (no GIL held). Prompt and control tensors stay in the child; a prompt
is addressed by its text, a control image by its content key (its pixels travel only when the child has not seen
them), and a frame comes back as raw RGB bytes (cheaper end to end than PNG/JPEG: a memcpy on each side). Errors
come back as ModelError, InputError, EngineOutOfMemory (so the host's smaller-resolution fallback works) or the
child's exception type; a child that dies is reaped, the request in flight gets an EngineCrashed error, and the next
call starts a new child (which loads and warms its engines on demand).
"""

from __future__ import annotations

import atexit
import builtins
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import weakref
from collections import OrderedDict
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipelines.engine import LRU, ControlCond, GenResult, PromptCond, image_key
from pipelines.preprocess import InputError
from pipelines.registry import ROOT, ModelError, Registry

CHILD_CODE = "import sys; from pipelines.remote import serve; serve(int(sys.argv[1]))"
START_TIMEOUT_S = 600.0  # imports only (torch), generous for a busy CI machine; model loading has no limit
PIXEL_CACHE = 16  # control images the child keeps by key; the parent assumes the most recent SENT_CACHE of them
SENT_CACHE = 8
PROMPT_CACHE = 64
Loader = Callable[[Registry, str, str, str | None], Any]  # Registry.load's signature: (registry, name, device, dtype)


class EngineOutOfMemory(RuntimeError):
    """The engine process ran out of device memory (it has already freed its cache); LiveHost retries smaller."""


class EngineCrashed(RuntimeError):
    """The engine process stopped (crash, kill, shutdown) before it answered."""


class RemoteError(Exception):
    """An engine error of a type the parent does not know; its subclasses carry the child's type name."""


# ---------------------------------------------------------------------------------------------------------------
# Wire format: a pickled header dict, then (when header["payload"] is set) one raw byte string
# ---------------------------------------------------------------------------------------------------------------


def _send(conn: Connection, header: dict, payload: Any = None) -> None:
    if payload is None:
        conn.send(header)
        return
    view = memoryview(payload).cast("B")
    conn.send({**header, "payload": view.nbytes})
    conn.send_bytes(view)


def _recv(conn: Connection) -> tuple[dict, bytearray | None]:
    header = conn.recv()
    if header.get("payload") is None:
        return header, None
    buffer = bytearray(header["payload"])
    conn.recv_bytes_into(buffer)
    return header, buffer


def is_oom(error: BaseException) -> bool:
    """CUDA (or any allocator's) out-of-memory, without importing torch where it is not loaded."""
    if isinstance(error, EngineOutOfMemory) or "out of memory" in str(error).lower():
        return True
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(error, torch.cuda.OutOfMemoryError)


def error_reply(error: BaseException) -> dict:
    """Child side: an exception -> what the parent needs to raise the right type."""
    if isinstance(error, ModelError):
        kind = "model"
    elif isinstance(error, InputError):
        kind = "input"
    elif is_oom(error):
        kind = "oom"
    else:
        kind = "other"
    return {
        "error": kind,
        "type": type(error).__name__,
        "message": str(error),
        "traceback": "".join(traceback.format_exception(error)) if kind == "other" else "",
    }


def remote_exception(reply: dict) -> Exception:
    """Parent side: the child's error reply -> an exception of the matching type (builtins keep theirs)."""
    kind, name, message = reply["error"], reply["type"], reply["message"]
    if kind == "model":
        return ModelError(message)
    if kind == "input":
        return InputError(message)
    if kind == "oom":
        return EngineOutOfMemory(message)
    error: Exception | None = None
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            error = cls(message)
        except TypeError:  # a builtin with a richer constructor (UnicodeDecodeError): use the generic form
            error = None
    if error is None:
        error = type(name, (RemoteError,), {"__module__": __name__})(message)
    if reply.get("traceback"):
        error.add_note("in the engine process:\n" + reply["traceback"])
    return error


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "no exit status"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


# ---------------------------------------------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------------------------------------------

_LIVE: weakref.WeakSet[EngineProcess] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:  # app exit: no engine process outlives the app
    for process in list(_LIVE):
        process.close()


class EngineProcess:
    """One child process that owns the engines of `device`; started at construction and again on the first call
    after it died. Calls are serialized (one request in flight)."""

    def __init__(
        self,
        registry: Registry,
        device: str,
        dtype: str | None = None,
        *,
        max_engines: int = 1,
        loader: Loader | None = None,
        threads: int | None = None,
        start_timeout: float = START_TIMEOUT_S,
    ):
        if threads is None:  # the child runs torch as this process was told to (set_threads, tests' conftest)
            torch = sys.modules.get("torch")
            threads = torch.get_num_threads() if torch is not None else 0
        self.config = {
            "models_dir": str(Path(registry.models_dir).resolve()),
            "allowed_roots": [str(p) for p in registry.allowed_roots],
            "device": device,
            "dtype": dtype,
            "max_engines": max_engines,
            "threads": threads,
            "loader": pickle.dumps(loader) if loader is not None else None,  # fails here, not in the child
            "sys_path": [p for p in sys.path if p],
            "parent_pid": os.getpid(),
        }
        self.start_timeout = start_timeout
        self._lock = threading.RLock()
        self._proc: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._ready = False
        self._closed = False
        self._next_id = 0
        self._sent: OrderedDict[str, None] = OrderedDict()  # control keys the child holds (a subset of its cache)
        self.starts = 0
        self.busy: str | None = None  # the op in flight, for tests and diagnostics
        _LIVE.add(self)
        self._spawn()

    # --- lifecycle ------------------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _spawn(self) -> None:
        parent_end, child_end = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", CHILD_CODE, str(child_end.fileno())],
                pass_fds=(child_end.fileno(),),
                env=env,
                stdin=subprocess.DEVNULL,
            )
        finally:
            child_end.close()  # the child's copy is its only one: its exit is our EOF
        self._conn = Connection(parent_end.detach())
        self._ready = False
        self._sent.clear()
        self.starts += 1
        self._conn.send(self.config)

    def _handshake(self) -> None:
        assert self._conn is not None
        if not self._conn.poll(self.start_timeout):
            self._stop()
            raise EngineCrashed(f"the engine process did not start within {self.start_timeout:g} s")
        header, _ = _recv(self._conn)
        if "error" in header:
            self._stop()
            raise remote_exception(header)
        self._ready = True

    def _ensure_started(self) -> None:
        if self._closed:
            raise EngineCrashed("the engine process is shut down")
        if self._proc is None or self._proc.poll() is not None:
            self._stop()
            self._spawn()
        if not self._ready:
            try:
                self._handshake()
            except (EOFError, OSError) as error:
                raise self._crashed("start-up") from error

    def _stop(self, grace: float = 5.0) -> None:
        """Terminate (then kill) and reap the child; close our end."""
        proc, conn = self._proc, self._conn
        self._proc, self._conn, self._ready = None, None, False
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(grace)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if conn is not None:
            conn.close()

    def _crashed(self, op: str) -> EngineCrashed:
        proc = self._proc
        how = "no exit status"
        if proc is not None:
            try:
                how = describe_exit(proc.wait(5))
            except subprocess.TimeoutExpired:
                how = "stopped answering"
        self._stop()
        if self._closed:
            return EngineCrashed("the engine process is shut down")
        return EngineCrashed(f"the engine process stopped ({how}) during {op!r}; it restarts with the next request")

    def close(self) -> None:
        """Stop the child (whatever it is doing) and refuse further calls. Safe to call twice, from any thread."""
        self._closed = True
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()  # unblocks a call in flight (EOF), which then reaps under the lock
        with self._lock:
            self._stop()
        _LIVE.discard(self)

    # --- calls ----------------------------------------------------------------------------------------------

    def call(self, op: str, payload: Any = None, **args: Any) -> tuple[dict, bytearray | None]:
        """One request and its reply; raises the child's error as the matching exception type."""
        with self._lock:
            self._ensure_started()
            assert self._conn is not None
            self._next_id += 1
            self.busy = op
            start = time.perf_counter()
            try:
                _send(self._conn, {"op": op, "id": self._next_id, **args}, payload)
                reply, data = _recv(self._conn)  # blocks in os.read: the GIL is free for the web server
            except (EOFError, OSError) as error:
                raise self._crashed(op) from error
            except BaseException:  # interrupted mid-exchange (Ctrl+C): the stream is out of step, start afresh
                self._stop()
                raise
            finally:
                self.busy = None
            if reply.get("id") != self._next_id:
                self._stop()
                raise EngineCrashed(f"the engine process answered out of turn during {op!r}; it restarts")
            reply["rtt_ms"] = (time.perf_counter() - start) * 1e3
        if "error" in reply:
            raise remote_exception(reply)
        return reply, data

    def engine(self, name: str) -> RemoteEngine:
        """Load (and warm up) `name` in the child; raises ModelError as a local load would."""
        reply, _ = self.call("load", model=name)
        return RemoteEngine(self, name, reply["info"])

    def unload(self, name: str) -> None:
        if self.alive() and not self._closed:
            self.call("unload", model=name)

    def render(self, name: str, mode: str, prompt: PromptCond, control: ControlCond, kwargs: dict) -> GenResult:
        pixels = control.tensors.get("pixels")
        if pixels is None:
            raise ValueError("a RemoteEngine takes ControlConds from its own encode_control")
        header = {
            "model": name,
            "mode": mode,
            "prompt": prompt.text,
            "control_key": control.key,
            "control_resolution": tuple(control.resolution),
            "shape": pixels.shape,
            "dtype": pixels.dtype.str,
            "kwargs": kwargs,
        }
        with self._lock:
            known = control.key in self._sent and self._ready
            reply, data = self.call("generate", None if known else pixels, **header)
            if reply.get("missing"):  # the child restarted or evicted it: send the pixels after all
                reply, data = self.call("generate", pixels, **header)
            self._sent[control.key] = None
            self._sent.move_to_end(control.key)
            while len(self._sent) > SENT_CACHE:
                self._sent.popitem(last=False)
        image = Image.frombytes(reply["mode"], tuple(reply["size"]), data or b"")
        timings = dict(reply["timings"])
        timings["ipc"] = max(0.0, reply["rtt_ms"] - reply["child_ms"])
        return GenResult(image, timings, reply.get("notice", ""))


class RemoteEngine:
    """The Engine protocol in the parent, for an engine that lives in an EngineProcess. encode_prompt asks the child
    once per text (truncated, n_tokens) and keeps the answer; encode_control only keys the pixels; generate and
    refine send one request with the prompt text, the control key (and pixels when new) and the parameters."""

    def __init__(self, process: EngineProcess, model: str, info: dict):
        self.process = process
        self.model = model  # the registry name the child knows it by
        self.name = info["name"]
        self.native_resolution = int(info["native_resolution"])
        self.resolution_multiple = int(info["resolution_multiple"])
        self.resolution_bins = {int(s): [tuple(hw) for hw in b] for s, b in info["resolution_bins"].items()}
        self.allowed_steps = tuple(info["allowed_steps"])
        self.default_steps = info.get("default_steps") or self.allowed_steps[0]
        self.can_refine = bool(info.get("refine"))
        self._prompts = LRU(PROMPT_CACHE)

    def warmup(self, resolution: int) -> None:
        self.process.call("warmup", model=self.model, resolution=int(resolution))

    def encode_prompt(self, text: str) -> PromptCond:
        def ask() -> tuple[bool, int]:
            reply, _ = self.process.call("prompt", model=self.model, text=text)
            return reply["truncated"], reply["n_tokens"]

        truncated, n_tokens = self._prompts.get_or_make(text, ask)
        return PromptCond(text, {"remote_key": text}, truncated=truncated, n_tokens=n_tokens)

    def encode_control(self, image: np.ndarray, resolution: tuple[int, int]) -> ControlCond:
        image = np.ascontiguousarray(image)
        return ControlCond(image_key(image), (int(resolution[0]), int(resolution[1])), {"pixels": image})

    def generate(
        self,
        prompt: PromptCond,
        control: ControlCond,
        *,
        seed: int,
        steps: int,
        strength: float,
        resolution: tuple[int, int],
    ) -> GenResult:
        kwargs = {"seed": seed, "steps": steps, "strength": strength, "resolution": tuple(resolution)}
        return self.process.render(self.model, "live", prompt, control, kwargs)

    def refine(
        self,
        prompt: PromptCond,
        control: ControlCond,
        *,
        seed: int,
        strength: float,
        resolution: tuple[int, int],
        steps: int | None = None,
    ) -> GenResult:
        kwargs = {"seed": seed, "strength": strength, "resolution": tuple(resolution)}
        if steps is not None:
            kwargs["steps"] = steps
        return self.process.render(self.model, "refine", prompt, control, kwargs)


# ---------------------------------------------------------------------------------------------------------------
# Child side
# ---------------------------------------------------------------------------------------------------------------


class _Server:
    """The child's state: the registry, the loaded engines (at most max_engines) and the control pixels by key."""

    def __init__(self, config: dict):
        self.registry = Registry(Path(config["models_dir"]), allowed_roots=tuple(map(Path, config["allowed_roots"])))
        self.device, self.dtype = config["device"], config["dtype"]
        self.max_engines = max(1, int(config["max_engines"]))
        self.loader: Loader = pickle.loads(config["loader"]) if config["loader"] else Registry.load
        self.engines: OrderedDict[str, Any] = OrderedDict()
        self.pixels: OrderedDict[str, np.ndarray] = OrderedDict()

    def engine(self, name: str) -> Any:
        if name not in self.engines:
            self.registry.refresh()  # a student exported since the last load is listed
            spec = self.registry.get(name)
            while len(self.engines) >= self.max_engines:
                self.engines.popitem(last=False)
                self.free_memory()
            engine = self.loader(self.registry, name, self.device, self.dtype)
            engine.warmup(spec.resolution)
            self.engines[name] = engine
        self.engines.move_to_end(name)
        return self.engines[name]

    def free_memory(self) -> None:
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def handle(self, header: dict, payload: bytearray | None) -> tuple[dict, bytes | None]:
        op = header["op"]
        if op == "load":
            engine = self.engine(header["model"])
            info = {
                "name": engine.name,
                "native_resolution": engine.native_resolution,
                "resolution_multiple": engine.resolution_multiple,
                "resolution_bins": engine.resolution_bins,
                "allowed_steps": tuple(engine.allowed_steps),
                "default_steps": engine.default_steps,
                "refine": engine.can_refine,
            }
            return {"info": info}, None
        if op == "unload":
            if self.engines.pop(header["model"], None) is not None:
                self.free_memory()
            return {}, None
        if op == "warmup":
            self.engine(header["model"]).warmup(header["resolution"])
            return {}, None
        if op == "prompt":
            cond = self.engine(header["model"]).encode_prompt(header["text"])
            return {"truncated": bool(cond.truncated), "n_tokens": int(cond.n_tokens)}, None
        if op == "generate":
            return self.render(header, payload)
        raise ValueError(f"unknown engine process request {op!r}")

    def render(self, header: dict, payload: bytearray | None) -> tuple[dict, bytes | None]:
        key = header["control_key"]
        if payload is not None:
            self.pixels[key] = np.frombuffer(payload, np.dtype(header["dtype"])).reshape(header["shape"])
        elif key not in self.pixels:
            return {"missing": True}, None
        self.pixels.move_to_end(key)
        while len(self.pixels) > PIXEL_CACHE:
            self.pixels.popitem(last=False)
        engine = self.engine(header["model"])
        # the same calls, in the same order, as LiveHost makes on an in-process engine
        prompt = engine.encode_prompt(header["prompt"])
        control = engine.encode_control(self.pixels[key], header["control_resolution"])
        if header["mode"] == "refine":
            if not engine.can_refine:
                raise ModelError(f"{header['model']} has no refine pass")
            result = engine.refine(prompt, control, **header["kwargs"])
        else:
            result = engine.generate(prompt, control, **header["kwargs"])
        image = result.image
        if image.mode not in ("RGB", "RGBA", "L"):
            image = image.convert("RGB")
        reply = {"size": image.size, "mode": image.mode, "timings": dict(result.timings), "notice": result.notice}
        return reply, image.tobytes()


def _watch_parent(parent_pid: int) -> None:
    """Exit when the parent is gone (killed without closing us): no orphaned engine holds the device."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def serve(fd: int) -> None:
    """The child's main loop over the socket `fd`: config, ready, then one reply per request until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the whole group: the parent decides when we stop
    conn = Connection(fd)
    config = conn.recv()
    _watch_parent(config["parent_pid"])
    for path in config["sys_path"]:
        if path not in sys.path:
            sys.path.append(path)
    try:
        import torch

        if config["threads"]:
            torch.set_num_threads(int(config["threads"]))
        server = _Server(config)
    except Exception as error:
        _send(conn, error_reply(error))
        return
    _send(conn, {"op": "ready", "pid": os.getpid()})
    while True:
        try:
            header, payload = _recv(conn)
        except (EOFError, OSError):
            return
        start = time.perf_counter()
        try:
            reply, data = server.handle(header, payload)
        except Exception as error:  # every engine error is an answer; the loop goes on
            reply, data = error_reply(error), None
            if reply["error"] == "oom":
                server.free_memory()
        reply["id"] = header.get("id")
        reply["child_ms"] = (time.perf_counter() - start) * 1e3
        try:
            _send(conn, reply, data)
        except (EOFError, OSError):
            return
