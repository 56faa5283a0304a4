"""Sampling a tiny network: Euler steps of the flow teacher (with CFG) or TrigFlow steps of the distilled student,
in batches from seeded noise; tensors to pictures."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from pipelines.parameterization import SIGMA_D, FlowAsTrigFlow
from pipelines.schedules import get_flow_timesteps, get_trigflow_timesteps, sample_euler, sample_trigflow
from pipelines.tiny.weights import TinyNet


@torch.no_grad()
def sample(
    model: TinyNet,
    cond: dict,
    *,
    steps: int,
    noise: Tensor,
    guidance: float | None = None,
    null_text: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Images in [-1, 1] from x_1 = noise. Teachers: Euler on the flow ODE with CFG over the text (guidance > 1);
    students: TrigFlow consistency steps (x_T = sigma_d * noise, TrigFlow works on sigma_d-scaled images)."""
    if model.config.kind == "trigflow":
        trig = FlowAsTrigFlow(model)
        x0 = sample_trigflow(
            lambda x, t: trig(x, t, cond), SIGMA_D * noise, get_trigflow_timesteps(steps), generator=generator
        )
        return (x0 / SIGMA_D).clamp(-1, 1)
    w = model.config.default_guidance if guidance is None else guidance
    if w == 1.0 or null_text is None:
        velocity = lambda x, s: model(x, s, cond)  # noqa: E731
    else:
        uncond = {**cond, "text": null_text.expand_as(cond["text"])}

        def velocity(x: Tensor, s: Tensor) -> Tensor:
            v = model(torch.cat([x, x]), torch.cat([s, s]), {k: torch.cat([cond[k], uncond[k]]) for k in cond})
            v_c, v_u = v.chunk(2)
            return v_u + w * (v_c - v_u)

    return sample_euler(velocity, noise, get_flow_timesteps(steps).to(noise.dtype)).clamp(-1, 1)


@torch.no_grad()
def sample_images(
    model: TinyNet,
    sketches: np.ndarray,
    text: Tensor,
    *,
    steps: int,
    seeds: Sequence[int],
    batch: int = 16,
    progress: str | None = None,
) -> np.ndarray:
    """uint8 pictures (n, h, w, 3) for black-on-white uint8 sketches (n, h, w) and text embeddings (n, d): the noise
    of item i is seeded by seeds[i] (results do not depend on `batch` for Euler teachers), CFG at the model's
    default scale against zeroed text. `progress` names a tqdm bar (None: no bar). Runs on the model's device; the
    initial noise is always drawn on the CPU, so a GPU sees the same x_1 as a CPU."""
    from tqdm import tqdm

    size = model.config.resolution
    device = next(model.parameters()).device
    null_text = torch.zeros(1, text.shape[1], device=device)
    out = np.empty((len(sketches), size, size, 3), np.uint8)
    for start in tqdm(range(0, len(sketches), batch), desc=progress, unit="batch", disable=progress is None):
        stop = min(start + batch, len(sketches))
        ink = torch.from_numpy(1.0 - sketches[start:stop].astype(np.float32) / 255.0)[:, None].to(device)
        if ink.shape[-1] != size:
            ink = F.interpolate(ink, size=(size, size), mode="area")
        noise = torch.stack(
            [
                torch.randn(3, size, size, generator=torch.Generator().manual_seed(int(seed)))
                for seed in seeds[start:stop]
            ]
        ).to(device)
        generator = torch.Generator(device).manual_seed(start)  # multi-step students' re-noising
        images = sample(
            model,
            {"sketch": ink, "text": text[start:stop].to(device)},
            steps=steps,
            noise=noise,
            null_text=null_text,
            generator=generator,
        )
        pixels = ((images.permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        out[start:stop] = pixels.cpu().numpy()
    return out


def to_pil(image: Tensor) -> Image.Image:
    """(3, h, w) in [-1, 1] -> PIL RGB."""
    array = ((image.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)
