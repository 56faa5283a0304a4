"""Shared test set-up: the repository root on sys.path, single-threaded torch (2-core CI: the browser needs a core;
two intra-op threads stall each other when other processes share the cores)."""

import sys
from pathlib import Path

import torch

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
