"""hf-megadocs generate on the command line (hf_megadocs.generation.cli): exit codes,
the summary table, kill -9 and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hf_megadocs.generation.backends import BackendConfig
from hf_megadocs.generation.backends.dummy import DummyBackend
from hf_megadocs.generation.cli import main as cli_main
from hf_megadocs.generation.generate import generate
from hf_megadocs.generation.prompts import get_prompt
from hf_megadocs.generation.requests import build_requests
from hf_megadocs.generation.sources import SourceConfig, load_source
from hf_megadocs.generation.store import GenerationStore
from hf_megadocs.records import SamplingConfig
from tests.generation.test_fill import stored_line_keys
from tests.generation.test_generate import config

REPO = Path(__file__).resolve().parents[2]


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
        "hf_megadocs.generation.cli",
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
        "--split.validation_fraction",
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
    from hf_megadocs.generation.backends import generator_info

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
            "--split.validation_fraction", "0"]  # fmt: skip
    store_dir = tmp_path / "store"
    _kill_and_resume(store_dir, args, expected_keys=expected, kill_after_lines=2, timeout_s=300)
    generations = GenerationStore(store_dir).get_many(expected).values()
    assert {g.backend for g in generations} == {"transformers"}
    assert all(g.completion_tokens > 0 and g.raw_text for g in generations)
