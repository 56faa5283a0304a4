"""The sketch's silhouette: what lies inside its outlines, as a second input channel beside the ink.

A small network has to tell inside from outside of a drawing to fill it (an apple red, the paper around it white),
and inside/outside is a flood fill, which a few convolutions cannot compute: the first 256 px teacher spilled colour
across its outlines. The fill is computed here, in torch, from the ink alone: paper is what a flood from the canvas
border reaches without crossing ink, on a grid of GRID x GRID cells (4 px each at 256 px) with the ink dilated by
`close` cells, so gaps of a few pixels in free-hand outlines do not let the flood in. Everything else is the
silhouette (1).

# b batch, h w height width (multiples of scale)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

GRID = 64  # cells per side of the flood's grid (at most: a smaller picture floods at its own pixels)


def silhouette(ink: Tensor, *, scale: int | None = None, close: int = 1, threshold: float = 0.5) -> Tensor:
    """Ink (b, 1, h, w) in [0, 1] -> (b, 1, h, w) float: 0 where a flood from the border reaches through the paper,
    1 inside closed outlines and on the ink. `scale`: pixels per flood cell (default: h // GRID, at least 1). No
    gradient (a hard mask)."""
    scale = scale or max(1, ink.shape[-2] // GRID)
    with torch.no_grad():
        wall = F.max_pool2d(ink.float(), scale)
        if close:
            wall = F.max_pool2d(wall, 2 * close + 1, stride=1, padding=close)
        open_ = (wall <= threshold).float()
        reach = torch.zeros_like(open_)
        reach[..., 0, :] = reach[..., -1, :] = 1
        reach[..., :, 0] = reach[..., :, -1] = 1
        reach = reach * open_
        for _ in range(open_.shape[-1] * open_.shape[-2]):  # a path can wind through every cell; stops when still
            grown = F.max_pool2d(reach, 3, stride=1, padding=1) * open_
            if torch.equal(grown, reach):
                break
            reach = grown
        return F.interpolate(1.0 - reach, size=ink.shape[-2:], mode="nearest").to(ink.dtype)
