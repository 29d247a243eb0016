"""Golden tests for the pure assembly functions, on hand-made documents."""

from __future__ import annotations

import pytest

from hf_megadocs.corpora.assembly import (
    assemble_generation,
    assemble_latent,
    assemble_real,
    assemble_reformat,
    assemble_stitched,
    latent_fields,
    latent_split_points,
    make_row,
    parse_reformat,
    real_text,
    segments_text,
    shuffled_order,
)
from hf_megadocs.records import Generation, Segment

DOC = "The river floods in spring. Farmers plant after the water recedes.\n\nRice is the main crop."
R1 = "Spring floods define the river valley."
R2 = "After the floods recede, farmers plant rice."


def _spans(assembled):
    return [(s.role, assembled.text[s.start : s.end]) for s in assembled.segments]


def test_stitched_real_last_golden_offsets():
    row = assemble_stitched(DOC, [R1, R2], separator="<SEP>")
    assert row.text == f"{R1}<SEP>{R2}<SEP>{DOC}"
    assert [(s.role, s.start, s.end) for s in row.segments] == [
        ("rephrase", 0, len(R1)),
        ("separator", len(R1), len(R1) + 5),
        ("rephrase", len(R1) + 5, len(R1) + 5 + len(R2)),
        ("separator", len(R1) + 5 + len(R2), len(R1) + 10 + len(R2)),
        ("real", len(R1) + 10 + len(R2), len(row.text)),
    ]
    assert row.row_generations == 2
    assert real_text(row) == DOC


def test_stitched_real_first_and_no_real():
    first = assemble_stitched(DOC, [R1, R2], real_position="first")
    assert first.text == f"{DOC}\n\n{R1}\n\n{R2}"
    assert _spans(first)[0] == ("real", DOC)
    assert real_text(first) == DOC
    none = assemble_stitched(DOC, [R1, R2], real_position="none")
    assert none.text == f"{R1}\n\n{R2}"
    assert real_text(none) == ""
    assert [r for r, _ in _spans(none)] == ["rephrase", "separator", "rephrase"]
    with pytest.raises(ValueError, match="real_position"):
        assemble_stitched(DOC, [R1], real_position="middle")  # type: ignore[arg-type]


def test_stitched_records_generation_keys():
    gen = Generation(
        key="k1",
        source_id="d",
        prompt_id="wiki",
        prompt_hash="h",
        generator="g",
        generator_revision="r",
        sampling={},
        sample_index=0,
        input_part="",
        text=R1,
        raw_text=R1,
        prompt_tokens=1,
        completion_tokens=1,
        finish_reason="stop",
    )
    row = assemble_stitched(DOC, [gen])
    assert row.segments[0] == Segment("rephrase", 0, len(R1), "k1")
    assert row.segments[-1].generation_key is None


def test_simple_has_same_text_and_token_count_as_stitched():
    rephrases = [R1, R2, "A third rewrite of the farming story."]
    # Simple rephrasing's rows for one document, as the builder makes them (rows.py).
    simple = [assemble_real(DOC)] + [assemble_generation(r, "rephrase") for r in rephrases]
    stitched = assemble_stitched(DOC, rephrases)
    assert sorted(r.text for r in simple) == sorted(
        stitched.text[s.start : s.end] for s in stitched.segments if s.role != "separator"
    )
    # Token count as the trainer sees it: every separator is one EOS, every row ends in one.
    simple_tokens = sum(len(r.text.split()) + 1 for r in simple)
    stitched_tokens = (
        len(segments_text(stitched, ("real",)).split())
        + sum(
            len(stitched.text[s.start : s.end].split())
            for s in stitched.segments
            if s.role == "rephrase"
        )
        + sum(1 for s in stitched.segments if s.role == "separator")
        + 1
    )
    assert simple_tokens == stitched_tokens
    assert [r.segments[0].role for r in simple] == ["real", "rephrase", "rephrase", "rephrase"]
    assert sum(r.row_generations for r in simple) == stitched.row_generations == 3


def test_shuffled_order_is_a_seeded_permutation():
    order = shuffled_order(50, seed=3)
    assert sorted(order) == list(range(50))
    assert order == shuffled_order(50, seed=3)
    assert order != shuffled_order(50, seed=4)


