"""The tuning rewards on hand-made cases: each one's pass and fail, and None handling."""

from __future__ import annotations

import pytest

from hf_megadocs.tuning.quality import quality_score
from hf_megadocs.tuning.rewards import REWARD_NAMES, Rewards, RewardSettings, completion_text

SOURCE = (
    "The river Avon floods every spring when snow melts in the hills. In 2019 the water "
    "rose 3.5 metres and farmers moved 400 cattle to higher ground. The council has since "
    "built a levee along the eastern bank, which held during the floods of 2023."
)
PARAPHRASE = (
    "Each spring, melting snow in the hills makes the river Avon flood. The water rose 3.5 "
    "metres in 2019, and farmers took 400 cattle up to higher ground. Since then the council "
    "has built a levee on the eastern bank, and it held in the 2023 floods."
)
UNRELATED = (
    "Quarterly revenue grew on strong demand for cloud software subscriptions, while the "
    "board approved a new share buyback and raised its dividend for shareholders."
)


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


@pytest.fixture(scope="module")
def rephrase() -> Rewards:
    return Rewards("rephrase")


def test_completion_text_reads_strings_chats_and_none():
    assert completion_text("plain") == "plain"
    assert completion_text(chat("from a chat")) == "from a chat"
    assert completion_text(None) == ""
    assert completion_text("Sure! Rewritten: the text", lead_in="Rewritten:") == "the text"


def test_length_is_binary_at_the_ratio():
    rewards = Rewards("rephrase", RewardSettings(max_length_ratio=1.25))
    source = "x" * 100
    outputs = [chat("y" * 125), chat("y" * 126), chat(""), None]
    assert rewards.length(completions=outputs, source=[source] * 4) == [1.0, 0.0, 0.0, 0.0]


def test_format_catches_loops_and_enforces_the_lead_in():
    rewards = Rewards("rephrase")
    loop = "The river floods in spring every single year.\n" * 3
    assert rewards.format(completions=[chat(PARAPHRASE), chat(loop), chat("")]) == [1, 0, 0]
    with_lead = Rewards("rephrase", RewardSettings(lead_in="Rewritten:"))
    scores = with_lead.format(
        completions=[
            chat("Rewritten: " + PARAPHRASE),
            chat(PARAPHRASE),
            chat("Rewritten: a Rewritten: b"),
        ]
    )
    assert scores == [1.0, 0.0, 0.0]


def test_reformat_format_accepts_both_entry_forms_and_caps_them():
    rewards = Rewards("reformat", RewardSettings(max_entries=2))
    two_lines = (
        "Topic: Floods\nContent: The Avon floods in spring.\n\nTopic: Levee\nContent: Built later."
    )
    one_line = "- Topic: Floods Content: The Avon floods.\n- Topic: Cattle Content: 400 moved."
    three = one_line + "\n- Topic: Levee Content: It held."
    repeated = "- Topic: Floods Content: a.\n- Topic: floods Content: b."
    scores = rewards.format(
        completions=[chat(two_lines), chat(one_line), chat(three), chat(repeated), chat(PARAPHRASE)]
    )
    assert scores == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_rephrase_faithfulness_separates_paraphrase_from_unrelated(rephrase):
    scores = rephrase.faithfulness(
        completions=[chat(PARAPHRASE), chat(UNRELATED), chat("")], source=[SOURCE] * 3
    )
    assert scores == [1.0, 0.0, 0.0]


def test_reformat_faithfulness_is_the_supported_share_of_entries():
    rewards = Rewards("reformat")
    entries = (
        "Topic: Spring floods\nContent: The river Avon floods every spring when snow melts.\n\n"
        "Topic: 2019 flood\nContent: In 2019 the water rose 3.5 metres and farmers moved cattle.\n\n"
        "Topic: Invented\nContent: In 2021 the river rose 9 metres and destroyed the bridge."
    )
    score, none_parsed = rewards.faithfulness(
        completions=[chat(entries), chat("no entries here")], source=[SOURCE] * 2
    )
    # The made-up entry states a number the source lacks and an event it does not report.
    assert score == pytest.approx(2 / 3)
    assert none_parsed == 0.0


def test_quality_delta_rewards_a_cleaner_rewrite():
    rewards = Rewards("rephrase")
    noisy_source = SOURCE + "\nShare this ... \nShare this ... \n#news #floods #avon"
    clean, degenerate = rewards.quality(
        completions=[chat(PARAPHRASE), chat("floods floods floods floods")],
        source=[noisy_source] * 2,
    )
    assert clean > 0 > degenerate
    assert quality_score("") == 0.0


def test_every_reward_is_named_as_trl_logs_it_and_unknown_names_fail():
    functions = Rewards("rephrase").functions(["length", "format"])
    assert [f.__name__ for f in functions] == ["length", "format"]
    # TRL's call: prompts, completions, then every dataset column as a keyword list.
    assert functions[0](
        prompts=["p"], completions=[chat("ok")], source=["source"], source_id=["d"]
    ) == [1.0]
    with pytest.raises(ValueError, match="unknown reward"):
        Rewards("rephrase").functions(["length", "nope"])
    assert "influence" in REWARD_NAMES


def test_influence_reward_without_a_scorer_says_what_to_set():
    with pytest.raises(ValueError, match="TuneConfig.influence"):
        Rewards("rephrase").influence_delta(completions=[chat("x")], source=["y"])
