"""The resolution policy, in one function: what size a frame is drawn at for a requested size and a model.

Every engine describes its sizes with two attributes of the Engine protocol: `resolution_multiple` (the latent grid
in pixels) and `resolution_bins` (the (h, w) sizes the model works at, grouped by scale, or empty when any multiple
of the grid will do: SANA's aspect-ratio bins are the one binned family). The host asks `snap` once per frame and
reports one notice; the engines call the same function on the sizes they are handed directly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

MIN_RESOLUTION = 128  # below this a frame is too small to judge a sketch by
Bins = Mapping[int, Sequence[tuple[int, int]]]  # scale (the square side) -> the (h, w) bins at that scale


def snap(h: int, w: int, *, native: int, multiple: int = 64, bins: Bins | None = None) -> tuple[int, int]:
    """The (h, w) a model draws a requested (h, w) at.

    A binned model takes the bin closest to it: the scale nearest in log area, then the nearest aspect ratio
    (diffusers' classify_height_width_bin); its bins are its limits. Any other model clamps each side to
    [MIN_RESOLUTION, 2 x native] and rounds it to the latent grid."""
    h, w = max(1, int(h)), max(1, int(w))
    if not bins:
        return tuple(
            max(multiple, round(max(MIN_RESOLUTION, min(x, 2 * native)) / multiple) * multiple) for x in (h, w)
        )
    scale = min(bins, key=lambda s: abs(math.log(h * w / s**2)))
    return min(bins[scale], key=lambda hw: abs(hw[0] / hw[1] - h / w))


def notice(requested: tuple[int, int], used: tuple[int, int]) -> str:
    """The one line a person reads when the frame's size is not the one asked for ("" when it is)."""
    if tuple(requested) == tuple(used):
        return ""
    (rh, rw), (uh, uw) = requested, used
    asked = str(rh) if rh == rw else f"{rh}x{rw}"
    return f"resolution {asked} -> " + (str(uh) if rh == rw and uh == uw else f"{uh}x{uw}")
