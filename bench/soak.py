"""Soak: many tabs drawing for minutes plus a stream of short-lived sockets; memory, answers and latency at the end.

    python -m bench.soak --json                      # 5 tabs x 10 minutes + 1,000 sockets (about 13 minutes)
    python -m bench.soak --minutes 0.2 --tabs 2 --connections 20 --baseline-s 5 --warmup-s 5 --json   # smoke

The app runs as `python app.py` in a child process (its resident memory is the app's plus its engine process's).
1. Baseline: one tab draws alone for --baseline-s; its stroke-to-pixel p95 is the single-tab figure.
2. Warm-up: --tabs tabs draw for --warmup-s; then the resident memory is read ("after warm-up").
3. Soak: the tabs draw for --minutes while --connections sockets, each with a fresh session id, open, send one
   snapshot (every tenth a blank 4096x4096 PNG, as a hostile page would), read its reply and close.
4. The tabs stop; once every request is answered the memory is read again.
Tab 0 is the foreground tab; the others are told they are in the background (`window.__ss.foreground = false`),
as a browser reports for tabs the person is not drawing in: headless Chromium reports every tab as focused. With
--background sockets the background tabs are socket clients sending the request stream such a page sends (no browser):
on a 2-core machine four more Chromium renderers take CPU the app would have on a server whose users draw elsewhere.
Pass: memory at the end within --max-growth-mb of after warm-up, every request of every tab and socket answered
(with its own seq), and the foreground tab's p95 stroke-to-pixel within --max-ratio of the single-tab run.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil
from PIL import Image, ImageDraw

from bench.e2e import CHROMIUM, CHROMIUM_ARGS, free_port, percentile

ROOT = Path(__file__).resolve().parent.parent


def resident_mb(pid: int) -> float:
    """Resident memory of a process and all its children, in MB."""
    root = psutil.Process(pid)
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def start_app(port: int, outputs: Path, model: str | None) -> subprocess.Popen:
    """`python app.py` on a loopback port, offline; returns once it serves its page."""
    command = [sys.executable, "app.py", "--port", str(port), "--outputs", str(outputs)]
    command += ["--model", model] if model else []
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2).read()
            return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("the app did not start")


def snapshot(rng: np.random.Generator, size: int = 512) -> bytes:
    """A PNG of a few random strokes, like a canvas snapshot."""
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        draw.line([tuple(p) for p in rng.integers(0, size, (5, 2)).tolist()], fill="black", width=6)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def blank_4096() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (4096, 4096), 1).save(buffer, format="PNG")
    return buffer.getvalue()


def socket_churn(port: int, count: int, seconds: float, results: dict, model: str | None) -> None:
    """`count` sockets spread over `seconds`, each a fresh session sending one snapshot and reading one reply."""
    from websockets.sync.client import connect

    from ui import live_socket

    rng = np.random.default_rng(0)
    big = blank_4096()
    params = {"prompt": "a red house", "seed": 1, "steps": 1, "resolution": 256, **({"model": model} if model else {})}
    start = time.monotonic()
    for k in range(count):
        wait = start + seconds * k / max(1, count) - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        head = {"session": f"churn{k}-{os.getpid()}", "seq": 1, "final": False, "params": params}
        try:
            with connect(f"ws://127.0.0.1:{port}{live_socket.PATH}", open_timeout=30, max_size=2**26) as ws:
                ws.send(live_socket.pack(head, big if k % 10 == 9 else snapshot(rng)))
                reply, _ = live_socket.unpack(ws.recv(timeout=120))
            results["answered" if reply.get("seq") == 1 else "wrong_seq"] += 1
            results["errors"] += reply.get("status") == "error"
        except Exception as error:  # counted, not fatal: the figure says how many went unanswered
            results["failed"] += 1
            results["last_failure"] = f"{type(error).__name__}: {error}"


# Strokes drawn by the page itself: the same pointer events the canvas handles, 12 moves 16 ms apart then pen-up and a
# 100 ms pause, without a round trip to the benchmark per move (with 5 tabs that traffic, not the app, filled the CPU).
PAGE_DRAWER = """async ([seconds, index]) => {
  const canvas = document.querySelector('#ss-canvas');
  const box = canvas.getBoundingClientRect();
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const fire = (type, x, y) => canvas.dispatchEvent(new PointerEvent(type, {
    bubbles: true, cancelable: true, pointerId: 1, pointerType: 'mouse', isPrimary: true,
    clientX: x, clientY: y, buttons: type === 'pointerup' ? 0 : 1, button: 0 }));
  const end = performance.now() + seconds * 1000;
  for (let k = 0; performance.now() < end; k++) {
    const x0 = box.x + box.width * (0.1 + 0.07 * ((k + index) % 9));
    const y0 = box.y + box.height * (0.1 + 0.05 * ((3 * k + index) % 15));
    fire('pointerdown', x0, y0);
    for (let s = 1; s < 13; s++) {
      fire('pointermove', x0 + s * box.width * 0.03, y0 + s * box.height * 0.01 * (1 + k % 3));
      await sleep(16);
    }
    fire('pointerup', x0 + 12 * box.width * 0.03, y0 + 12 * box.height * 0.01 * (1 + k % 3));
    await sleep(100);
  }
}"""


async def draw_until(page, deadline: float, index: int, mode: str = "page") -> None:
    """Strokes across the canvas until `deadline` (monotonic seconds): pointer events fired by the page ("page") or
    mouse input sent by the benchmark through the browser's devtools protocol ("cdp", one round trip per move)."""
    if mode == "page":
        await page.evaluate(PAGE_DRAWER, [max(0.0, deadline - time.monotonic()), index])
        return
    box = await page.locator("#ss-canvas").bounding_box()
    k = 0
    while time.monotonic() < deadline:
        x0 = box["x"] + box["width"] * (0.1 + 0.07 * ((k + index) % 9))
        y0 = box["y"] + box["height"] * (0.1 + 0.05 * ((3 * k + index) % 15))
        await page.mouse.move(x0, y0)
        await page.mouse.down()
        for s in range(1, 13):
            await page.mouse.move(x0 + s * box["width"] * 0.03, y0 + s * box["height"] * 0.01 * (1 + k % 3))
            await asyncio.sleep(0.016)
        await page.mouse.up()
        await asyncio.sleep(0.1)
        k += 1


