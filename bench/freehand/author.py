"""Authoring tool for the free-hand stroke files beside it: shapes -> wobbly, open, hand-like strokes -> JSON.

python bench/freehand/author.py      # rewrites bench/freehand/<name>.json (seeded: the same files every run)

Each drawing below is composed by hand from lines, arcs and smooth curves in 512 x 512 canvas pixels (y down);
none is traced from a picture. `hand` turns a shape into what a mouse or pen gives the canvas: points a few pixels
apart, a slow wobble across the line, jitter, ends that overshoot or stop short, closed shapes that do not quite
close, and one brush width per stroke within the canvas brush's range.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from living import (
    apple,
    banana,
    bird,
    butterfly,
    cactus,
    carrot,
    cat,
    cherry,
    cloud_with_rain,
    dog,
    duck,
    face,
    fish,
    flower,
    leaf,
    moon,
    mountain,
    mushroom,
    owl,
    pear,
    rabbit,
    snail,
    snowman,
    sun_over_hills,
    tree,
    turtle,
)
from pen import Path2, hand
from things import (
    airplane,
    balloon,
    bell,
    boat,
    bottle,
    bus,
    cake,
    candle,
    car,
    castle,
    chair,
    clock,
    cup,
    envelope,
    gift_box,
    hat,
    heart,
    house,
    ice_cream,
    key,
    kite,
    lamp,
    light_bulb,
    pencil,
    rocket,
    star,
    t_shirt,
    teapot,
    tent,
    umbrella,
)

FOLDER = Path(__file__).resolve().parent


SKETCHES: dict[str, tuple[str, Callable[[], list[Path2]]]] = {
    "house": ("house", house),
    "face": ("face", face),
    "cat": ("cat", cat),
    "dog": ("dog", dog),
    "tree": ("tree", tree),
    "car": ("car", car),
    "sun_over_hills": ("sun over hills", sun_over_hills),
    "flower": ("flower", flower),
    "fish": ("fish", fish),
    "bird": ("bird", bird),
    "apple": ("apple", apple),
    "cup": ("cup", cup),
    "boat": ("boat", boat),
    "star": ("star", star),
    "heart": ("heart", heart),
    "umbrella": ("umbrella", umbrella),
    "balloon": ("balloon", balloon),
    "mushroom": ("mushroom", mushroom),
    "butterfly": ("butterfly", butterfly),
    "snowman": ("snowman", snowman),
    "rocket": ("rocket", rocket),
    "kite": ("kite", kite),
    "moon": ("moon", moon),
    "cloud_with_rain": ("cloud with rain", cloud_with_rain),
    "ice_cream": ("ice cream", ice_cream),
    "leaf": ("leaf", leaf),
    "pear": ("pear", pear),
    "cherry": ("cherry", cherry),
    "banana": ("banana", banana),
    "carrot": ("carrot", carrot),
    "bus": ("bus", bus),
    "airplane": ("airplane", airplane),
    "hat": ("hat", hat),
    "t_shirt": ("t-shirt", t_shirt),
    "bottle": ("bottle", bottle),
    "clock": ("clock", clock),
    "light_bulb": ("light bulb", light_bulb),
    "candle": ("candle", candle),
    "cake": ("cake", cake),
    "gift_box": ("gift box", gift_box),
    "bell": ("bell", bell),
    "snail": ("snail", snail),
    "owl": ("owl", owl),
    "cactus": ("cactus", cactus),
    "mountain": ("mountain", mountain),
    "tent": ("tent", tent),
    "castle": ("castle", castle),
    "turtle": ("turtle", turtle),
    "duck": ("duck", duck),
    "rabbit": ("rabbit", rabbit),
    "teapot": ("teapot", teapot),
    "lamp": ("lamp", lamp),
    "envelope": ("envelope", envelope),
    "pencil": ("pencil", pencil),
    "key": ("key", key),
    "chair": ("chair", chair),
}
WIDTHS = (3, 4, 5, 6, 6, 6, 8, 10)  # canvas px: mostly the default brush (6), some thinner and thicker hands


def author(name: str, concept: str, shapes: list[Path2], seed: int) -> dict:
    """One drawing's stroke file: a width per drawing (details one pixel thinner), a hand per stroke."""
    rng = np.random.default_rng(seed)
    width = int(rng.choice(WIDTHS))
    wobble = float(rng.uniform(1.0, 3.0))
    strokes = []
    for shape in shapes:
        size = np.ptp(shape[0], axis=0).max()
        stroke_width = width - 1 if size < 60 and width > 3 else width
        points = hand(shape, rng, wobble)
        strokes.append({"width": stroke_width, "points": np.round(points, 1).tolist()})
    return {"name": name, "concept": concept, "strokes": strokes}


def main() -> None:
    for seed, (name, (concept, draw)) in enumerate(SKETCHES.items()):
        record = author(name, concept, draw(), seed)
        if name == "house":  # the browser test draws this one with the canvas's default brush
            for stroke in record["strokes"]:
                stroke["width"] = 6
        text = json.dumps(record, separators=(",", ":"))
        (FOLDER / f"{name}.json").write_text(text + "\n")
    print(f"wrote {len(SKETCHES)} stroke files to {FOLDER}")


if __name__ == "__main__":
    main()
