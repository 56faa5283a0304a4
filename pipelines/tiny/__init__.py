"""The bundled offline model: a small pixel-space sketch+text -> image network, and its Engine.

Two architectures, told apart by config.json's "arch": "jit" (SketchJiT, 256 px: a small transformer on large
overlapping patches; jit.py) and "unet" (SketchTinyNet, the 128 px U-Net of the first offline model, unet.py; configs
written before "arch" existed are U-Nets). Either is a flow-matching velocity model v(x_s, s, cond) on 3xHxW images in
[-1, 1] (x_s = (1 - s) x0 + s eps). The teacher is sampled with Euler steps on that ODE; the distilled student is the
same network read as a TrigFlow consistency model through pipelines.parameterization.FlowAsTrigFlow and sampled with
`sample_trigflow` (sampling.py). weights.py writes and reads them, engine.py serves them.
cond = {"sketch": (b, 1, h, w) ink in [0, 1], "text": (b, PROMPT_DIM) prompt vector (pipelines/text.py: the MiniLM
embedding, then the prompt's colour words, which configs with colour_words read), optionally "guidance": (b,)}.
"""

from pipelines.tiny.engine import TinyEngine
from pipelines.tiny.flow import X_PRED_MIN_S, timestep_embedding, velocity_from_clean
from pipelines.tiny.jit import JiTConfig, SketchJiT
from pipelines.tiny.sampling import sample, sample_images, to_pil
from pipelines.tiny.unet import SketchTinyNet, TinyConfig
from pipelines.tiny.weights import ARCHS, CONFIG_NAME, WEIGHTS_NAME, TinyNet, build_tiny, load_tiny, save_tiny

__all__ = [
    "ARCHS",
    "X_PRED_MIN_S",
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "JiTConfig",
    "SketchJiT",
    "SketchTinyNet",
    "TinyConfig",
    "TinyEngine",
    "TinyNet",
    "build_tiny",
    "load_tiny",
    "sample",
    "sample_images",
    "save_tiny",
    "timestep_embedding",
    "to_pil",
    "velocity_from_clean",
]