def test_latent_equal_tokens_split_and_reassembly():
    doc = " ".join(f"w{i}" for i in range(12))
    points = latent_split_points(doc, 3, "equal_tokens")
    assert [doc[p:].split()[0] for p in points] == ["w3", "w6", "w9"]
    fields = latent_fields(doc, points)
    assert fields[0] == {"prefix": "w0 w1 w2 ", "suffix": "w3 w4 w5 "}
    assert fields[-1]["suffix"] == "w9 w10 w11"
    row = assemble_latent(
        doc, points, ["A", None, "C"], open_delimiter="<t>", close_delimiter="</t>"
    )
    assert row.text == "w0 w1 w2 <t>A</t>w3 w4 w5 w6 w7 w8 <t>C</t>w9 w10 w11"
    assert real_text(row) == doc
    assert row.row_generations == 2
    assert [s.role for s in row.segments] == [
        "real",
        "rationale",
        "real",
        "real",
        "rationale",
        "real",
    ]


def test_latent_clamps_g_for_short_docs():
    assert latent_split_points("one two three", 8, "equal_tokens") == [4, 8]
    assert latent_split_points("single", 4, "equal_tokens") == []
    assert latent_split_points("Only one sentence here.", 4, "sentences") == []
    row = assemble_latent("single", [], [])
    assert row.text == "single" and real_text(row) == "single" and row.row_generations == 0


def test_latent_sentence_split_points_align_to_sentences():
    points = latent_split_points(DOC, 2, "sentences")
    assert [DOC[p:].split()[0] for p in points] == ["Farmers", "Rice"]
    assert latent_split_points(DOC, 1, "sentences") == [DOC.index("Farmers")]
    rationales = ["why farmers wait", "what grows"]
    row = assemble_latent(DOC, points, rationales)
    assert real_text(row) == DOC
    assert "<thought>why farmers wait</thought>Farmers" in row.text


def test_latent_rejects_bad_points():
    with pytest.raises(ValueError, match="one rationale per split point"):
        assemble_latent(DOC, [5], [])
    with pytest.raises(ValueError, match="increasing"):
        assemble_latent(DOC, [9, 5], ["a", "b"])
    with pytest.raises(ValueError, match="latent_split_rule"):
        latent_split_points(DOC, 2, "words")  # type: ignore[arg-type]


def test_parse_reformat_well_formed_and_malformed():
    text = "Topic: Floods\nContent: The river floods in spring.\n\n**Topic:** Crops\n**Content:** Rice,\nmostly."
    assert parse_reformat(text) == [
        ("Floods", "The river floods in spring."),
        ("Crops", "Rice,\nmostly."),
    ]
    assert parse_reformat("Here is a summary of the text.") is None
    assert parse_reformat("Topic: A\nTopic: B\nContent: x") is None
    assert parse_reformat("Content: x") is None
    assert parse_reformat("Topic: A\nContent:   ") is None
    assert parse_reformat("Intro line\nTopic: A\nContent: x") is None
    # The one-line form SynPro's own prompt asks for, bullets and bold included.
    one_line = (
        "- Topic: Floods. Content: The river rose.\n- **Topic:** Cattle **Content:** Moved uphill."
    )
    assert parse_reformat(one_line) == [("Floods", "The river rose."), ("Cattle", "Moved uphill.")]
    assert parse_reformat("- Topic: A Content:") is None  # empty content
    nine = "\n".join(f"- Topic: T{i} Content: c{i}" for i in range(9))
    assert parse_reformat(nine) is None  # over the 8-entry cap
    assert len(parse_reformat(nine, max_entries=None)) == 9
    row = assemble_reformat(text)
    assert row is not None
    assert (
        row.text
        == "Topic: Floods\nContent: The river floods in spring.\n\nTopic: Crops\nContent: Rice,\nmostly."
    )
    assert _spans(row) == [("reformat", row.text)]
    assert assemble_reformat("no entries") is None


def test_make_row_lineage_columns():
    row = make_row(
        assemble_real(DOC),
        source_id="d1",
        method="real",
        num_generations=0,
        generator="",
        prompt_id="",
        prompt_hash="",
        seed=0,
    )
    assert row["segments"] == [{"role": "real", "start": 0, "end": len(DOC)}]
    assert set(row) == {
        "text",
        "source_id",
        "method",
        "num_generations",
        "row_generations",
        "segments",
        "generator",
        "prompt_id",
        "prompt_hash",
        "seed",
    }
