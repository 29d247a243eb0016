"""MegadocsConfig and its flat knobs (hf_megadocs.corpora.config): one home per setting."""

from __future__ import annotations

import pytest

from hf_megadocs.corpora.config import KNOB_HOMES, config_from_knobs, knob_changes_output
from hf_megadocs.generation.backends import BackendConfig


def test_each_flat_knob_lands_in_its_one_home():
    config = config_from_knobs(
        "latent_g3",
        source="docs.jsonl",
        max_docs=5,
        source_split="dev",
        generator="my/model",
        generator_revision="abc",
        max_new_tokens=64,
        seed=7,
        split_seed=9,
        validation_fraction=0.1,
        kv_cache_memory_gb=0.5,
        latent_split_rule="sentences",
    )
    assert (config.method, config.num_generations, config.prompt_id) == ("latent", 3, "rationale")
    assert (config.source.source, config.source.max_docs, config.source.split) == (
        "docs.jsonl",
        5,
        "dev",
    )
    assert (config.backend.generator, config.backend.revision) == ("my/model", "abc")
    assert (config.sampling.max_new_tokens, config.sampling.seed) == (64, 7)
    assert (config.split.seed, config.split.validation_fraction) == (9, 0.1)
    assert config.backend.kv_cache_memory_gb == 0.5 and config.latent_split_rule == "sentences"
    whole = config_from_knobs("stitched_g2", backend=BackendConfig(backend="dummy"))
    assert whole.backend.backend == "dummy"


def test_the_generate_job_and_the_builder_share_their_defaults():
    from hf_megadocs.generation.generate import GenerationConfig

    job, corpus = GenerationConfig(num_shards=1, shard_index=0), config_from_knobs("simple_g4")
    for section in ("source", "split", "sampling", "backend"):
        assert getattr(job, section) == getattr(corpus, section), section
    assert job.store_dir == corpus.store_dir and job.context_policy == corpus.context_policy


def test_errors_name_the_knob():
    with pytest.raises(ValueError, match=r"temperature=-1.0 is not allowed"):
        config_from_knobs("stitched_g2", temperature=-1.0)
    with pytest.raises(ValueError, match=r"Unknown hf_megadocs config knob\(s\) \['max_doc'\]"):
        config_from_knobs("stitched_g2", max_doc=3)
    with pytest.raises(ValueError, match="'chunk' is for hf-megadocs generate"):
        config_from_knobs("stitched_g2", context_policy="chunk")


def test_every_knob_is_marked_as_changing_rows_or_not():
    assert {k for k in KNOB_HOMES if not knob_changes_output(k)} >= {
        "batch_size",
        "kv_cache_memory_gb",
        "gpu_memory_utilization",
        "cpu_threads",
        "dtype",
        "tensor_parallel_size",
        "enforce_eager",
    }
    assert all(
        knob_changes_output(k) for k in ("generator", "max_new_tokens", "max_docs", "separator")
    )


def test_real_depends_only_on_the_source_and_the_split():
    base = config_from_knobs("real").fingerprint()
    assert config_from_knobs("real", temperature=0.3, generator="x").fingerprint() == base
    assert config_from_knobs("real", max_docs=3).fingerprint() != base
    assert config_from_knobs("real", split_seed=2).fingerprint() != base
