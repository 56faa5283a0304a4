"""Reference scores of a prepared dataset (real-vs-real FD floor, own vs shuffled sketch edge F1) to read generator
scores against; the metrics themselves live in distillation/metrics.py."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from distillation.metrics import fd_effnet_lite0, sketch_fidelity


def reference_scores(data: Path, *, n: int = 200, seed: int = 0, method: str = "hed") -> dict[str, object]:
    """Floors and ceilings to read generator scores against, from a prepared sketch_tiny folder: FD/KID between
    held-out and train images (real vs real), edge F1 of held-out images with their own and with shuffled sketches."""
    rng = np.random.default_rng(seed)
    with np.load(data / "heldout.npz") as heldout, np.load(data / "train.npz") as train:
        pick = rng.choice(len(heldout["image"]), size=min(n, len(heldout["image"])), replace=False)
        images, sketches = heldout["image"][pick], heldout["sketch"][pick]
        train_images = train["image"][rng.choice(len(train["image"]), size=len(pick), replace=False)]
    own = sketch_fidelity(images, sketches, method=method)
    shuffled = sketch_fidelity(images, sketches[rng.permutation(len(pick))], method=method)
    real = fd_effnet_lite0(images, train_images)
    return {
        "data": str(data),
        "n": len(pick),
        "fd_effnet_lite0_heldout_vs_train": real["fd_effnet_lite0"],
        "kid_effnet_lite0_heldout_vs_train": real["kid_effnet_lite0"],
        "edge_f1_own_sketch": own["edge_f1"],
        "edge_f1_shuffled_sketch": shuffled["edge_f1"],
        "radius_px": own["radius_px"],
        "edge_method": method,
        "label": real["label"],
    }


def main(argv: list[str] | None = None) -> None:
    """CLI: reference scores of a prepared dataset, as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m bench.metrics", description=reference_scores.__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/sketch_tiny/128"))
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--edges", default="hed", choices=["hed", "canny"])
    args = parser.parse_args(argv)
    print(json.dumps(reference_scores(args.data, n=args.n, seed=args.seed, method=args.edges)))


if __name__ == "__main__":
    main()
