from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from hf_megadocs.backends import BackendConfig
from hf_megadocs.backends.dummy import DummyBackend
from hf_megadocs.generate import GenerationConfig, default_shard, generate, run_requests, shard_of
from hf_megadocs.generate_cli import main as cli_main
from hf_megadocs.prompts import get_prompt
from hf_megadocs.records import RawOutput, SamplingConfig
from hf_megadocs.requests import build_requests
from hf_megadocs.sources import SourceConfig, load_source
from hf_megadocs.splits import split_of
from hf_megadocs.store import GenerationStore

REPO = Path(__file__).resolve().parents[1]


def config(store_dir, **overrides) -> GenerationConfig:
    values = dict(
        source=SourceConfig(source="embedded", max_docs=6),
        num_samples=4,
        sampling=SamplingConfig(max_new_tokens=16),
        backend=BackendConfig(backend="dummy"),
        store_dir=str(store_dir),
        batch_size=5,
        num_shards=1,
        shard_index=0,
    )
    values.update(overrides)
    return GenerationConfig(**values)


def stored_line_keys(store_dir) -> Counter:
    """Every valid record key in every store file, counted (what a reader would see twice)."""
    keys: Counter = Counter()
    for path in Path(store_dir, "generations").glob("*.jsonl"):
        for line in path.read_bytes().split(b"\n"):
            try:
                keys[json.loads(line)["key"]] += 1
            except ValueError:
                pass
    return keys


def test_smaller_g_after_larger_g_sends_no_request(tmp_path):
    first = DummyBackend()
    summary = generate(config(tmp_path), backend=first)
    assert summary.generated == summary.requests == 24 and summary.cached == 0
    assert first.calls == [5, 5, 5, 5, 4]
    again = DummyBackend()
    summary = generate(config(tmp_path, num_samples=2), backend=again)
    assert again.calls == []
    assert summary.cached == summary.requests == 12 and summary.generated == 0
    assert "| cached (already in store) | 12 |" in summary.as_table()
    store = GenerationStore(tmp_path)
    assert len(store) == 24 and [p["prompt_id"] for p in store.prompts()] == ["wiki"]
    assert len(store.runs()) == 2 and store.runs()[0]["summary"]["generated"] == 24


def test_backend_factory_is_called_only_when_something_is_missing(
    tmp_path, sample_docs, small_sampling
):
    backend = DummyBackend()
    requests = build_requests(
        sample_docs, get_prompt("qa"), num_samples=2, backend=backend, sampling=small_sampling
    ).requests
    store = GenerationStore(tmp_path)
    made = []
    workloads = []

    def factory(workload):
        workloads.append(workload)
        made.append(DummyBackend())
        return made[-1]

    run_requests(requests[:4], factory, store, batch_size=3)
    assert len(made) == 1 and made[0].calls == [3, 1]
    # The factory sees exactly the missing requests, so an engine can be sized for them.
    assert list(workloads[0].requests) == requests[:4] and workloads[0].batch_size == 3
    summary = run_requests(requests[:4] + requests[:2], factory, store)
    assert len(made) == 1 and summary.duplicate_requests == 2 and summary.cached == 4
    run_requests(requests, factory, store, batch_size=100)
    assert len(made) == 2 and made[1].calls == [8]
    assert list(workloads[1].requests) == requests[4:]


class FlakyBackend(DummyBackend):
    """Fails odd sample indices on its first call, as a server returning 5xx would."""

    def generate(self, requests):
        outputs = super().generate(requests)
        if len(self.calls) > 1:
            return outputs
        return [
            RawOutput("HTTP 503", 0, 0, "error") if r.sample_index % 2 else o
            for r, o in zip(requests, outputs, strict=True)
        ]


