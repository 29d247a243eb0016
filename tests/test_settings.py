"""The output/process mark on config fields (hf_megadocs.settings)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hf_megadocs.settings import flat_settings, output_settings, process_setting


@dataclass(kw_only=True)
class Engine:
    model: str = "m"
    threads: int = process_setting(2)


@dataclass(kw_only=True)
class Job:
    engine: Engine = field(default_factory=Engine)
    batch_size: int = process_setting(8)
    seed: int = 0


def test_flat_settings_walk_nested_configs():
    assert flat_settings(Job()) == {
        "engine.model": "m",
        "engine.threads": 2,
        "batch_size": 8,
        "seed": 0,
    }


def test_output_settings_leave_out_exactly_the_process_settings():
    assert output_settings(Job()) == {"engine.model": "m", "seed": 0}
    assert output_settings(Job(batch_size=64, engine=Engine(threads=16))) == output_settings(Job())
    assert output_settings(Job(seed=1)) != output_settings(Job())


def test_the_real_configs_mark_engine_knobs_as_process_settings():
    from hf_megadocs.corpora.config import config_from_knobs

    base = config_from_knobs("stitched_g2").fingerprint()
    how = {"kv_cache_memory_gb": 1.0, "cpu_threads": 1, "batch_size": 3, "dtype": "float32"}
    assert config_from_knobs("stitched_g2", **how).fingerprint() == base
    assert config_from_knobs("stitched_g2", max_new_tokens=7).fingerprint() != base
