"""End-to-end latency: headless Chromium draws on the live canvas; stroke-to-pixel times with their breakdown.

python -m bench.e2e --json [--model NAME] [--strokes 24] [--device cpu] [--no-engine-process]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(
    model: str | None = None,
    device: str = "cpu",
    outputs: Path | None = None,
    models_dir: Path | None = None,
    jobs: Path | None = None,
    engine_process: bool = True,
) -> Iterator[tuple[str, object]]:
    """Start the real app in this process on a free port; yields (url, LiveSessions). Outputs and distillation jobs
    go to a temporary folder unless given; the engines run in their own process unless `engine_process` is off."""
    from app import AppConfig, build_app, launch_kwargs, set_threads
    from pipelines.registry import MODELS_DIR

    set_threads(0)  # as `python app.py` does: one core stays free for the browser and the web server
    with tempfile.TemporaryDirectory() as tmp:
        config = AppConfig(
            device=device,
            model=model,
            outputs=Path(outputs or tmp),
            models_dir=Path(models_dir or MODELS_DIR),
            jobs=Path(jobs or Path(tmp) / "jobs"),
            engine_process=engine_process,
        )
        demo, sessions = build_app(config)
        port = free_port()
        demo.launch(
            server_name="127.0.0.1",
            server_port=port,
            prevent_thread_lock=True,
            quiet=True,
            **launch_kwargs(sessions, port=port),
        )
        try:
            yield f"http://127.0.0.1:{port}/", sessions
        finally:
            demo.close()
            sessions.host.close()
            sessions.close()


@contextlib.contextmanager
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def open_canvas(chromium, url: str, *, context=None):
    """A page with the live canvas ready and the first frame (model loaded) shown."""
    page = context.new_page() if context is not None else chromium.new_page()
    page.set_viewport_size({"width": 1280, "height": 1000})
    page.goto(url)
    page.wait_for_selector("#ss-canvas")
    page.wait_for_function("window.__ss !== undefined")
    return page


def shown_seq(page) -> int:
    return int(page.locator("#ss-output").get_attribute("data-seq") or 0)


def draw_stroke(page, index: int, *, segments: int = 12, pause_ms: int = 16, release: bool = True) -> None:
    """One mouse stroke across the canvas; a different path per index."""
    box = page.locator("#ss-canvas").bounding_box()
    x0 = box["x"] + box["width"] * (0.15 + 0.05 * (index % 7))
    y0 = box["y"] + box["height"] * (0.15 + 0.03 * (index % 23))
    page.mouse.move(x0, y0)
    page.mouse.down()
    for k in range(1, segments + 1):
        page.mouse.move(x0 + k * box["width"] * 0.04, y0 + k * box["height"] * 0.012 * (1 + index % 3))
        page.wait_for_timeout(pause_ms)
    if release:
        page.mouse.up()


HOUSE = [
    [(0.2, 0.55), (0.2, 0.85), (0.8, 0.85), (0.8, 0.55), (0.2, 0.55)],
    [(0.15, 0.58), (0.5, 0.28), (0.85, 0.58)],
    [(0.42, 0.85), (0.42, 0.68), (0.58, 0.68), (0.58, 0.85)],
    [(0.75, 0.1), (0.85, 0.12), (0.88, 0.2), (0.83, 0.27), (0.74, 0.26), (0.7, 0.18), (0.75, 0.1)],
]


def draw_polyline(page, points: list[tuple[float, float]], pause_ms: int = 12) -> None:
    """A stroke through points given as fractions of the canvas."""
    box = page.locator("#ss-canvas").bounding_box()
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for (xa, ya), (xb, yb) in zip(xy, xy[1:], strict=False):
        for k in range(1, 7):
            page.mouse.move(xa + (xb - xa) * k / 6, ya + (yb - ya) * k / 6)
            page.wait_for_timeout(pause_ms)
    page.mouse.up()


def screenshot(url: str, path: Path) -> None:
    """Draw a small house and save a screenshot of the Live tab (the README picture)."""
    with browser() as chromium:
        page = open_canvas(chromium, url)
        for line in HOUSE:
            draw_polyline(page, line)
        wait_idle(page)
        page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": 1280, "height": 1090})


def wait_idle(page, timeout_s: float = 30.0) -> None:
    """Wait until no request is in flight and the last sent frame is shown (or was answered)."""
    page.wait_for_function(
        "window.__ss.stats.frames + window.__ss.stats.stale + window.__ss.stats.errors > 0", timeout=timeout_s * 1000
    )
    deadline = time.time() + timeout_s
    last = -1
    while time.time() < deadline:
        page.wait_for_timeout(150)
        now = shown_seq(page)
        if now == last:
            return
        last = now


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(url: str, strokes: int, warmup: int = 2) -> dict:
    with browser() as chromium:
        page = open_canvas(chromium, url)
        for i in range(warmup):
            draw_stroke(page, i)
            wait_idle(page)
        page.evaluate(
            "() => { const s = window.__ss.stats; s.s2p.length = 0; s.engine.length = 0; "
            "s.breakdown.length = 0; s.frames = 0; s.stale = 0; s.errors = 0; }"
        )
        mid_stroke_frames = 0
        for i in range(strokes):
            before = shown_seq(page)
            draw_stroke(page, i + warmup, release=False)
            mid_stroke_frames += shown_seq(page) > before
            page.mouse.up()
            page.wait_for_timeout(200)
        wait_idle(page)
        stats = page.evaluate("() => window.__ss.stats")
    rows = stats["breakdown"]
    finals = [r for r in rows if r["final"]]

    def p50(key, source=rows):
        return statistics.median([r[key] for r in source]) if source else float("nan")

    upload_and_reply = [r["round_trip"] - r["server_total"] for r in rows]
    s2p = [r["s2p"] for r in rows]
    return {
        "strokes": strokes,
        "frames": stats["frames"],
        "frames_during_strokes": len(rows) - len(finals),
        "strokes_with_mid_stroke_update": mid_stroke_frames,
        "transport": stats["transport"],
        "stale_dropped": stats["stale"],
        "errors": stats["errors"],
        "p50_ms": percentile(s2p, 0.5),
        "p95_ms": percentile(s2p, 0.95),
        "pen_up_p50_ms": p50("s2p", finals),
        "engine_p50_ms": p50("engine"),
        "overhead_p50_ms": percentile(s2p, 0.5) - p50("engine"),
        "breakdown_p50_ms": {
            "wait_for_send": p50("edit_to_send"),
            "browser_encode": p50("encode_browser"),
            "upload_and_reply": statistics.median(upload_and_reply) if rows else float("nan"),
            "queue": p50("queue"),
            "engine": p50("engine"),
            "engine_ipc": p50("ipc"),  # part of engine: the engine process's round trip minus its own time
            "server_encode": p50("encode_server"),
            "decode_and_paint": p50("paint"),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model name (default: the app's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--strokes", type=int, default=24)
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    parser.add_argument(
        "--engine-process",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="engines in a child process, as the app runs them (default: on)",
    )
    parser.add_argument("--screenshot", type=Path, default=None, help="also save a screenshot of a drawn house")
    args = parser.parse_args(argv)
    import platform

    import torch

    with running_app(args.model, args.device, engine_process=args.engine_process) as (url, sessions):
        figures = measure(url, args.strokes)
        model = sessions.default_model
        if args.screenshot:
            screenshot(url, args.screenshot)
    report = {
        "bench": "e2e",
        "model": model,
        "device": args.device,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "engine_process": args.engine_process,
        "browser": "chromium (headless, software rendering)",
        **figures,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
