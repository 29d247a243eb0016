"""Tests for the leakage-safe split by source id."""

from __future__ import annotations

import pytest

from hf_megadocs.generation.splits import split_of, split_unit


def test_split_is_a_pure_function_of_id_fraction_and_seed():
    ids = [f"doc-{i}" for i in range(2000)]
    first = [split_of(i, 0.1, seed=0) for i in ids]
    assert first == [split_of(i, 0.1, seed=0) for i in reversed(ids)][::-1]
    share = first.count("validation") / len(ids)
    assert 0.08 < share < 0.12
    other_seed = [split_of(i, 0.1, seed=1) for i in ids]
    assert other_seed != first


def test_larger_fraction_only_adds_validation_docs():
    ids = [f"doc-{i}" for i in range(500)]
    small = {i for i in ids if split_of(i, 0.05, 0) == "validation"}
    large = {i for i in ids if split_of(i, 0.2, 0) == "validation"}
    assert small < large


def test_zero_fraction_keeps_everything_in_train():
    assert {split_of(f"d{i}", 0.0, 0) for i in range(100)} == {"train"}
    assert 0.0 <= split_unit("x", 0) < 1.0


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_bad_fraction_names_the_knob(fraction):
    with pytest.raises(ValueError, match="validation_fraction"):
        split_of("d", fraction, 0)
