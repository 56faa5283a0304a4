"""Per-role optimisers: one AdamW per trainable role of a method (holding the roles that step with it), and the
learning-rate schedule (linear warm-up, then constant or a half cosine to 0)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from distillation.config import ConfigError, JobConfig


def lr_factor(step: int, *, warmup: int, total: int, schedule: str) -> float:
    """Learning-rate multiplier at `step`: linear warm-up over `warmup` steps, then 1 ("constant") or a half cosine
    from 1 to 0 at `total` ("cosine")."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "cosine" and total > warmup:
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / (total - warmup))))
    return 1.0


def build_optimizers(
    specs: Mapping[str, Any], roles: Mapping[str, Any], cfg: JobConfig
) -> tuple[dict[str, torch.optim.Optimizer], dict[str, list[nn.Parameter]]]:
    """(optimizers, their parameters) by role: an AdamW for every trainable role with its own update-plan entry
    (specs: the method's RoleSpecs), holding the parameters of the roles that step with it; optim.role_lr sets a
    role's peak learning rate."""
    oc = cfg.optim
    unknown = set(oc.role_lr) - set(specs)
    if unknown:
        raise ConfigError(f"optim.role_lr: no role {sorted(unknown)[0]!r} in {cfg.method.name}")
    optimizers: dict[str, torch.optim.Optimizer] = {}
    opt_params: dict[str, list[nn.Parameter]] = {}
    for name, spec in specs.items():
        if spec.trainable and spec.steps_with is None:
            members = [name] + [n for n, s in specs.items() if s.steps_with == name]
            params = [p for member in members for p in roles[member].params.values()]
            lr = oc.role_lr.get(name, oc.lr)
            opt_params[name] = params
            optimizers[name] = torch.optim.AdamW(
                params, lr=lr, betas=oc.betas, eps=oc.eps, weight_decay=oc.weight_decay
            )
            for group in optimizers[name].param_groups:
                group["base_lr"] = lr
    return optimizers, opt_params


def set_learning_rate(optimizer: torch.optim.Optimizer, step: int, cfg: JobConfig) -> None:
    """Each group's learning rate at `step`: its peak (base_lr) times the schedule's factor."""
    oc = cfg.optim
    factor = lr_factor(step, warmup=oc.warmup_steps, total=cfg.max_steps, schedule=oc.schedule)
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
