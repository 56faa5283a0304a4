"""Inference speed-ups shared by the backends: dtype names, attention kernel choice, channels_last, torch.compile."""

from __future__ import annotations

import importlib.util

import torch
from torch import nn

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
    decoder.decode = torch.compile(decoder.decode, dynamic=False)


def synchronize(device: str) -> None:
    """Wait for queued kernels so wall-clock stage timings are honest on CUDA."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)
