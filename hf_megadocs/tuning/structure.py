"""The offline structure reward: does a rephrase keep its source's block structure?

SynPro's rephrase asks an LLM judge, as a yes/no question, whether the output keeps the
source's paragraphing, lists, code blocks and tables (``judge_structure`` sends that
question to an endpoint). Offline, :func:`structure_score` compares counts instead: the
source's and the output's :class:`BlockStructure` (paragraphs, list items, fenced code
blocks, table rows, Markdown headings).

The score is **graded**, not binary: per kind present in either text, the smaller count
over the larger, multiplied over the kinds. A rewrite that keeps every count scores 1; one
that loses or adds a whole kind of block (a list run into prose, a dropped code block, a
table flattened into sentences, prose turned into bullets) scores 0, as SynPro's judge
would say no; a count that drifts (two paragraphs merged, a boilerplate line dropped)
costs in proportion, so GRPO's per-group comparison still ranks near misses above
broken layouts. An empty output scores 0.

Paragraphs: a text with blank lines separates paragraphs by blank lines (hard-wrapped
lines stay one paragraph); a text without any takes each line as one (web extractions
put one paragraph per line). Lists, tables, headings and code blocks end a paragraph.
"""

from __future__ import annotations

import math
import re
from dataclasses import astuple, dataclass, fields

_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+\S")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+\S")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?\s*$")
"""A Markdown table's header rule (``|---|:--:|``): layout, not a row."""


@dataclass(frozen=True)
class BlockStructure:
    """How many of each block a text has."""

    paragraphs: int = 0
    list_items: int = 0
    code_blocks: int = 0
    table_rows: int = 0
    """Rows of Markdown tables (``| a | b |``, the header rule not counted) or lines with
    two or more tabs (tab-separated tables as text extractors write them)."""
    headings: int = 0


def _is_table_row(line: str) -> bool:
    stripped = line.strip()
    if stripped.count("\t") >= 2:
        return True
    return len(stripped) > 1 and stripped.startswith("|") and stripped.endswith("|")


def block_structure(text: str) -> BlockStructure:
    """Count the blocks of ``text`` (see the module docstring for the rules)."""
    lines = text.splitlines()
    blank_separated = _has_blank_line_outside_code(lines)
    counts = dict.fromkeys((f.name for f in fields(BlockStructure)), 0)
    in_code = in_paragraph = in_item = False
    for line in lines:
        if _FENCE.match(line):
            counts["code_blocks"] += not in_code  # an unclosed fence still opened a block
            in_code, in_paragraph, in_item = not in_code, False, False
            continue
        if in_code:
            continue
        if not line.strip():
            in_paragraph = in_item = False
            continue
        if _HEADING.match(line):
            counts["headings"] += 1
            in_paragraph = in_item = False
        elif _TABLE_RULE.match(line) and "|" in line:
            in_paragraph = in_item = False
        elif _is_table_row(line):
            counts["table_rows"] += 1
            in_paragraph = in_item = False
        elif _LIST_ITEM.match(line):
            counts["list_items"] += 1
            in_paragraph, in_item = False, True
        elif in_item and line[:1].isspace():
            continue  # an item's indented continuation line
        else:
            counts["paragraphs"] += not (in_paragraph and blank_separated)
            in_paragraph, in_item = True, False
    return BlockStructure(**counts)


def _has_blank_line_outside_code(lines: list[str]) -> bool:
    in_code, seen_text = False, False
    for line in lines:
        if _FENCE.match(line):
            in_code = not in_code
        elif not in_code and not line.strip() and seen_text:
            return True
        seen_text = seen_text or bool(line.strip())
    return False


def structure_agreement(output: BlockStructure, source: BlockStructure) -> float:
    """The product over the kinds either text has of min(count) / max(count) (1.0 if
    neither has any block)."""
    return math.prod(
        min(o, s) / max(o, s) for o, s in zip(astuple(output), astuple(source)) if o or s
    )


def structure_score(output: str, source: str) -> float:
    """How well ``output`` keeps ``source``'s block structure, in [0, 1] (0 if empty)."""
    if not output.strip():
        return 0.0
    return structure_agreement(block_structure(output), block_structure(source))


__all__ = ["BlockStructure", "block_structure", "structure_agreement", "structure_score"]
