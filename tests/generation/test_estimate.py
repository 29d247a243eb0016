"""The estimate before every generation (hf_megadocs.generation.estimate): requests, prompt
and output tokens, rate (user > recorded runs > calibration), time, device-hours, disk; and
``estimate_only``, which generates nothing beyond a stored, reused calibration batch."""

from __future__ import annotations

import json
import logging

import pytest

from hf_megadocs.corpora.load import load_corpus, shared_backend
from hf_megadocs.generation.backends.dummy import DummyBackend
from hf_megadocs.generation.calibration import EstimateOnlyStop
from hf_megadocs.generation.estimate_figures import GenerationEstimate, PromptEstimate
from hf_megadocs.generation.generate import EstimateSummary, generate
from hf_megadocs.generation.hardware import current_hardware
from hf_megadocs.generation.prompts import get_prompt
from hf_megadocs.generation.requests import build_requests
from hf_megadocs.generation.sources import SourceConfig, load_source
from hf_megadocs.generation.store import GenerationStore
from hf_megadocs.records import SamplingConfig
from tests.generation.test_generate import config


def _store_state(root) -> tuple[int, int]:
    store = GenerationStore(root)
    return len(store), len(store.runs())


def test_estimate_uses_finished_generations_of_the_store_else_the_bound(tmp_path):
    wide = SamplingConfig(max_new_tokens=1000)  # the dummy stops early: its mean tells more
    rate = {"estimate_only": True, "expected_tokens_per_s": 8.0}
    empty = generate(config(tmp_path, sampling=wide, **rate))
    assert isinstance(empty, EstimateSummary) and empty.generated == 0
    estimate = empty.estimate
    assert (estimate.requests, estimate.missing) == (24, 24)
    # nothing stored yet: max_new_tokens per request, said to be an upper bound
    assert estimate.output_tokens == 24 * 1000 and estimate.prompts[0].upper_bound
    assert "upper bound" in estimate.as_text()
    assert estimate.wall_s == pytest.approx(24 * 1000 / 8.0)
    # the generator's tokenizer (the dummy's counts words) on every prompt sent
    requests = build_requests(
        list(load_source(SourceConfig(source="embedded", max_docs=6))),
        get_prompt("wiki"),
        num_samples=4,
        backend=DummyBackend(),
        sampling=wide,
    ).requests
    words = sum(len(m["content"].split()) for r in requests for m in r.messages)
    assert estimate.prompt_tokens == words
    assert _store_state(tmp_path) == (0, 0)  # a given rate: nothing generated, no run

    done = generate(config(tmp_path, sampling=wide, num_samples=2))
    mean = done.completion_tokens / done.generated
    assert mean < 1000
    more = generate(config(tmp_path, sampling=wide, **rate)).estimate
    assert (more.requests, more.missing) == (24, 12)
    assert more.prompts[0].output_tokens_per_request == pytest.approx(mean)
    assert more.output_tokens == round(12 * mean) and not more.prompts[0].upper_bound
    assert more.wall_s == pytest.approx(12 * mean / 8.0, rel=0.01)
    assert "measured on 12 stored records" in more.prompts[0].bytes_from
    store = GenerationStore(tmp_path)
    line_bytes = sum(p.stat().st_size for p in (tmp_path / "generations").glob("*.jsonl"))
    assert more.disk_bytes == pytest.approx(12 * (line_bytes / len(store) + 40), rel=0.01)


def test_rate_precedence_user_then_recorded_runs_then_calibration(tmp_path):
    generate(config(tmp_path, num_samples=1))  # a recorded run of this generator here
    run = GenerationStore(tmp_path).runs()[0]
    assert run["hardware"] == current_hardware().label
    recorded = run["summary"]["completion_tokens"] / run["summary"]["wall_s"]

    given = generate(config(tmp_path, estimate_only=True, expected_tokens_per_s=3.5)).estimate
    assert given.tokens_per_s == 3.5 and "expected_tokens_per_s" in given.rate_from
    from_runs = generate(config(tmp_path, estimate_only=True)).estimate
    assert from_runs.tokens_per_s == pytest.approx(recorded)
    assert "recorded run" in from_runs.rate_from and from_runs.calibrated == 0
    assert _store_state(tmp_path) == (6, 1)  # neither generated anything

    # a run on other hardware says nothing about this one: calibrate instead
    path = next((tmp_path / "runs").glob("*.json"))
    path.write_text(json.dumps({**run, "hardware": "1x some other GPU"}))
    # by default a calibration batch is one of the run's batches (batch_size=5 here)
    calibrated = generate(config(tmp_path, estimate_only=True)).estimate
    assert calibrated.calibrated == 5 and "calibration batch of 5" in calibrated.rate_from
    assert calibrated.missing == 24 - 6 - 5
    assert _store_state(tmp_path) == (11, 2)


def test_estimate_only_generates_only_a_calibration_batch_that_is_reused(tmp_path):
    backend = DummyBackend()
    summary = generate(config(tmp_path, estimate_only=True, calibration_requests=5), backend)
    assert backend.calls == [5] and summary.generated == 5
    calibration = GenerationStore(tmp_path).runs()[0]
    assert calibration["config"]["calibration"] is True
    assert calibration["hardware"] == current_hardware().label
    again = DummyBackend()  # the calibration is now a recorded run: no second calibration
    assert generate(config(tmp_path, estimate_only=True), again).estimate.missing == 19
    assert again.calls == [] and _store_state(tmp_path) == (5, 1)
    full = DummyBackend()
    summary = generate(config(tmp_path), full)
    assert sum(full.calls) == 19 and summary.cached == 5 and summary.generated == 19


