"""Roles of a distillation job: the modules a method names (trainable or frozen, from the teacher or new, LoRA
adapters), built once for the trainer and read by export (AdapterView)."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from distillation.checkpoint import CheckpointError
from distillation.config import ConfigError
from distillation.methods import Method


def trainable_copy(module: nn.Module) -> nn.Module:
    """A float32 trainable copy of a frozen teacher network (init="teacher" roles with full weights)."""
    return copy.deepcopy(module).float().train().requires_grad_(True)


class AdapterView(nn.Module):
    """One LoRA adapter of a shared frozen base, or none (the teacher), switched on for each call.

    The switch sets peft's active-adapter flags directly: peft's `set_adapter` / `enable_adapters` also flip
    requires_grad, which would freeze one role's adapter while another role runs inside the same loss (DMD2 calls
    the fake score inside the student's loss)."""

    def __init__(self, base: nn.Module, adapter: str | None):
        from peft.tuners.tuners_utils import BaseTunerLayer

        super().__init__()
        self.base = base
        self.adapter = adapter
        self.tuner_layers = [m for m in base.modules() if isinstance(m, BaseTunerLayer)]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        for layer in self.tuner_layers:
            layer._disable_adapters = self.adapter is None
            if self.adapter is not None:
                layer._active_adapter = [self.adapter]
        return self.base(*args, **kwargs)


@dataclass
class Role:
    """A built role: the module the method calls, the parameters its optimizer updates and, for a frozen role that
    tracks another as an EMA (RoleSpec.ema_of, LCM's target network), its own averaged parameters with the
    tracked ones (`averaged[name]` follows `source[name]`). Names are those of `state`."""

    module: nn.Module
    params: dict[str, nn.Parameter]
    lora: bool = False
    averaged: dict[str, nn.Parameter] = field(default_factory=dict)
    source: dict[str, nn.Parameter] = field(default_factory=dict)
    ema_decay: float = 0.0

    def state(self) -> dict[str, Tensor]:
        """Tensors a checkpoint holds: the adapter (LoRA), the whole module (trained or averaged), nothing (frozen)."""
        own = self.params or self.averaged
        if self.lora:
            return {name: p.detach() for name, p in own.items()}
        return self.module.state_dict() if own else {}

    def load(self, tensors: Mapping[str, Tensor]) -> None:
        """Inverse of `state`."""
        own = self.params or self.averaged
        if self.lora:
            missing = set(own) ^ set(tensors)
            if missing:
                raise CheckpointError(f"LoRA tensors do not match the checkpoint: {sorted(missing)[:3]}")
            with torch.no_grad():
                for name, p in own.items():
                    p.copy_(tensors[name])
        elif own:
            self.module.load_state_dict(tensors)

    @torch.no_grad()
    def update_average(self) -> None:
        """averaged <- decay averaged + (1 - decay) source."""
        for name, p in self.averaged.items():
            p.lerp_(self.source[name].detach().to(p.dtype), 1 - self.ema_decay)


def _adapter_params(base: nn.Module, adapter: str) -> dict[str, nn.Parameter]:
    return {n: p for n, p in base.named_parameters() if f".{adapter}." in n and "lora_" in n}


def build_roles(
    method: Method,
    teacher: nn.Module,
    *,
    lora_rank: int,
    lora_alpha: float,
    lora_targets: Sequence[str],
    device: torch.device,
) -> dict[str, Role]:
    """Every role of `method`: frozen init="teacher" roles share the teacher; trainable ones copy it (float32) or,
    with lora_rank > 0, are LoRA adapters on the teacher's base (the teacher then runs with adapters disabled);
    init="new" roles are built by the method; a frozen role with `ema_of` starts as a copy of the role it tracks
    (its own LoRA adapter when that role is one). Frozen parameters get requires_grad False."""
    specs = method.roles()
    # RoleSpec.ema_of is being added to the Method contract (methods/base.py); a spec without it tracks nothing
    ema_of = {n: getattr(s, "ema_of", None) for n, s in specs.items()}
    teacher_module: nn.Module = teacher
    adapters: dict[str, str] = {}
    if lora_rank > 0:
        from peft import LoraConfig, inject_adapter_in_model

        adapted = {n for n, s in specs.items() if s.trainable and s.init == "teacher"}
        adapted |= {n for n, tracked in ema_of.items() if tracked in adapted}
        adapters = {n: specs[n].adapter or n for n in specs if n in adapted}
        for adapter in adapters.values():
            config = LoraConfig(r=lora_rank, lora_alpha=lora_alpha or lora_rank, target_modules=list(lora_targets))
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                try:
                    inject_adapter_in_model(config, teacher, adapter_name=adapter)
                except ValueError as error:
                    raise ConfigError(f"student.lora_targets {list(lora_targets)}: {error}") from error
        teacher.requires_grad_(False)
        teacher_module = AdapterView(teacher, None)
    roles = {}
    for name, spec in specs.items():
        if ema_of[name]:
            continue
        if spec.init == "new":
            module = spec.build().to(device).train().requires_grad_(spec.trainable)
            roles[name] = Role(module, dict(module.named_parameters()) if spec.trainable else {})
        elif not spec.trainable:
            roles[name] = Role(teacher_module, {})
        elif name in adapters:
            params = _adapter_params(teacher, adapters[name])
            for p in params.values():
                p.requires_grad_(True)
            roles[name] = Role(AdapterView(teacher, adapters[name]), params, lora=True)
        else:
            module = trainable_copy(teacher)
            roles[name] = Role(module, dict(module.named_parameters()))
    for name, tracked_name in ema_of.items():
        if not tracked_name:
            continue
        tracked = roles[tracked_name]
        if name in adapters:
            averaged = _adapter_params(teacher, adapters[name])
            rename = (f".{adapters[name]}.", f".{adapters[tracked_name]}.")
            source = {n: tracked.params[n.replace(*rename)] for n in averaged}
            module: nn.Module = AdapterView(teacher, adapters[name])
        else:
            module = copy.deepcopy(tracked.module).requires_grad_(False)
            averaged, source = dict(module.named_parameters()), dict(tracked.module.named_parameters())
        with torch.no_grad():
            for n, p in averaged.items():
                p.copy_(source[n])
        roles[name] = Role(module, {}, name in adapters, averaged, source, specs[name].ema_decay)
    return roles


def enable_gradient_checkpointing(module: nn.Module) -> int:
    """Turn on diffusers gradient checkpointing in every model under `module` that has it; returns how many."""
    count = 0
    for sub in module.modules():
        if getattr(sub, "_supports_gradient_checkpointing", False) and hasattr(sub, "enable_gradient_checkpointing"):
            sub.enable_gradient_checkpointing()
            count += 1
    return count
