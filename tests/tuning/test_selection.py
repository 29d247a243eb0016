"""Round document selection and plateau detection (hf_megadocs.tuning.selection): pure."""

from __future__ import annotations

import math
import random

import pytest

from hf_megadocs.tuning.selection import (
    PlateauConfig,
    SelectionConfig,
    detect_plateau,
    select_documents,
)

IDS = [f"doc-{i}" for i in range(10)]
SCORES = [0.5, -0.2, 0.9, math.nan, 0.1, -0.7, 0.3, 0.0, 0.8, -0.1]


def test_all_keeps_every_document_without_scores():
    chosen = select_documents(IDS, None, SelectionConfig())
    assert chosen.ids == IDS and chosen.counters["selected"] == 10


def test_top_k_takes_the_highest_and_counts_the_rest():
    chosen = select_documents(IDS, SCORES, SelectionConfig(mode="top_k", k=3))
    assert chosen.ids == ["doc-0", "doc-2", "doc-8"]  # in input order
    assert chosen.counters == {"candidates": 10, "unscored": 1, "below_rank": 6, "selected": 3}


def test_selection_does_not_depend_on_input_order():
    pairs = list(zip(IDS, SCORES, strict=True))
    random.Random(1).shuffle(pairs)
    for mode in ("top_k", "gumbel_top_k", "positive", "highest_loss"):
        config = SelectionConfig(mode=mode, k=4)
        a = select_documents(IDS, SCORES, config).ids
        b = select_documents([i for i, _ in pairs], [s for _, s in pairs], config).ids
        assert sorted(a) == sorted(b), mode


def test_positive_keeps_strictly_positive_influence():
    chosen = select_documents(IDS, SCORES, SelectionConfig(mode="positive"))
    assert chosen.ids == ["doc-0", "doc-2", "doc-4", "doc-6", "doc-8"]
    assert chosen.counters["not_positive"] == 4 and chosen.counters["unscored"] == 1


def test_gumbel_top_k_is_seeded_and_near_top_k_when_cold():
    config = SelectionConfig(mode="gumbel_top_k", k=3, seed=7)
    assert select_documents(IDS, SCORES, config).ids == select_documents(IDS, SCORES, config).ids
    cold = SelectionConfig(mode="gumbel_top_k", k=3, temperature=1e-4)
    top = select_documents(IDS, SCORES, SelectionConfig(mode="top_k", k=3)).ids
    assert select_documents(IDS, SCORES, cold).ids == top
    hot = {
        tuple(select_documents(IDS, SCORES, SelectionConfig(mode="gumbel_top_k", k=3,
                                                            temperature=100.0, seed=s)).ids)
        for s in range(20)
    }  # fmt: skip
    assert len(hot) > 1  # a hot sample is not always the top


def test_fraction_sets_k_and_bad_settings_say_what_to_fix():
    assert len(select_documents(IDS, SCORES, SelectionConfig(mode="top_k", fraction=0.5)).ids) == 5
    with pytest.raises(ValueError, match="one score per document"):
        select_documents(IDS, None, SelectionConfig(mode="top_k", k=2))
    with pytest.raises(ValueError, match="selection.mode"):
        SelectionConfig(mode="best")
    with pytest.raises(ValueError, match="selection.k"):
        SelectionConfig(k=0)


def _evals(losses, reported=None):
    """Eval records whose held-out selection_loss is ``losses``; their reported iid_loss
    (``reported``, default the same losses in reverse) must never change the verdict."""
    reported = reported or losses[::-1]
    return [
        {"kind": "eval", "step": 10 * (i + 1), "selection_loss": x, "iid_loss": y}
        for i, (x, y) in enumerate(zip(losses, reported, strict=True))
    ]


def test_plateau_needs_a_flat_window_after_earlier_evaluations():
    config = PlateauConfig(window=2, min_relative_improvement=0.01)
    improving = detect_plateau(_evals([5.0, 4.5, 4.0, 3.6]), config)
    assert not improving.reached and improving.improvement == pytest.approx(0.2)
    flat = detect_plateau(_evals([5.0, 4.0, 3.99, 3.985]) + [{"kind": "train", "step": 5}], config)
    assert flat.reached and flat.step == 40 and "plateau at step 40" in flat.describe()
    few = detect_plateau(_evals([5.0, 4.0]), config)
    assert not few.reached and few.improvement is None and "too few" in few.describe()


def test_the_reported_validation_loss_never_drives_the_plateau():
    config = PlateauConfig(window=2, min_relative_improvement=0.01)
    flat, improving = [5.0, 4.0, 3.99, 3.985], [5.0, 4.5, 4.0, 3.6]
    # The same held-out losses give the same verdict whatever the reported loss does.
    for reported in (flat, improving, [1.0, 1.0, 1.0, 1.0]):
        assert detect_plateau(_evals(flat, reported), config).reached
        assert not detect_plateau(_evals(improving, reported), config).reached
    # A run that reports only iid_loss (eval.selection_fraction 0) never plateaus, and says why.
    reported_only = [{"kind": "eval", "step": 10 * i, "iid_loss": 4.0} for i in range(1, 6)]
    none = detect_plateau(reported_only, config)
    assert not none.reached and none.evaluations == 0 and none.without_selection == 5
    assert "--eval.selection_fraction" in none.describe() and "--trigger now" in none.describe()
