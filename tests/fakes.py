"""A scripted Engine for tests of scheduling and error handling (model numerics are tested on real components)."""

import time

import numpy as np
import torch
from PIL import Image

from pipelines.engine import ControlCond, GenResult, PromptCond
from pipelines.preprocess import InputError
from pipelines.registry import ModelError

DEV_MANIFEST = (
    'name = "{name}"\ntitle = "scripted"\nbackend = "sd"\nrandom_init = "tiny"\nresolution = 256\n[components]\n'
)


class SketchBoom(Exception):
    """An engine error type only the engine's process knows."""


# prompts that make a ScriptedEngine(errors=PROMPT_ERRORS) raise, one error type each
PROMPT_ERRORS = {
    "raise model error": ModelError("the weights went missing"),
    "raise input error": InputError("that sketch is not usable"),
    "raise oom": torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    "raise value error": ValueError("a bad value"),
    "raise boom": SketchBoom("an unknown failure"),
}


class ScriptedEngine:
    """Echoes the control image; `oom_above` raises CUDA OOM for larger resolutions; `delay` seconds per frame;
    `errors` maps a prompt text to the exception generate raises for it."""

    name = "scripted"
    native_resolution = 256
    resolution_multiple = 64
    resolution_bins: dict = {}
    allowed_steps = (1, 2, 3, 4)
    default_steps = 1
    can_refine = False

    def __init__(self, delay: float = 0.0, oom_above: int | None = None, errors: dict | None = None):
        self.delay = delay
        self.oom_above = oom_above
        self.errors = errors or {}
        self.generated: list[tuple[int, int]] = []

    def warmup(self, resolution: int) -> None:
        pass

    def encode_prompt(self, text: str) -> PromptCond:
        words = text.split()
        return PromptCond(text[:77], {}, truncated=len(words) > 75, n_tokens=min(77, len(words) + 2))

    def encode_control(self, image: np.ndarray, resolution: tuple[int, int]) -> ControlCond:
        return ControlCond("k", resolution, {"image": image})

    def generate(self, prompt, control, *, seed, steps, strength, resolution) -> GenResult:
        if prompt.text in self.errors:
            raise self.errors[prompt.text]
        if self.oom_above is not None and resolution[0] > self.oom_above:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        time.sleep(self.delay)
        self.generated.append(resolution)
        return GenResult(Image.fromarray(control.tensors["image"]), {"total": self.delay * 1e3})


def install(monkeypatch, tmp_path, engine: ScriptedEngine, name: str = "scripted"):
    """A registry folder with one manifest whose load() returns `engine`."""
    from pipelines import registry as registry_module

    (tmp_path / f"{name}.toml").write_text(DEV_MANIFEST.format(name=name))
    monkeypatch.setattr(registry_module.Registry, "load", lambda self, n, device, dtype=None: engine)
    return registry_module.Registry(tmp_path, allowed_roots=(tmp_path,))


# engines a real engine process (pipelines.remote) builds with `loader`: the scripted names, else the registry's
SCRIPTED = {
    "scripted": {"errors": PROMPT_ERRORS},
    "scripted-oom": {"oom_above": 256},
    "scripted-slow": {"delay": 60.0},
}


def loader(registry, name: str, device: str, dtype: str | None = None):
    """A LiveHost `loader` (picklable by reference, so it runs in the engine process too)."""
    if name in SCRIPTED:
        return ScriptedEngine(**SCRIPTED[name])
    return registry.load(name, device, dtype)


def write_manifests(folder, names=tuple(SCRIPTED)) -> None:
    for name in names:
        (folder / f"{name}.toml").write_text(DEV_MANIFEST.format(name=name))


def write_sketch_pairs(root, n: int = 6, size: int = 16):
    """A prepared-pairs folder (SketchPairs' train.npz + captions.npz) of n random items at `size` px."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sketch = np.where(rng.random((n, size, size)) < 0.1, 0, 255).astype(np.uint8)
    image = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    np.savez(root / "train.npz", sketch=sketch, image=image, caption_index=np.arange(n) % 2)
    np.savez(root / "captions.npz", text=np.array(["a", "b"]), embedding=rng.normal(size=(2, 384)).astype(np.float16))
    return root, sketch, image


def write_tiny_student_with_teacher(folder, name: str = "s"):
    """A 32 px tiny-backend student manifest whose 'teacher' component is a flow model (random weights)."""
    from pipelines.tiny import SketchTinyNet, TinyConfig, save_tiny

    config = TinyConfig(resolution=32, patch=2, channels=(16, 32), blocks=1, emb_dim=32)
    torch.manual_seed(0)
    save_tiny(SketchTinyNet(TinyConfig(**{**config.__dict__, "kind": "trigflow"})), folder / "student")
    save_tiny(SketchTinyNet(config), folder / "teacher")
    (folder / f"{name}.toml").write_text(
        f'name = "{name}"\ntitle = "t"\nbackend = "tiny"\nresolution = 32\nsteps = 1\nallowed_steps = [1, 2]\n'
        'dtype = "float32"\n[components]\nweights = "./student"\nteacher = "./teacher"\n'
    )
