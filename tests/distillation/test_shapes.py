"""The coloured-shapes probe data, and SketchJiT learning colour from the caption and shape from the sketch on it."""

import numpy as np
import pytest
import torch

from distillation.data import SketchPairs
from pipelines.tiny import JiTConfig, SketchJiT
from tests.distillation.shapes import COLOURS, captions, mean_fill, nearest_colour, score, write_shapes


def one_hot_words(texts):
    """A stand-in text encoder: one axis per caption (no MiniLM needed)."""
    return np.eye(len(texts), 384, dtype=np.float32)


def test_shapes_are_prepared_pairs_whose_fill_is_the_captioned_colour(tmp_path):
    root = write_shapes(tmp_path / "shapes", train=12, heldout=8, size=32, seed=0, embed=one_hot_words)
    pairs = SketchPairs(root)
    item = pairs[0]
    assert item["sketch"].shape == (1, 32, 32) and item["image"].shape == (3, 32, 32)
    assert item["caption"] in captions() and set(np.unique(pairs.sketches)) == {0, 255}
    with np.load(root / "heldout.npz") as arrays:
        images, masks, index = arrays["image"], arrays["mask"], arrays["caption_index"]
    words = [captions()[i].split()[1] for i in index]
    assert nearest_colour(mean_fill(images, masks)) == words
    assert all(0.02 < m.mean() < 0.6 for m in masks)


@pytest.mark.slow
def test_a_small_jit_learns_colour_from_the_caption_and_shape_from_the_sketch(tmp_path):
    """300 flow-matching steps of a 32 px SketchJiT on shapes with MiniLM captions: held-out sketches captioned with
    each of 4 colours come out in that colour (chance 0.25) and filled where the sketch is (under a minute)."""
    root = write_shapes(tmp_path / "shapes", train=400, heldout=16, size=32, seed=0)
    pairs = SketchPairs(root)
    sketch, image = torch.from_numpy(1 - pairs.sketches / 255.0).float()[:, None], torch.from_numpy(pairs.images)
    x0 = image.permute(0, 3, 1, 2).float() / 127.5 - 1
    text = pairs.embeddings[torch.from_numpy(pairs.caption_index)]
    torch.manual_seed(0)
    config = JiTConfig(resolution=32, patch=8, overlap=2, width=64, depth=2, heads=2, bottleneck=32, refine_channels=8)
    model = SketchJiT(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):  # rectified flow, x_s = (1 - s) x0 + s eps, v = eps - x0, 10% of captions dropped (CFG)
        i = torch.randint(0, len(pairs), (32,), generator=g)
        cond = {"sketch": sketch[i], "text": text[i] * (torch.rand(32, 1, generator=g) > 0.1)}
        s = torch.sigmoid(0.8 + 0.8 * torch.randn(32, generator=g)).clamp(0.02, 0.98)[:, None, None, None]
        eps = torch.randn(x0[i].shape, generator=g)
        loss = (model((1 - s) * x0[i] + s * eps, s.flatten(), cond) - (eps - x0[i])).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    result = score(model.eval(), root, n=16, steps=8)
    assert result["colour_hit_rate"] >= 0.7 and result["chance"] == 1 / len(COLOURS), result
    assert result["shape_iou"] >= 0.3, result