BACKGROUND_THROTTLE_S = 0.25  # ui/canvas.js BACKGROUND_THROTTLE_MS: mid-stroke frames of a background tab


async def socket_tab(port: int, deadline: float, index: int, model: str | None, counts: dict) -> None:
    """A background tab without a browser (--background sockets): the request stream a background page sends while
    drawing, on its own socket. Strokes as PAGE_DRAWER draws them (12 moves 16 ms apart, pen-up, 100 ms pause); a
    mid-stroke snapshot when none is in flight and BACKGROUND_THROTTLE_S has passed, the pen-up snapshot once the one
    in flight is answered (ui/canvas.js's rules for a tab that is not in the foreground). Snapshots are 256 px PNGs of
    random strokes, encoded before the clock starts. `counts` gains sent, answered, wrong_seq and errors."""
    from websockets.asyncio.client import connect

    from ui import live_socket

    rng = np.random.default_rng(100 + index)
    snaps = [snapshot(rng, size=256) for _ in range(8)]
    params = {"prompt": "a red house", "seed": 1, "steps": 1, "resolution": 256, **({"model": model} if model else {})}
    session = f"background{index}-{os.getpid()}"
    waiting: set[int] = set()
    idle = asyncio.Event()
    idle.set()
    seq, last_send = 0, -1e9

    async def send(ws, final: bool) -> None:
        nonlocal seq, last_send
        seq += 1
        waiting.add(seq)
        idle.clear()
        last_send = time.monotonic()
        counts["sent"] += 1
        head = {"session": session, "seq": seq, "final": final, "foreground": False, "params": params}
        await ws.send(live_socket.pack(head, snaps[seq % len(snaps)]))

    async def receive(ws) -> None:
        async for message in ws:
            reply, _ = live_socket.unpack(message)
            if reply.get("seq") in waiting:
                waiting.discard(reply["seq"])
                counts["answered"] += 1
                counts["errors"] += reply.get("status") == "error"
            else:
                counts["wrong_seq"] += 1
            if not waiting:
                idle.set()

    async with connect(f"ws://127.0.0.1:{port}{live_socket.PATH}", max_size=2**26) as ws:
        reader = asyncio.create_task(receive(ws))
        while time.monotonic() < deadline:
            for _ in range(12):
                await asyncio.sleep(0.016)
                if idle.is_set() and time.monotonic() - last_send >= BACKGROUND_THROTTLE_S:
                    await send(ws, False)
            await idle.wait()
            await send(ws, True)
            await asyncio.sleep(0.1)
        await asyncio.wait_for(idle.wait(), timeout=120)
        reader.cancel()


