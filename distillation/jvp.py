"""Tangents of a network along (x, t) for sCM: forward-mode AD with math attention, or central finite differences."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel


@contextmanager
def math_attention() -> Iterator[None]:
    """Route SDPA to its math kernel: flash / memory-efficient kernels (CPU flash included) lack forward AD."""
    with sdpa_kernel([SDPBackend.MATH]):
        yield


def jvp(
    fn: Callable[..., Tensor],
    primals: tuple[Tensor, ...],
    tangents: tuple[Tensor, ...],
    *,
    mode: Literal["forward", "fd"] = "forward",
    fd_step: float = 1e-3,
) -> tuple[Tensor, Tensor]:
    """(fn(*primals), d/dh fn(primals + h tangents) at h = 0).

    "forward" is one torch.func.jvp pass (as Sana's sCM training); "fd" is the central difference with step `fd_step`
    (O(h^2) error), for kernels without forward AD. Run it under no_grad: the tangent is a stop-gradient target,
    and diffusers only checkpoints activations while grad is enabled, so the pass is never checkpointed.
    """
    if mode == "forward":
        with math_attention():
            return torch.func.jvp(fn, primals, tangents)
    if mode == "fd":
        plus = fn(*(p + fd_step * v for p, v in zip(primals, tangents, strict=True)))
        minus = fn(*(p - fd_step * v for p, v in zip(primals, tangents, strict=True)))
        return fn(*primals), (plus - minus) / (2 * fd_step)
    raise ValueError(f"unknown JVP mode {mode!r}; use 'forward' or 'fd'")
