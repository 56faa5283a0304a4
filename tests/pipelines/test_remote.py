"""Engines in their own process (pipelines.remote): the same pixels as in process, errors keep their types (and the
OOM fallback still works), a killed engine process is one error frame and then restarts, close() leaves nothing
behind. One real engine process per module (its torch import takes seconds); the tiny random SD model builds there
from its manifest and the bundled sketch-tiny loads from assets, nothing is downloaded."""

import os
import re
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from pipelines.engine import Request
from pipelines.host import LiveHost
from pipelines.preprocess import InputError
from pipelines.registry import MODELS_DIR, ModelError, Registry
from pipelines.remote import EngineCrashed, EngineOutOfMemory, RemoteEngine, RemoteError
from tests.fakes import PROMPT_ERRORS, loader, write_manifests

TIMEOUT = 600.0  # seconds: a busy 2-core machine builds and warms even the tiny model slowly
SD = "tiny-random-sd"
TINY = "sketch-tiny"  # the offline default: a trained 1-step student with a flow teacher for the refine pass
BROKEN = 'name = "broken"\ntitle = "broken"\nbackend = "sd"\n[components]\nbase = "./gone"\ncontrolnet = "./gone"\n'


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Registry:
    folder = tmp_path_factory.mktemp("remote-models")
    shutil.copy(MODELS_DIR / f"{SD}.toml", folder)
    manifest = (MODELS_DIR / f"{TINY}.toml").read_text()  # its weights stay in assets: absolute component paths
    (folder / f"{TINY}.toml").write_text(re.sub(r'"\./', f'"{MODELS_DIR}/', manifest))
    write_manifests(folder)
    (folder / "broken.toml").write_text(BROKEN)
    return Registry(folder, allowed_roots=(folder, MODELS_DIR))


@pytest.fixture(scope="module")
def remote(registry):
    host = LiveHost(registry, "cpu", max_engines=4, engine_process=True, loader=loader)
    yield host
    host.close()


def sketch(offset: int = 0) -> np.ndarray:
    image = np.full((512, 512, 3), 255, np.uint8)
    image[200 + offset : 210 + offset, 50:450] = 0
    image[100:400, 250 - offset : 258 - offset] = 0
    return image


def req(version: int = 1, **kw) -> Request:
    base = dict(session="s", version=version, model=SD, prompt="a cat", sketch=sketch(), resolution=256)
    return Request(**{**base, **kw})


def gone(pid: int) -> bool:
    """No process and no zombie: the pid was reaped."""
    return not Path(f"/proc/{pid}").exists()


def test_remote_frames_are_pixel_identical_to_in_process_frames(remote, registry):
    local = LiveHost(registry, "cpu", max_engines=2)
    try:
        requests = [
            req(1, seed=0, steps=1),
            req(2, seed=5, steps=2, prompt="", sketch=sketch(40)),
            req(3, seed=5, steps=2, prompt="", sketch=sketch(40), strength=0.5),  # same control: its key is reused
            req(4, model=TINY, resolution=128, prompt="a smiling sun"),
            req(5, model=TINY, resolution=128, prompt="a smiling sun", mode="refine", seed=2),  # the teacher's pass
        ]
        for request in requests:
            there, here = remote.draw(request, TIMEOUT), local.draw(request, TIMEOUT)
            assert there.status == here.status == "ok", (there.message, here.message)
            assert np.array_equal(np.asarray(there.image), np.asarray(here.image))
            assert there.message == here.message
            assert set(there.timings) == set(here.timings) | {"ipc"}
        proxy, engine = remote.engine(SD), local.engine(SD)
        assert isinstance(proxy, RemoteEngine) and not isinstance(engine, RemoteEngine)
        assert (proxy.name, proxy.native_resolution, proxy.allowed_steps) == (
            engine.name,
            engine.native_resolution,
            engine.allowed_steps,
        )
        long = "word " * 100
        cond, expected = proxy.encode_prompt(long), engine.encode_prompt(long)
        assert (cond.truncated, cond.n_tokens) == (expected.truncated, expected.n_tokens) and cond.truncated
        assert "prompt_embeds" not in cond.tensors  # the tensors stay in the engine process
    finally:
        local.close()