def test_errors_are_counted_not_stored_and_retried(tmp_path, sample_docs, small_sampling):
    backend = FlakyBackend()
    requests = build_requests(
        sample_docs, get_prompt("wiki"), num_samples=2, backend=backend, sampling=small_sampling
    ).requests
    store = GenerationStore(tmp_path)
    summary = run_requests(requests, backend, store, batch_size=100)
    assert summary.errors == 6 and summary.generated == 6 and len(store) == 6
    assert all(store.get(r.key) is None for r in requests if r.sample_index % 2)
    summary = run_requests(requests, backend, store, batch_size=100)
    assert summary.cached == 6 and summary.generated == 6 and summary.errors == 0
    assert backend.calls == [12, 6] and len(store) == 12


def test_three_shards_cover_every_key_exactly_once(tmp_path):
    totals = Counter()
    for index in range(3):
        summary = generate(
            config(tmp_path, num_shards=3, shard_index=index), backend=DummyBackend()
        )
        totals["requests"] += summary.requests
        totals["generated"] += summary.generated
        assert summary.requests + summary.other_shards == 24
    expected = {
        r.key
        for r in build_requests(
            list(load_source(SourceConfig(source="embedded", max_docs=6))),
            get_prompt("wiki"),
            num_samples=4,
            backend=DummyBackend(),
            sampling=SamplingConfig(max_new_tokens=16),
        ).requests
    }
    assert totals == {"requests": 24, "generated": 24}
    assert len({shard_of(k, 3) for k in expected}) == 3
    assert set(stored_line_keys(tmp_path)) == expected
    assert set(stored_line_keys(tmp_path).values()) == {1}
    files = sorted(p.name for p in (tmp_path / "generations").iterdir())
    assert [f.split("-")[1] for f in files] == ["0", "1", "2"]


def test_validation_docs_are_never_generated(tmp_path):
    summary = generate(
        config(
            tmp_path,
            source=SourceConfig(source="embedded", max_docs=40),
            num_samples=1,
            validation_fraction=0.25,
        ),
        backend=DummyBackend(),
    )
    held_out = summary.skipped["validation_split"]
    assert 2 <= held_out <= 20 and summary.requests == 40 - held_out
    store = GenerationStore(tmp_path)
    source_ids = {g.source_id for g in store.get_many(store.keys()).values()}
    assert (
        all(split_of(s, 0.25, 0) == "train" for s in source_ids)
        and len(source_ids) == 40 - held_out
    )


def test_config_errors_name_the_field(monkeypatch):
    with pytest.raises(ValueError, match="prompt_id='summary' is unknown; use one of wiki"):
        GenerationConfig(prompt_id="summary")
    with pytest.raises(ValueError, match="latent_g"):
        GenerationConfig(prompt_id="rationale")
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        GenerationConfig(num_samples=0)
    with pytest.raises(ValueError, match="shard_index and num_shards go together"):
        GenerationConfig(num_shards=2)
    with pytest.raises(ValueError, match="shard_index must be in"):
        GenerationConfig(num_shards=2, shard_index=2)
    with pytest.raises(ValueError, match="validation_fraction"):
        GenerationConfig(validation_fraction=1.0)
    for name in ("RANK", "WORLD_SIZE", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"):
        monkeypatch.delenv(name, raising=False)
    assert default_shard() == (0, 1)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "5")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    assert default_shard() == (1, 3)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    cfg = GenerationConfig()
    assert (cfg.shard_index, cfg.num_shards) == (2, 4)


def test_bad_input_fails_before_any_generation(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"body": "x"}\n', encoding="utf-8")
    backend = DummyBackend()
    with pytest.raises(ValueError, match="available columns"):
        generate(config(tmp_path / "s", source=SourceConfig(source=str(bad))), backend=backend)
    assert backend.calls == [] and not (tmp_path / "s").exists()
    status = cli_main(
        [
            "--source.source",
            str(bad),
            "--backend.backend",
            "dummy",
            "--store_dir",
            str(tmp_path / "s"),
        ]
    )
    assert status == 2 and "available columns: ['body']" in capsys.readouterr().err
    status = cli_main(
        ["--backend.backend", "dummy", "--num_samples", "0", "--store_dir", str(tmp_path / "s")]
    )
    assert status == 2 and "num_samples" in capsys.readouterr().err


