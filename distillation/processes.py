"""Many processes, one job: sums and minima over processes, a role's gradients averaged by one all-reduce, logged
values averaged; each a no-op in a single process (the roles' several passes per update do not fit DDP's hooks)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def all_reduce_(tensor: Tensor, world: int, op: str = "sum") -> Tensor:
    """`tensor` summed ("sum") or minimised ("min") over the `world` processes, in place; returned."""
    if world > 1:
        ops = {"sum": torch.distributed.ReduceOp.SUM, "min": torch.distributed.ReduceOp.MIN}
        torch.distributed.all_reduce(tensor, op=ops[op])
    return tensor


def average_gradients(params: Sequence[nn.Parameter], world: int) -> None:
    """Mean gradient over processes (missing gradients count as zero)."""
    if world == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = all_reduce_(torch.cat([g.reshape(-1) for g in grads]), world) / world
    offset = 0
    for p in params:
        p.grad = flat[offset : offset + p.numel()].view_as(p).clone()
        offset += p.numel()


def mean_over_processes(logs: dict[str, float], world: int, device: torch.device) -> dict[str, float]:
    """Mean of each logged value over processes (every process logs the same keys)."""
    if world == 1 or not logs:
        return logs
    keys = sorted(logs)
    values = all_reduce_(torch.tensor([logs[k] for k in keys], dtype=torch.float64, device=device), world)
    return {k: v / world for k, v in zip(keys, values.tolist(), strict=True)}
