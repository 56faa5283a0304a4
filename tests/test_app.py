"""The README's run command: `python app.py` starts offline on a CPU and serves the page; flags behave."""

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.e2e import free_port

ROOT = Path(__file__).resolve().parent.parent


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
        deadline, page = time.time() + 120, ""
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
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert "unknown model 'no-such-model'" in output
    assert "0.0.0.0" not in output