def test_cli_prints_summary(tmp_path, capsys):
    argv = [
        "--backend.backend",
        "dummy",
        "--source.max_docs",
        "3",
        "--num_samples",
        "2",
        "--sampling.max_new_tokens",
        "8",
        "--store_dir",
        str(tmp_path),
        "--prompt_id",
        "easy",
        "--num_shards",
        "1",
        "--shard_index",
        "0",
    ]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "| generated | 6 |" in out and "| backend | dummy |" in out
    assert cli_main(argv) == 0
    assert "| cached (already in store) | 6 |" in capsys.readouterr().out


def _kill_and_resume(store_dir, extra_args, *, expected_keys, kill_after_lines, timeout_s):
    """Start the CLI, SIGKILL it once ``kill_after_lines`` records are stored, rerun it."""
    argv = [
        sys.executable,
        "-m",
        "hf_megadocs.generate_cli",
        "--store_dir",
        str(store_dir),
        "--num_shards",
        "1",
        "--shard_index",
        "0",
        *extra_args,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + timeout_s
    try:
        while sum(stored_line_keys(store_dir).values()) < kill_after_lines:
            assert process.poll() is None, process.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the first run never stored anything"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    stored_before = set(stored_line_keys(store_dir))
    assert kill_after_lines <= len(stored_before) < len(expected_keys)
    rerun = subprocess.run(
        argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s
    )
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert f"| cached (already in store) | {len(stored_before)} |" in rerun.stdout
    assert f"| generated | {len(expected_keys) - len(stored_before)} |" in rerun.stdout
    counts = stored_line_keys(store_dir)
    assert set(counts) == expected_keys and set(counts.values()) == {1}
    assert len(GenerationStore(store_dir)) == len(expected_keys)


def test_kill_and_resume_dummy(tmp_path):
    args = [
        "--backend.backend",
        "dummy",
        "--backend.dummy_delay_s",
        "0.05",
        "--source.max_docs",
        "20",
        "--num_samples",
        "2",
        "--sampling.max_new_tokens",
        "8",
        "--batch_size",
        "4",
        "--validation_fraction",
        "0",
    ]
    docs = list(load_source(SourceConfig(source="embedded", max_docs=20)))
    expected = {
        r.key
        for r in build_requests(
            docs,
            get_prompt("wiki"),
            num_samples=2,
            backend=DummyBackend(),
            sampling=SamplingConfig(max_new_tokens=8),
        ).requests
    }
    _kill_and_resume(tmp_path, args, expected_keys=expected, kill_after_lines=8, timeout_s=120)


@pytest.mark.slow
def test_kill_and_resume_transformers_embedded_generator(tmp_path, sample_docs):
    from hf_megadocs.requests import generator_info

    source = tmp_path / "docs.jsonl"  # short documents keep CPU prefill cheap
    source.write_text(
        "".join(json.dumps({"id": d.source_id, "text": d.text}) + "\n" for d in sample_docs),
        encoding="utf-8",
    )
    info = generator_info(BackendConfig(backend="transformers"))
    expected = {
        r.key
        for r in build_requests(
            sample_docs,
            get_prompt("wiki"),
            num_samples=1,
            backend=info,
            sampling=SamplingConfig(max_new_tokens=4),
        ).requests
    }
    args = ["--backend.backend", "transformers", "--source.source", str(source), "--source.id_column", "id",
            "--num_samples", "1", "--sampling.max_new_tokens", "4", "--batch_size", "2",
            "--validation_fraction", "0"]  # fmt: skip
    store_dir = tmp_path / "store"
    _kill_and_resume(store_dir, args, expected_keys=expected, kill_after_lines=2, timeout_s=300)
    generations = GenerationStore(store_dir).get_many(expected).values()
    assert {g.backend for g in generations} == {"transformers"}
    assert all(g.completion_tokens > 0 and g.raw_text for g in generations)
