"""The sketch's silhouette channel: inside closed outlines is 1, the paper a flood from the border reaches is 0, small
gaps in an outline do not let the flood in, and an open stroke encloses nothing."""

import numpy as np
import torch
from PIL import Image, ImageDraw

from pipelines.tiny.silhouette import silhouette


def ink_of(draw_fn, size: int = 256) -> torch.Tensor:
    """(1, 1, size, size) ink in [0, 1] drawn with PIL (independently of the function under test)."""
    image = Image.new("L", (size, size), 0)
    draw_fn(ImageDraw.Draw(image))
    return torch.from_numpy(np.asarray(image, np.float32) / 255.0)[None, None]


def test_a_closed_outline_is_filled_and_the_paper_around_it_is_not():
    ink = ink_of(lambda d: d.ellipse((48, 48, 208, 208), outline=255, width=6))
    mask = silhouette(ink)[0, 0]
    assert mask.shape == (256, 256) and mask[128, 128] == 1 and mask[8, 8] == 0 and mask[8, 240] == 0


def test_a_small_gap_in_the_outline_keeps_the_inside_but_an_open_stroke_encloses_nothing():
    def with_gap(d):
        d.rectangle((48, 48, 208, 208), outline=255, width=6)
        d.rectangle((124, 40, 131, 60), fill=0)  # an 8 px gap in the top side

    gapped = ink_of(with_gap)
    assert gapped[0, 0, 50, 124:132].max() == 0  # the gap is there
    assert silhouette(gapped)[0, 0, 128, 128] == 1
    open_stroke = ink_of(lambda d: d.line((40, 128, 216, 128), fill=255, width=6))
    mask = silhouette(open_stroke)[0, 0]
    assert mask[80, 128] == 0 and mask[176, 128] == 0 and mask.mean() < 0.1  # the line itself only


def test_blank_paper_has_no_silhouette_and_items_of_a_batch_are_independent():
    blank = torch.zeros(1, 1, 256, 256)
    ring = ink_of(lambda d: d.ellipse((48, 48, 208, 208), outline=255, width=6))
    batch = silhouette(torch.cat([blank, ring]))
    assert batch[0].sum() == 0 and torch.equal(batch[1:], silhouette(ring))