def test_a_run_without_a_rate_logs_the_rate_it_measures(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="hf_megadocs.generation.estimate"):
        generate(config(tmp_path, calibration_requests=10))
    text = caplog.text
    assert "requests missing from the store: 24" in text and "rate: unknown" in text
    assert "measured on the first 10 generations" in text


def test_engine_start_is_recorded_and_estimated_only_where_the_job_starts_one(tmp_path, caplog):
    # handed a running engine: nothing was started here, so no start-up is recorded
    generate(config(tmp_path, num_samples=1), DummyBackend())
    path = next((tmp_path / "runs").glob("*.json"))
    run = json.loads(path.read_text())
    assert run["summary"]["startup_s"] == 0.0
    # as if that run had started its engine in 30 s
    path.write_text(json.dumps({**run, "summary": {**run["summary"], "startup_s": 30.0}}))
    rate = {"expected_tokens_per_s": 8.0}
    assert generate(config(tmp_path, estimate_only=True, **rate)).estimate.startup_s == 30.0
    logger = "hf_megadocs.generation.estimate"
    with caplog.at_level(logging.INFO, logger=logger):  # the job starts the engine itself
        generate(config(tmp_path, num_samples=2, **rate))
    assert "engine start 30 s + generation" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=logger):  # a started engine is handed over
        generate(config(tmp_path, num_samples=3, **rate), DummyBackend())
    assert "requests missing from the store: 6" in caplog.text
    assert "engine start" not in caplog.text
    # the run that started one recorded its own (the dummy's: tiny) start; the other none
    starts = sorted(r["summary"]["startup_s"] for r in GenerationStore(tmp_path).runs())
    assert len(starts) == 3 and starts[0] == 0.0 and 0 < starts[1] < 30.0 and starts[2] == 30.0


def test_builds_and_their_shared_engine_stop_after_the_estimate(tmp_path):
    knobs = {
        "backend": "dummy",
        "max_docs": 8,
        "max_new_tokens": 8,
        "validation_fraction": 0.25,
        "store_dir": str(tmp_path / "store"),
        "estimate_only": True,
        "expected_tokens_per_s": 100.0,
    }
    with pytest.raises(EstimateOnlyStop) as stopped:
        shared_backend(["real", "simple_g2", "stitched_g2", "latent_g2"], **knobs)
    union = stopped.value.estimate
    assert {p.prompt_id for p in union.prompts} == {"wiki", "rationale"}
    train_docs = 6  # 8 documents, 2 held out for validation
    wiki = next(p for p in union.prompts if p.prompt_id == "wiki")
    assert wiki.missing == 2 * train_docs  # simple and stitched share their requests
    with pytest.raises(EstimateOnlyStop, match="estimate_only is set"):
        load_corpus("simple_g2", cache_dir=str(tmp_path / "hf_cache"), **knobs)
    assert _store_state(tmp_path / "store") == (0, 0)

    # no rate: one calibration batch across both prompts, each prompt's output length kept
    del knobs["expected_tokens_per_s"]
    names = ["simple_g2", "latent_g2"]
    with pytest.raises(EstimateOnlyStop) as stopped:
        shared_backend(names, calibration_requests=4, **knobs)
    calibrated = stopped.value.estimate
    assert calibrated.calibrated == 4 and "calibration batch of 4" in calibrated.rate_from
    assert not any(p.upper_bound for p in calibrated.prompts)
    assert _store_state(tmp_path / "store") == (4, 1)
    with pytest.raises(EstimateOnlyStop) as stopped:  # the calibration is reused
        shared_backend(names, calibration_requests=4, **knobs)
    assert stopped.value.estimate.missing == calibrated.missing
    assert "recorded run" in stopped.value.estimate.rate_from
    assert _store_state(tmp_path / "store") == (4, 1)


def test_the_papers_g32_cost():
    """≈3.7B output tokens at 6.4k tok/s on one H100: ≈160 H100-hours."""
    share = PromptEstimate("wiki", "0" * 16, 1024, 3_700_000, 0, 1000.0, "given", 1.0, "")
    estimate = GenerationEstimate(
        "an 8B model", "1x NVIDIA H100", 1, "gpu", prompts=[share], tokens_per_s=6400.0
    )
    assert estimate.output_tokens == 3_700_000_000
    assert estimate.device_hours == pytest.approx(160.6, abs=0.1)
    assert "160.59 GPU-hours" in estimate.as_text()


def test_study_build_only_with_estimate_only_prints_it_and_generates_nothing(tmp_path, capsys):
    from hf_megadocs.jobs.study import execute_study
    from tests.jobs.test_study import small

    store = tmp_path / "store"
    kwargs = {"max_docs": 40, "backend": "dummy", "max_new_tokens": 8, "store_dir": str(store)}
    config = small(
        tmp_path,
        overrides=["--data.corpus_kwargs", json.dumps(kwargs)],
        build_only=True,
        estimate_only=True,
        expected_tokens_per_s=50.0,
    )
    assert execute_study(config) == 0
    printed = capsys.readouterr().out
    assert "requests missing from the store" in printed and "50.0 generated tok/s" in printed
    assert _store_state(store) == (0, 0)
    assert not (tmp_path / "study" / "corpora.json").exists()
