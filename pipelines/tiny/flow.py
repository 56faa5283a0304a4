"""What both tiny networks share about flow time: the sinusoidal time embedding and x-prediction read as a
velocity."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def timestep_embedding(s: Tensor, dim: int, scale: float = 1000.0) -> Tensor:
    """Sinusoidal features of the flow time s (b,); a negative s (TwinFlow's twin branch) gives other features."""
    half = dim // 2
    dtype = torch.promote_types(s.dtype, torch.float32)  # float64 stays float64 (finite-difference checks)
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=s.device, dtype=dtype) / half)
    angles = scale * s.to(dtype)[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


X_PRED_MIN_S = 0.05  # v = (x_s - x0_hat) / max(|s|, this): bounded near the data end (JiT clips the same way)


def velocity_from_clean(x_s: Tensor, x0_hat: Tensor, s: Tensor) -> Tensor:
    """Flow velocity eps - x0 implied by a clean-image prediction: x_s = (1 - s) x0 + s eps => v = (x_s - x0) / s.
    |s| because TwinFlow's twin branch passes -s (the sign is for the time embedding only)."""
    return (x_s - x0_hat) / s.abs().clamp_min(X_PRED_MIN_S).to(x_s.dtype)[:, None, None, None]
