"""GPU memory needs of the Sana backend, and its aspect-ratio resolution bins (pipelines.resolution snaps to them)."""

from __future__ import annotations

from typing import Any

from diffusers.pipelines.pixart_alpha.pipeline_pixart_alpha import ASPECT_RATIO_512_BIN, ASPECT_RATIO_1024_BIN

from pipelines.sana.config import GEMMA_GIB, MEASURED_FRAME_PEAK_GIB, TEACHER_GIB
from pipelines.spec import ModelError


def model_size(config: Any) -> str:
    """ "0.6b" / "1.6b" for the published transformer widths, "tiny" for anything else."""
    width = config["num_attention_heads"] * config["attention_head_dim"]
    return {1152: "0.6b", 2240: "1.6b"}.get(width, "tiny")


def gpu_memory_need_gib(size: str, resolution: int = 1024, *, teacher: bool = False) -> float:
    """GPU memory a live session needs: the measured frame peak at the nearest measured resolution at or above
    `resolution` (weights included), plus Gemma-2 while a new prompt is encoded, plus the teacher's weights when the
    refine pass is on. Zero for tiny models."""
    if size not in MEASURED_FRAME_PEAK_GIB:
        return 0.0
    peaks = MEASURED_FRAME_PEAK_GIB[size]
    at = min((r for r in peaks if r >= resolution), default=max(peaks))
    return peaks[at] + GEMMA_GIB + (TEACHER_GIB[size] if teacher else 0.0)


def check_gpu_memory(title: str, need_gib: float, free_bytes: int) -> None:
    """Refuse before loading when the device's free memory is below the measured need (ModelError for the UI)."""
    free_gib = free_bytes / 2**30
    if need_gib > free_gib:
        raise ModelError(
            f"{title} needs about {need_gib:.1f} GiB of GPU memory (measured peak of a frame plus Gemma-2 while a "
            f"prompt is encoded) and this GPU has {free_gib:.1f} GiB free; pick a smaller model or free the GPU"
        )


def resolution_bins(native: int, factor: int) -> dict[int, list[tuple[int, int]]]:
    """SANA's aspect-ratio bins at two scales, native and native / 2 (ASPECT_RATIO_1024_BIN, _512_BIN), scaled to
    the model's native size and rounded to the latent grid."""
    out = {}
    for scale, bins in ((native, ASPECT_RATIO_1024_BIN), (native // 2, ASPECT_RATIO_512_BIN)):
        k = native / 1024
        out[scale] = [
            (max(factor, round(h * k / factor) * factor), max(factor, round(w * k / factor) * factor))
            for h, w in bins.values()
        ]
    return out
