"""distillation.data.captions: concept names and keys, caption text, the held-out rule, caption embeddings."""

import numpy as np
import pytest

from distillation.data.captions import (
    caption,
    concept_key,
    concept_name,
    embed_captions,
    is_heldout,
    recoloured_concept,
)


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("red-apple", "red apple"),
        ("A blue fish.", "blue fish"),
        ("waving hand: dark skin tone", "waving hand"),
        ("woman-juggling-medium-dark-skin-tone", "woman juggling"),
        ("apps-48", "apps"),
        ("rain-fill", "rain"),
        ("astronaut-2", "astronaut"),
        ("boy-default", "boy"),
        ("1st-place-medal", "1st place medal"),
        ("2", "2"),
        ("Red_Apple", "red apple"),
    ],
)
def test_concept_names_are_plain_words(raw, name):
    assert concept_name(raw) == name


def test_one_concept_from_several_sets_has_one_key():
    assert concept_key(concept_name("red-apple")) == concept_key("redapple") == concept_key(concept_name("Red apple."))
    assert concept_key("red apple") != concept_key("green apple")


def test_heldout_rule_is_deterministic_nested_and_about_the_fraction():
    keys = [f"concept{i}" for i in range(20_000)]
    first = [is_heldout(k, 0.04) for k in keys]
    assert first == [is_heldout(k, 0.04) for k in keys]
    assert 0.03 < np.mean(first) < 0.05
    assert all(is_heldout(k, 0.08) for k, held in zip(keys, first, strict=True) if held)  # nested as it grows


def test_caption_text_and_recoloured_concepts():
    assert caption("red apple", ["red", "green"], "flat emoji") == "red apple, red and green, flat emoji"
    assert caption("cloud", [], "weather icon") == "cloud, weather icon"
    assert recoloured_concept("red apple", 120) == "green apple"
    assert recoloured_concept("white flag", 120) == "white flag" and recoloured_concept("apple", 60) == "apple"


def test_caption_embeddings_are_unit_vectors_that_rank_meaning_and_empty_is_zero():
    cat, kitten, flag, empty = embed_captions(["a cat", "a kitten", "flag: Ireland", ""]).astype(np.float32)
    np.testing.assert_allclose([np.linalg.norm(v) for v in (cat, kitten, flag)], 1.0, atol=2e-3)
    assert cat @ kitten > cat @ flag + 0.2 and not empty.any()
