"""Tests for the config-name grammar."""

from __future__ import annotations

import pytest

from hf_megadocs.corpora.names import (
    COMMON_G,
    GENERATED_METHODS,
    common_config_names,
    format_config_name,
    parse_config_name,
)


@pytest.mark.parametrize(
    ("name", "method", "g", "prompt"),
    [
        ("real", "real", 0, None),
        ("simple_g32", "simple", 32, "wiki"),
        ("stitched_g1", "stitched", 1, "wiki"),
        ("stitched_real_first_g8", "stitched_real_first", 8, "wiki"),
        ("stitched_no_real_g3", "stitched_no_real", 3, "wiki"),
        ("latent_g7", "latent", 7, "rationale"),
        ("reformat_g2", "reformat", 2, "reformat"),
        ("qa_g1000", "qa", 1000, "qa"),
        ("textbook_g5", "textbook", 5, "textbook"),
    ],
)
def test_parse_valid_names(name, method, g, prompt):
    parsed = parse_config_name(name)
    assert (parsed.method, parsed.num_generations, parsed.prompt_id) == (method, g, prompt)
    assert parsed.name == name


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("stitched", "stitched_g8"),
        ("stitched_g0", "G must be >= 1"),
        ("stitched_g08", "zero-padded"),
        ("stitched_g-1", "config names are"),
        ("megadoc_g4", "config names are"),
        ("real_g4", "config names are"),
        ("Stitched_g4", "config names are"),
        ("", "config names are"),
    ],
)
def test_bad_names_quote_the_grammar(name, match):
    with pytest.raises(ValueError, match=match):
        parse_config_name(name)


def test_common_names_cover_every_method_and_g():
    names = common_config_names()
    assert names[0] == "real"
    assert len(names) == 1 + len(GENERATED_METHODS) * len(COMMON_G)
    assert all(parse_config_name(n).name == n for n in names)
    with pytest.raises(ValueError):
        format_config_name("real", 2)
    with pytest.raises(ValueError):
        format_config_name("latent", 0)


def test_round_suffix_names_a_model_aware_round():
    parsed = parse_config_name("reformat_g1_r2")
    assert (parsed.method, parsed.num_generations, parsed.round) == ("reformat", 1, 2)
    assert parsed.name == "reformat_g1_r2" and parsed.prompt_id == "reformat"
    assert parse_config_name("rephrase_g4").prompt_id == "clean"
    assert parse_config_name("stitched_g8").round == 0
    for bad in ("reformat_g1_r0", "reformat_g1_r02", "real_r1", "reformat_r1"):
        with pytest.raises(ValueError):
            parse_config_name(bad)


def test_a_round_corpus_needs_the_rounds_adapter():
    from hf_megadocs.corpora.config import MegadocsConfig

    with pytest.raises(ValueError, match="backend.lora_path"):
        MegadocsConfig(name="rephrase_g2_r1")
