"""The calibrated rephrase faithfulness score on its labelled check set.

The check set (hf_megadocs.tuning.faithfulness_checks): 8 real Lee articles, each with a
hand-written faithful paraphrase (scored against the article, and against the article
wrapped in web boilerplate) and four unfaithful texts (shuffled, entity-swapped,
truncated, unrelated). Encoding its ~50 distinct texts once is the only slow part.
"""

from __future__ import annotations

import itertools
import statistics

import pytest

from hf_megadocs.tuning import faithfulness_checks
from hf_megadocs.tuning.encoder import greedy_f1
from hf_megadocs.tuning.faithfulness import (
    F1_BASELINE,
    FACT_SUPPORT,
    RESCALED_THRESHOLD,
    auc,
    content_lines,
    fact_support,
    faithfulness_f1,
    rescale,
    separating_threshold,
)
from hf_megadocs.tuning.faithfulness_checks import FAITHFUL_KINDS, KINDS, PASSAGES, check_pairs
from hf_megadocs.tuning.rewards import Rewards, RewardSettings


@pytest.fixture(scope="module")
def rewards() -> Rewards:
    return Rewards("rephrase")


@pytest.fixture(scope="module")
def scored(rewards):
    """Every check pair with its rescaled F1 and fact support."""
    pairs = check_pairs()
    raw = faithfulness_f1(rewards.encoder, [p.candidate for p in pairs], [p.source for p in pairs])
    return [(p, f1, rescale(f1), fact_support(p.candidate, p.source)) for p, f1 in zip(pairs, raw)]


def test_check_set_has_every_kind_for_every_passage():
    pairs = check_pairs()
    assert len(pairs) == len(PASSAGES) * len(KINDS)
    for passage in PASSAGES:
        kinds = {p.kind: p for p in pairs if p.line == passage.line}
        assert set(kinds) == set(KINDS)
        assert all(p.faithful == (k in FAITHFUL_KINDS) for k, p in kinds.items())
        assert kinds["cleaned"].candidate == kinds["faithful"].candidate
        assert content_lines(kinds["cleaned"].source) == kinds["faithful"].source
        assert len(kinds["truncated"].candidate) < 0.5 * len(kinds["faithful"].candidate)
        assert kinds["entity_swapped"].candidate != kinds["faithful"].candidate


def test_a_changed_corpus_is_refused(monkeypatch):
    articles = faithfulness_checks.lee_articles()
    articles[PASSAGES[0].line] += " One more sentence."
    monkeypatch.setattr(faithfulness_checks, "lee_articles", lambda: articles)
    with pytest.raises(ValueError, match="corpus changed"):
        check_pairs()


def test_rescaled_f1_separates_faithful_from_every_unfaithful_kind(scored):
    faithful = [r for p, _, r, _ in scored if p.faithful]
    unfaithful = [r for p, _, r, _ in scored if not p.faithful]
    # The recorded separation (BENCHMARKS.md): lowest faithful 0.749, highest unfaithful
    # 0.705 (entity-swapped), AUC 1.0; the threshold sits between them with room each side.
    assert auc(faithful, unfaithful) == 1.0
    assert min(faithful) > RESCALED_THRESHOLD + 0.01
    assert max(unfaithful) < RESCALED_THRESHOLD - 0.01
    assert separating_threshold(faithful, unfaithful) == pytest.approx(RESCALED_THRESHOLD, abs=0.01)


def test_the_uncalibrated_rule_passed_most_unfaithful_texts(scored):
    # raw F1 > 0.65 (SynPro's deberta threshold on MiniLM): every shuffled and every
    # entity-swapped text passes, and most truncated ones (22 of the 32 unfaithful texts
    # when measured), so the old reward rewarded word salad and cut-off rewrites.
    passed = {k: sum(f1 > 0.65 for p, f1, _, _ in scored if p.kind == k) for k in KINDS}
    assert passed["shuffled"] == passed["entity_swapped"] == len(PASSAGES)
    assert passed["truncated"] > len(PASSAGES) / 2
    assert passed["unrelated"] == 0


def test_fact_support_catches_every_entity_swap_and_no_faithful_paraphrase(scored):
    faithful = [s for p, _, _, s in scored if p.faithful]
    swapped = [s for p, _, _, s in scored if p.kind == "entity_swapped"]
    assert min(faithful) >= FACT_SUPPORT > max(swapped)


def test_the_reward_judges_every_check_pair_right(rewards, scored):
    completions = [[{"role": "assistant", "content": p.candidate}] for p, *_ in scored]
    scores = rewards.faithfulness(completions=completions, source=[p.source for p, *_ in scored])
    assert scores == [float(p.faithful) for p, *_ in scored]


def test_the_baseline_matches_unrelated_check_sources(rewards):
    """The stored baseline is this encoder's: the check set's 8 sources, unrelated to each
    other, score around it (it was measured on 2,000 random pairs of the whole corpus)."""
    sources = sorted({p.source for p in check_pairs() if p.kind == "faithful"})
    embedded = rewards.encoder.token_embeddings(sources)
    values = [greedy_f1(a, b) for a, b in itertools.combinations(embedded, 2)]
    assert abs(statistics.fmean(values) - F1_BASELINE) < 0.08  # about one s.d. of the pairs


def test_fact_support_reads_names_and_numbers_not_sentence_starts():
    source = "The council of Leeds spent 9,200 pounds on the levee in 2019."
    assert fact_support("Leeds spent 9,200 pounds. Since then, nothing.", source) == 1.0
    assert fact_support("The council of York spent 400 pounds in 2019.", source) == pytest.approx(
        1 / 3
    )
    assert fact_support("It was Leeds's council that paid.", source) == 1.0
    assert fact_support("no names or numbers here", source) == 1.0


def test_content_lines_drop_boilerplate_and_keep_structured_sources():
    page = (
        "Home | News | Contact\nThe council built a levee along the river in 2019.\n"
        "We use cookies to improve your experience on this site.\nShare: Facebook Twitter"
    )
    assert content_lines(page) == "The council built a levee along the river in 2019."
    listing = "- flour\n- two eggs\n- milk"  # no line reads as content: all of it counts
    assert content_lines(listing) == listing


def test_rescale_and_threshold_helpers():
    assert rescale(F1_BASELINE) == 0.0
    assert rescale(1.0) == 1.0
    assert rescale(0.5, baseline=0.5) == 0.0
    with pytest.raises(ValueError, match="baseline"):
        rescale(0.5, baseline=1.0)
    assert separating_threshold([0.8, 0.9], [0.1, 0.6]) == pytest.approx(0.7)
    assert separating_threshold([0.5, 0.9], [0.6]) is None
    assert auc([0.5, 0.9], [0.6]) == 0.5
    with pytest.raises(ValueError, match="faithfulness_baseline"):
        RewardSettings(faithfulness_baseline=1.2)
    with pytest.raises(ValueError, match="fact_support"):
        RewardSettings(fact_support=2.0)


def test_the_encoder_encodes_each_distinct_text_once(rewards, scored):
    encoder, calls = rewards.encoder, []
    encode = encoder._encode
    encoder._encode = lambda texts: calls.append(list(texts)) or encode(texts)
    try:
        sources = [p.source for p, *_ in scored[:5]]  # one passage: the same source 5 times
        encoder.bertscore_f1([p.candidate for p, *_ in scored[:5]], sources)
        encoder.bertscore_f1(["A new rewrite."] * 3, sources[:3])
    finally:
        del encoder._encode
    assert calls == [[], ["A new rewrite."]]  # the check set's texts were cached