async def open_tab(context, url: str, foreground: bool):
    page = await context.new_page()
    await page.set_viewport_size({"width": 1280, "height": 1000})
    await page.goto(url)
    await page.wait_for_selector("#ss-canvas")
    await page.wait_for_function("window.__ss !== undefined")
    await page.evaluate(f"() => {{ window.__ss.foreground = {'true' if foreground else 'false'}; }}")
    return page


STAGES = (
    "edit_to_send",
    "encode_browser",
    "round_trip",
    "uplink",
    "dispatch",
    "server_total",
    "queue",
    "engine",
    "ipc",
    "downlink",
    "handler",
    "decode",
    "paint",
)


async def breakdown_since(page, start: int) -> list[dict]:
    return await page.evaluate(f"() => window.__ss.stats.breakdown.slice({start})")


def stage_p50(rows: list[dict]) -> dict:
    """Median of each stage of stroke-to-pixel, in ms (where the time goes)."""
    return {key: round(percentile([r.get(key, 0.0) for r in rows], 0.5), 1) for key in STAGES}


def tail_stage_p50(rows: list[dict], q: float = 0.95) -> dict:
    """Median of each stage over the frames at or above the q-quantile of stroke-to-pixel: where the tail's time goes
    (the p95 is what the latency check compares)."""
    if not rows:
        return {}
    cut = percentile([r["s2p"] for r in rows], q)
    return stage_p50([r for r in rows if r["s2p"] >= cut])


async def rows(page) -> int:
    return await page.evaluate("() => window.__ss.stats.breakdown.length")


async def settle(pages, timeout_s: float = 120.0) -> list[dict]:
    """Wait until every tab has an answer for every request it sent; returns their counters."""
    deadline = time.monotonic() + timeout_s
    while True:
        stats = [
            await p.evaluate(
                "() => { const s = window.__ss.stats; return {sent: s.sent, answered: s.answered, frames: s.frames, "
                "stale: s.stale, errors: s.errors, timeouts: s.timeouts}; }"
            )
            for p in pages
        ]
        if all(s["sent"] == s["answered"] for s in stats) or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.5)


