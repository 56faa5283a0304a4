"""SketchSprint: `python app.py` starts the live sketch-to-image app (build_app for tests and embedding)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from distillation.jobs import JOBS_DIR, JobStore
from pipelines.host import LiveHost
from pipelines.registry import MODELS_DIR, ModelError, Registry
from pipelines.remote import EngineCrashed
from ui import guard, live_socket
from ui.layout import build_blocks
from ui.live import LiveSessions

log = logging.getLogger("sketchsprint")
ROOT = Path(__file__).resolve().parent


@dataclass(frozen=True)
class AppConfig:
    """Everything build_app needs; main() fills it from flags."""

    device: str = "cpu"
    dtype: str | None = None
    model: str | None = None
    outputs: Path = ROOT / "outputs"
    models_dir: Path = MODELS_DIR
    jobs: Path = JOBS_DIR  # distillation job folders (the Distill tab)
    preload: bool = True
    engine_process: bool = True  # engines in a child process (pipelines.remote): the web server keeps its GIL


def pick_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        log.warning("no CUDA device: running on the CPU")
        return "cpu"
    return requested


def set_threads(threads: int) -> None:
    """Leave one core to the browser and the web server when the model runs on the CPU."""
    import torch

    torch.set_num_threads(threads if threads > 0 else max(1, (os.cpu_count() or 2) - 1))


def build_app(config: AppConfig) -> tuple[gr.Blocks, LiveSessions]:
    """The app and its live-session service (so tests and benchmarks can reach both)."""
    registry = Registry(config.models_dir)
    cuda = config.device.startswith("cuda")
    model = config.model
    if model is not None and model not in registry.specs():
        log.warning("unknown model %r; known: %s. Using the default.", model, ", ".join(sorted(registry.specs())))
        model = None
    model = model or registry.default_name(cuda)
    host = LiveHost(registry, config.device, config.dtype, engine_process=config.engine_process)
    if config.preload:
        try:
            host.engine(model)
        except (ModelError, EngineCrashed) as error:
            log.warning("could not preload %s: %s", model, error)
    sessions = LiveSessions(host, model, config.outputs)
    return build_blocks(sessions, registry, model, JobStore(config.jobs, registry)), sessions


def launch_kwargs(
    sessions: LiveSessions,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    token: str | None = None,
    share: bool = False,
) -> dict:
    """`demo.launch()` keywords every SketchSprint server needs: the live canvas's socket route on the same port, and
    the Host/token guard on every route (ui/guard.py): loopback Host names only on a loopback bind (and the share
    tunnel's domain with --share), the token else."""
    hosts = (*guard.LOOPBACK_NAMES, *((guard.SHARE_DOMAIN,) if share else ())) if guard.is_loopback(host) else None
    middleware = [Middleware(guard.HostGuard, hosts=hosts, port=port, token=token)]
    return {"app_kwargs": {"routes": [live_socket.route(sessions)], "middleware": middleware}, "ssr_mode": False}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--model", default=None, help="model name from the Models tab (default: best usable)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default=None, choices=[None, "float32", "float16", "bfloat16"])
    parser.add_argument("--outputs", type=Path, default=ROOT / "outputs", help="history and exports folder")
    parser.add_argument("--share", action="store_true", help="make a public Gradio link (off by default)")
    parser.add_argument(
        "--token", default=None, help="access token when --host is not loopback (default: a new random one per start)"
    )
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: cores - 1)")
    parser.add_argument(
        "--engine-process",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the models in a child process, so the web server never waits for them (default: on)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    set_threads(args.threads)
    config = AppConfig(
        device=pick_device(args.device),
        dtype=args.dtype,
        model=args.model,
        outputs=args.outputs,
        engine_process=args.engine_process,
    )
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` closes the server and the engine process like Ctrl+C does
    try:
        demo, sessions = build_app(config)
    except ModelError as error:
        print(f"SketchSprint cannot start: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # stopped while loading (the engine process is stopped at exit)
        return 130
    where = "an engine process" if config.engine_process else "this process"
    log.info("model %s on %s, in %s", sessions.default_model, config.device, where)
    token = None if guard.is_loopback(args.host) else (args.token or guard.new_token())
    if token is not None:
        print(
            f"SketchSprint is reachable from other machines on {args.host}:{args.port}. Open it with this link (the "
            f"token keeps other people and web pages out):\n    http://<this machine>:{args.port}/?token={token}",
            flush=True,
        )
    try:
        demo.launch(
            server_name=args.host,
            server_port=args.port,
            share=args.share,
            allowed_paths=[str(config.outputs)],
            **launch_kwargs(sessions, host=args.host, port=args.port, token=token, share=args.share),
        )
    except KeyboardInterrupt:  # stopped before launch() reached its own Ctrl+C handling
        demo.close()
    finally:
        sessions.host.close()
        sessions.close()
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
