"""The README's run command: `python app.py` starts offline on a CPU and serves the page; flags behave."""

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.e2e import free_port

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
