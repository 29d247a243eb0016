"""The offline structure reward on hand-made rewrites that keep or break the source's blocks."""

from __future__ import annotations

import dataclasses

import pytest

from hf_megadocs.tuning.config import DEFAULT_WEIGHTS, TuneConfig
from hf_megadocs.tuning.judge import JudgeConfig
from hf_megadocs.tuning.rewards import Rewards
from hf_megadocs.tuning.structure import BlockStructure, block_structure, structure_score

SOURCE = """# Installing the tool

The tool installs from a wheel and needs no network once the wheel is on disk.
It runs on Linux and macOS.

Before installing, check three things:

- Python 3.11 or newer
- about 200 MB of free disk
- write access to the cache folder

```bash
pip install ./tool.whl
tool --version
```

| platform | tested |
|---|---|
| Linux | yes |
| macOS | yes |

Report problems on the tracker.
"""

KEPT = """# How to install the tool

Installation uses a wheel; with the wheel on disk no network is needed. Linux and macOS
are both supported.

Three checks come first:

- Python at version 3.11 or later
- roughly 200 MB of disk space
- permission to write to the cache folder

```bash
pip install ./tool.whl
tool --version
```

| platform | tested |
|---|---|
| Linux | yes |
| macOS | yes |

Problems go to the tracker.
"""

LIST_AS_PROSE = KEPT.replace(
    "- Python at version 3.11 or later\n- roughly 200 MB of disk space\n"
    "- permission to write to the cache folder",
    "You need Python 3.11 or later, roughly 200 MB of disk and write access to the cache.",
)
CODE_DROPPED = KEPT.replace("```bash\npip install ./tool.whl\ntool --version\n```\n\n", "")
TABLE_FLATTENED = KEPT.replace(
    "| platform | tested |\n|---|---|\n| Linux | yes |\n| macOS | yes |",
    "It was tested on Linux and on macOS.",
)
ONE_BLOCK = " ".join(line for line in KEPT.splitlines() if line and line[0].isalpha())


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def test_counts_every_kind_of_block():
    assert block_structure(SOURCE) == BlockStructure(
        paragraphs=3, list_items=3, code_blocks=1, table_rows=3, headings=1
    )
    # a hard-wrapped paragraph is one paragraph; an indented line continues its list item
    assert block_structure("a b\nc d\n\n- one\n  more\n- two").paragraphs == 1
    assert block_structure("a b\nc d\n\n- one\n  more\n- two").list_items == 2
    # without blank lines every line is a paragraph (one per line, as extractors write)
    assert block_structure("First.\nSecond.\nThird.").paragraphs == 3
    # an unclosed fence (a cut-off output) still opened a code block; its lines are code
    assert block_structure("Text.\n\n```\n- not a list").code_blocks == 1
    assert block_structure("Text.\n\n```\n- not a list").list_items == 0
    # a navigation line with pipes is prose, not a table
    assert block_structure("Home | News | Contact").table_rows == 0


def test_a_rewrite_that_keeps_the_blocks_scores_one():
    assert structure_score(KEPT, SOURCE) == 1.0
    # one paragraph per line vs the same paragraphs separated by blank lines
    assert structure_score("First one.\n\nSecond one.", "First.\nSecond.") == 1.0


@pytest.mark.parametrize(
    "broken",
    [LIST_AS_PROSE, CODE_DROPPED, TABLE_FLATTENED, ONE_BLOCK],
    ids=["list_as_prose", "code_dropped", "table_flattened", "one_block"],
)
def test_a_rewrite_that_loses_a_kind_of_block_scores_zero(broken):
    assert structure_score(broken, SOURCE) == 0.0


def test_a_drifting_count_costs_in_proportion():
    merged = KEPT.replace("supported.\n\nThree checks", "supported. Three checks")
    assert block_structure(merged).paragraphs == 2
    assert structure_score(merged, SOURCE) == pytest.approx(2 / 3)
    one_item_short = KEPT.replace("- roughly 200 MB of disk space\n", "")
    assert structure_score(one_item_short, SOURCE) == pytest.approx(2 / 3)


def test_turning_prose_into_a_list_breaks_the_structure():
    prose = "The levee was built in 2019. It held in 2023. The council paid for it."
    listed = "- The levee was built in 2019.\n- It held in 2023.\n- The council paid for it."
    assert structure_score(listed, prose) == 0.0
    assert structure_score("", prose) == 0.0


def test_the_reward_reads_completions_and_is_rephrase_only():
    rewards = Rewards("rephrase")
    (structure,) = rewards.functions(["structure"])
    assert structure(completions=[chat(KEPT), chat(CODE_DROPPED), None], source=[SOURCE] * 3)[
        ::2
    ] == [1.0, 0.0]
    with pytest.raises(ValueError, match="structure"):
        Rewards("reformat").functions(["structure"])


def test_rephrase_defaults_carry_structure_at_weight_one():
    assert DEFAULT_WEIGHTS["structure"] == 1.0
    assert TuneConfig().rewards["structure"] == 1.0
    assert "structure" not in TuneConfig(operation="reformat").rewards
    judged = TuneConfig(judge=JudgeConfig(base_url="http://127.0.0.1:9/v1")).rewards
    assert judged["judge_structure"] == 1.0 and "structure" not in judged
    # a rephrase template reused for a reformat run (as rounds does) drops it
    assert "structure" not in dataclasses.replace(TuneConfig(), operation="reformat").rewards
