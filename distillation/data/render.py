"""Pictures to pixels: SVG files or SVG text and raster files -> RGBA, cropped to the drawing, framed on a square.

Conventions: an RGB picture is (h, w, 3) uint8 flattened on white paper; its alpha (h, w) uint8 says which pixels
belong to the drawing (255) and which are paper (0), which colour naming and shape tracing need.
"""

from __future__ import annotations

import contextlib
import functools
import io
import signal
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image

from distillation.data.errors import DataError

MARGIN = 0.06  # white border around the cropped drawing, as a fraction of its longer side


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in the block after `seconds` (main thread on POSIX; elsewhere no limit)."""
    if seconds <= 0 or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@functools.cache
def svg_renderer() -> ModuleType:
    """cairosvg, which needs the system cairo library: a clear error here rather than every SVG skipped as corrupt."""
    try:
        import cairosvg
    except (ImportError, OSError) as error:
        raise DataError(f"cannot render SVG ({error}); pip install cairosvg, apt-get install libcairo2") from error
    return cairosvg


def load_rgba(image: Path | str, width: int) -> Image.Image:
    """An SVG file or SVG text rendered `width` pixels wide, or a raster file, as RGBA (SVGs of undefined size fill a
    square)."""
    size = {"output_width": width, "parent_width": width, "parent_height": width}
    if isinstance(image, str):
        png: bytes | None = svg_renderer().svg2png(bytestring=image.encode(), **size)
    elif image.suffix.lower() == ".svg":
        png = svg_renderer().svg2png(url=str(image), **size)
    else:
        png = None
    with Image.open(io.BytesIO(png) if png is not None else image) as opened:
        return opened.convert("RGBA")


def frame(layers: Sequence[Image.Image], size: int, *, margin: float = MARGIN) -> list[tuple[np.ndarray, np.ndarray]]:
    """Crop same-sized RGBA layers to their joint content, pad to a square with a margin, resize to `size`.

    Returns (rgb (size, size, 3) flattened on white, alpha (size, size)) per layer; an empty drawing comes back white.
    """
    boxes = [box for layer in layers if (box := layer.getchannel("A").getbbox())]
    if boxes:
        box = (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))
        layers = [layer.crop(box) for layer in layers]
    side = max(layers[0].size)
    padded = side + 2 * round(side * margin)
    framed = []
    for layer in layers:
        canvas = Image.new("RGBA", (padded, padded), (255, 255, 255, 0))
        canvas.paste(layer, ((padded - layer.width) // 2, (padded - layer.height) // 2))
        paper = Image.new("RGBA", canvas.size, (255, 255, 255, 255))
        rgb = Image.alpha_composite(paper, canvas).convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
        alpha = canvas.getchannel("A").resize((size, size), Image.Resampling.LANCZOS)
        framed.append((np.asarray(rgb), np.asarray(alpha)))
    return framed
