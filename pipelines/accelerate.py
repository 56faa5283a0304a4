"""Inference speed-ups shared by the backends: dtype names, attention kernel choice, channels_last, torch.compile per
static shape, CUDA graphs over static buffers, and stage timing without host syncs."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype for a manifest / command-line name (float32, float16, bfloat16 or fp32/fp16/bf16)."""
    try:
        return DTYPES[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use one of {sorted(DTYPES)}") from None


def set_attention(modules: list[nn.Module], device: str) -> str:
    """xformers memory-efficient attention on CUDA when it is installed, else PyTorch SDPA (diffusers' default).
    Returns the kernel's name."""
    if str(device).startswith("cuda") and importlib.util.find_spec("xformers") is not None:
        for module in modules:
            module.enable_xformers_memory_efficient_attention()
        return "xformers"
    return "sdpa"


def channels_last(modules: list[nn.Module]) -> None:
    """NHWC memory format: faster convolutions with cuDNN / oneDNN at half precision."""
    for module in modules:
        module.to(memory_format=torch.channels_last)


def compile_module(module: nn.Module) -> nn.Module:
    """torch.compile for one static shape (dynamic=False): recompiles when the resolution changes."""
    return torch.compile(module, dynamic=False)


def compile_decode(decoder: nn.Module) -> None:
    """Compile a VAE's `decode` method in place (the pipelines call `decode`, not `forward`)."""
    compile_method(decoder, "decode")


def compile_method(module: nn.Module, name: str) -> None:
    """Compile one method of a module in place for static shapes (e.g. an autoencoder's `encode` and `decode`)."""
    setattr(module, name, torch.compile(getattr(module, name), dynamic=False))


def synchronize(device: str) -> None:
    """Wait for queued kernels so wall-clock stage timings are honest on CUDA."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


class CudaGraph:
    """One CUDA graph of `fn` over static input buffers, for one shape: call(*inputs) copies each input into its
    buffer (skipped when the caller passes the very tensor it passed last time, e.g. a cached prompt embedding) and
    replays. The returned tensors are the graph's own output buffers, overwritten by the next replay.

    Capture follows the PyTorch recipe: warm-up runs on a side stream (they also trigger torch.compile), then one
    capture; graphs that share `pool` share activation memory, which is safe because they replay on one stream."""

    def __init__(self, fn: Callable[..., Tensor], inputs: Sequence[Tensor], *, warmup: int = 2, pool=None):
        self.inputs = [t.clone() for t in inputs]
        self._sources: list[Tensor | None] = [None] * len(inputs)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                fn(*self.inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool):
            self.output = fn(*self.inputs)

    def __call__(self, *inputs: Tensor) -> Tensor:
        for i, (buffer, tensor) in enumerate(zip(self.inputs, inputs, strict=True)):
            if tensor is not self._sources[i]:
                buffer.copy_(tensor, non_blocking=True)
                self._sources[i] = tensor  # holding it keeps its memory from being reused under a new value
        self.graph.replay()
        return self.output


class StageClock:
    """Wall time per stage without a host sync per stage: CUDA events on CUDA (read once, after the frame's final
    sync), perf_counter elsewhere. mark(name) closes the stage that started at the previous mark."""

    def __init__(self, device: str):
        self.cuda = str(device).startswith("cuda")
        self._marks: list[tuple[str, object]] = [("", self._now())]

    def _now(self) -> object:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def mark(self, name: str) -> None:
        self._marks.append((name, self._now()))

    def ms(self) -> dict[str, float]:
        """Milliseconds per stage; on CUDA this waits for the last marked event."""
        out = {}
        for (_, start), (name, end) in zip(self._marks[:-1], self._marks[1:], strict=True):
            if self.cuda:
                end.synchronize()
                out[name] = float(start.elapsed_time(end))
            else:
                out[name] = (end - start) * 1e3
        return out