@pytest.mark.parametrize(
    ("prompt", "kind"),
    [
        ("raise model error", ModelError),
        ("raise input error", InputError),
        ("raise oom", EngineOutOfMemory),
        ("raise value error", ValueError),
        ("raise boom", RemoteError),
    ],
)
def test_engine_errors_come_back_as_their_types(remote, prompt, kind):
    engine = remote.engine("scripted")
    cond = engine.encode_prompt(prompt)
    control = engine.encode_control(np.zeros((256, 256, 3), np.uint8), (256, 256))
    with pytest.raises(kind, match=str(PROMPT_ERRORS[prompt]).split(".")[0]) as raised:
        engine.generate(cond, control, seed=0, steps=1, strength=1.0, resolution=(256, 256))
    name = type(PROMPT_ERRORS[prompt]).__name__
    if kind is RemoteError:
        assert type(raised.value).__name__ == name  # the frame says "SketchBoom: ...", as in process
    frame = remote.draw(req(time.time_ns(), model="scripted", prompt=prompt), TIMEOUT)
    assert frame.status == "error" and str(PROMPT_ERRORS[prompt]).split(".")[0] in frame.message


def test_a_real_engine_error_and_a_missing_model_keep_their_types(remote):
    engine = remote.engine(SD)
    control = engine.encode_control(np.zeros((256, 256, 3), np.uint8), (256, 256))
    with pytest.raises(ValueError, match="not 7"):
        engine.generate(engine.encode_prompt(""), control, seed=0, steps=7, strength=1.0, resolution=(256, 256))
    with pytest.raises(ModelError, match="files not on disk"):
        remote.engine("broken")
    frame = remote.draw(req(model="broken", session="broken"), TIMEOUT)
    assert frame.status == "error" and frame.message.startswith("ModelError: ")


def test_out_of_memory_in_the_engine_process_falls_back_to_a_smaller_resolution(remote):
    first = remote.draw(req(model="scripted-oom", session="oom", resolution=512), TIMEOUT)
    second = remote.draw(req(2, model="scripted-oom", session="oom", resolution=512, seed=3), TIMEOUT)
    assert first.status == "ok" and "out of GPU memory at 512x512" in first.message
    assert first.image.size == (256, 256)
    assert second.status == "ok" and "out of GPU memory" not in second.message  # remembered: no second OOM


def test_a_killed_engine_process_is_an_error_frame_and_the_next_request_restarts_it(remote):
    ticket = remote.submit(req(model="scripted-slow", session="kill"))
    deadline = time.monotonic() + TIMEOUT
    while remote.process.busy != "generate" and time.monotonic() < deadline:  # loaded; the frame is in flight
        time.sleep(0.01)
    assert remote.process.busy == "generate"
    old = remote.process.pid
    os.kill(old, signal.SIGKILL)
    frame = ticket.wait(TIMEOUT)
    assert frame.status == "error" and "EngineCrashed" in frame.message and "SIGKILL" in frame.message
    assert gone(old)
    after = remote.draw(req(2, model="scripted", session="kill"), TIMEOUT)
    assert after.status == "ok" and remote.process.pid not in (None, old)


def test_close_stops_the_engine_process_and_later_requests_are_refused(registry):
    host = LiveHost(registry, "cpu", engine_process=True, loader=loader)
    frame = host.draw(req(model="scripted"), TIMEOUT)
    pid = host.process.pid
    host.close()
    assert frame.status == "ok" and pid is not None and gone(pid)
    with pytest.raises(EngineCrashed, match="shut down"):
        host.process.call("load", model="scripted")
    assert host.draw(req(2, model="scripted"), 5).status == "error"
