"""The README's run command: `python app.py` starts offline on a CPU and serves the page; flags behave."""

import io
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from bench.e2e import free_port, running_app

ROOT = Path(__file__).resolve().parent.parent


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc/*/stat)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_python_app_py_starts_offline_and_serves_the_canvas(tmp_path):
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    process = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port), "--outputs", str(tmp_path), "--model", "no-such-model"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, page = time.time() + 300, ""  # a busy 2-core machine starts the engine process slowly
        while time.time() < deadline and process.poll() is None:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert "ss-canvas" in page, "the app did not serve its canvas"
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/gradio_api/file=/etc/passwd", timeout=5)
            leaked = True
        except OSError:
            leaked = False
        assert not leaked, "files outside the allowed folders must not be served"
        engines = children(process.pid)
        assert engines, "the models run in an engine process by default"
    finally:
        process.terminate()
        output = process.communicate(timeout=60)[0]
    assert process.returncode == 0, output  # SIGTERM shuts down like Ctrl+C
    assert not [pid for pid in engines if Path(f"/proc/{pid}").exists()], "the engine process outlived the app"
    assert "unknown model 'no-such-model'" in output
    assert "0.0.0.0" not in output


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The real app (build_app + launch with launch_kwargs) on a loopback port."""
    with running_app(outputs=tmp_path_factory.mktemp("outputs"), engine_process=False) as (url, sessions):
        yield int(url.rsplit(":", 1)[1].strip("/"))


def get(port: int, path: str, host: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Host": host, "Origin": f"http://{host}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def socket_frame(port: int, host: str) -> dict:
    """One snapshot on the live socket with the given Host (and a matching Origin): the reply header."""
    from websockets.sync.client import connect

    from ui import live_socket

    raw = socket.create_connection(("127.0.0.1", port))
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(buffer, format="PNG")
    head = {"session": "rebind", "seq": 1, "final": True, "params": {"prompt": "a cat"}}
    with connect(f"ws://{host}{live_socket.PATH}", sock=raw, origin=f"http://{host}", open_timeout=30) as ws:
        ws.send(live_socket.pack(head, buffer.getvalue()))
        return live_socket.unpack(ws.recv(timeout=120))[0]


@pytest.mark.parametrize("path", ["/", "/config", "/gradio_api/info"])
def test_a_rebinding_page_is_refused_on_every_http_route(served, path):
    assert get(served, path, f"evil.example:{served}") == 403
    assert get(served, path, f"127.0.0.1:{served}") == 200
    assert get(served, path, f"localhost:{served}") == 200


def test_a_rebinding_page_is_refused_on_the_live_socket(served):
    from websockets.exceptions import ConnectionClosed

    with pytest.raises(ConnectionClosed) as refused:
        socket_frame(served, f"evil.example:{served}")
    assert refused.value.rcvd.code == 1008
    for host in (f"127.0.0.1:{served}", f"localhost:{served}"):
        assert socket_frame(served, host)["status"] in ("ok", "cached")


def test_a_network_bind_prints_a_token_link_and_refuses_requests_without_it(tmp_path):
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "app.py", "--host", "0.0.0.0", "--port", str(port), "--outputs", str(tmp_path)]
    process = subprocess.Popen(command + ["--no-engine-process"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = ""
        while "?token=" not in line and process.poll() is None:
            line = process.stdout.readline()
        token = line.split("?token=")[1].strip()
        deadline, status = time.time() + 300, None
        while time.time() < deadline and status is None:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2)
                status = 200
            except urllib.error.HTTPError as error:
                status = error.code
            except OSError:
                time.sleep(0.5)
        assert status == 403, "without the token the app must refuse"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/?token={token}", timeout=30) as response:
            cookie = response.headers["set-cookie"].split(";")[0]
        request = urllib.request.Request(f"http://127.0.0.1:{port}/config", headers={"Cookie": cookie})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert "ss-canvas" in response.read().decode()
    finally:
        process.terminate()
        process.communicate(timeout=60)
