"""The prompt vector's colour words: which words count, in which order, and that the empty prompt stays zero."""

import numpy as np
import pytest

from pipelines.text import COLOUR_TERMS, PROMPT_DIM, TEXT_DIM, colour_words, prompt_vectors


def weights(**named: float) -> np.ndarray:
    """The expected (11,) vector, built from term names (independently of colour_words' parsing)."""
    out = np.zeros(11, np.float32)
    for term, weight in named.items():
        out[COLOUR_TERMS.index(term)] = weight
    return out


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a red house", weights(red=1.0)),
        ("A BLUE car.", weights(blue=1.0)),
        ("apple, red and green, flat emoji", weights(red=1.0, green=0.5)),
        ("red apple, red and green", weights(red=1.0, green=0.5)),  # a term named twice keeps its first rank
        ("Grey cat, blue and violet", weights(gray=1.0, blue=0.5, purple=1 / 3)),  # aliases fold in
        ("blackboard and redwood", weights()),  # words, not substrings
        ("", weights()),
    ],
)
def test_colour_words_weigh_the_kth_named_term_one_over_k(text, expected):
    np.testing.assert_allclose(colour_words(text), expected)


def test_prompt_vectors_put_the_colour_words_after_the_embedding_and_keep_the_empty_prompt_zero():
    embeddings = np.stack([np.full(TEXT_DIM, 0.5, np.float32), np.zeros(TEXT_DIM, np.float32)])
    vectors = prompt_vectors(embeddings, ["a pink pig", ""])
    assert vectors.shape == (2, PROMPT_DIM) and vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors[0, :TEXT_DIM], embeddings[0])
    np.testing.assert_array_equal(vectors[0, TEXT_DIM:], weights(pink=1.0))
    assert not vectors[1].any()  # the unconditional text: no embedding, no colour