async def soak(url: str, pid: int, port: int, args: argparse.Namespace) -> dict:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        contexts = [await browser.new_context() for _ in range(args.tabs)]
        front = await open_tab(contexts[0], url, True)
        await draw_until(front, time.monotonic() + 3, 0, args.input)  # the model is warm before the baseline starts
        await settle([front])
        start = await rows(front)
        await draw_until(front, time.monotonic() + args.baseline_s, 0, args.input)
        await settle([front])
        single_rows = await breakdown_since(front, start)

        by_socket = args.background == "sockets"
        pages = [front] if by_socket else [front, *[await open_tab(c, url, False) for c in contexts[1:]]]
        socket_tabs = args.tabs - 1 if by_socket else 0
        counts = [{"sent": 0, "answered": 0, "wrong_seq": 0, "errors": 0} for _ in range(socket_tabs)]

        def drawing(deadline: float) -> list:
            """Every tab's drawing until `deadline`: the pages, and the socket tabs of --background sockets."""
            tabs = [draw_until(page, deadline, i, args.input) for i, page in enumerate(pages)]
            return tabs + [socket_tab(port, deadline, i + 1, args.model, c) for i, c in enumerate(counts)]

        await asyncio.gather(*drawing(time.monotonic() + args.warmup_s))
        await settle(pages)
        rss_warm = resident_mb(pid)

        churn = {"answered": 0, "wrong_seq": 0, "errors": 0, "failed": 0}
        seconds = args.minutes * 60
        thread = threading.Thread(target=socket_churn, args=(port, args.connections, seconds, churn, args.model))
        start = await rows(front)
        samples = []
        deadline = time.monotonic() + seconds
        thread.start()

        async def sample() -> None:
            while time.monotonic() < deadline:
                samples.append(round(resident_mb(pid), 1))
                await asyncio.sleep(10)

        await asyncio.gather(sample(), *drawing(deadline))
        await asyncio.to_thread(thread.join)
        tabs = await settle(pages)
        soaked_rows = await breakdown_since(front, start)
        await asyncio.sleep(5)
        rss_end = resident_mb(pid)
        await browser.close()

    single, soaked = [r["s2p"] for r in single_rows], [r["s2p"] for r in soaked_rows]
    p95_single, p95_front = percentile(single, 0.95), percentile(soaked, 0.95)
    growth = rss_end - rss_warm
    tabs_ok = all(t["sent"] == t["answered"] and t["timeouts"] == 0 for t in tabs)
    tabs_ok = tabs_ok and all(c["sent"] == c["answered"] and c["wrong_seq"] == 0 for c in counts)
    sockets_ok = churn["answered"] == args.connections
    ratio = p95_front / p95_single if p95_single else float("nan")
    return {
        "bench": "soak",
        "model": args.model or "default",
        "device": "cpu",
        "tabs": args.tabs,
        "input": args.input,
        "minutes": args.minutes,
        "connections": args.connections,
        "rss_after_warmup_mb": round(rss_warm, 1),
        "rss_end_mb": round(rss_end, 1),
        "rss_growth_mb": round(growth, 1),
        "rss_samples_mb": samples,
        "background": args.background,
        "tab_requests": tabs,
        "socket_tab_requests": counts,
        "sockets": churn,
        "s2p_single_p50_ms": round(percentile(single, 0.5), 1),
        "s2p_single_p95_ms": round(p95_single, 1),
        "s2p_foreground_p50_ms": round(percentile(soaked, 0.5), 1),
        "s2p_foreground_p95_ms": round(p95_front, 1),
        "s2p_p95_ratio": round(ratio, 3),
        "stages_single_p50_ms": stage_p50(single_rows),
        "stages_foreground_p50_ms": stage_p50(soaked_rows),
        "stages_single_tail_p50_ms": tail_stage_p50(single_rows),
        "stages_foreground_tail_p50_ms": tail_stage_p50(soaked_rows),
        "frames_single": len(single),
        "frames_foreground": len(soaked),
        "pass_memory": growth <= args.max_growth_mb,
        "pass_answered": tabs_ok and sockets_ok,
        "pass_latency": ratio <= args.max_ratio,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model name (default: the app's default)")
    parser.add_argument("--tabs", type=int, default=5)
    parser.add_argument(
        "--input",
        choices=("page", "cdp"),
        default="page",
        help="how the tabs draw: pointer events fired in the page, or mouse input over the devtools protocol",
    )
    parser.add_argument(
        "--background",
        choices=("pages", "sockets"),
        default="pages",
        help="the background tabs: Chromium pages (the harness's renderers share the CPU with the app), or socket "
        "clients sending the same request stream without a browser (the app's own load alone)",
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--baseline-s", type=float, default=60.0)
    parser.add_argument("--warmup-s", type=float, default=60.0)
    parser.add_argument("--max-growth-mb", type=float, default=150.0)
    parser.add_argument("--max-ratio", type=float, default=1.5)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = parser.parse_args(argv)
    port = free_port()
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        app = start_app(port, Path(tmp), args.model)
        try:
            result = asyncio.run(soak(f"http://127.0.0.1:{port}/", app.pid, port, args))
        finally:
            app.terminate()
            app.wait(timeout=60)
    result["wall_s"] = round(time.time() - t0, 1)
    result["load_average_1_5_15"] = [round(x, 2) for x in os.getloadavg()]  # what else used the CPU meanwhile
    result["cpu"] = f"{os.cpu_count()} cores"
    if args.out:
        args.out.write_text(json.dumps(result) + "\n")
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            if key != "rss_samples_mb":
                print(f"{key}: {value}")
    return 0 if result["pass_memory"] and result["pass_answered"] and result["pass_latency"] else 1


if __name__ == "__main__":
    sys.exit(main())
