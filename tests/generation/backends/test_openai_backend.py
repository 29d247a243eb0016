"""The OpenAI-compatible backend against a scripted local HTTP server and a real `vllm serve`."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

import pytest

from hf_megadocs.generation.backends import BackendConfig, GenerationBackend, openai_backend
from hf_megadocs.generation.backends.openai_backend import OpenAIBackend
from hf_megadocs.records import GenerationRequest, SamplingConfig
from tests.conftest import free_port


def make_request(text: str, sample_index: int = 0, max_new_tokens: int = 16) -> GenerationRequest:
    return GenerationRequest(
        source_id=f"doc-{abs(hash(text)) % 1000}",
        prompt_id="test-rephrase",
        prompt_hash="0",
        generator="test",
        generator_revision="test",
        sampling=SamplingConfig(max_new_tokens=max_new_tokens, seed=3),
        sample_index=sample_index,
        messages=({"role": "user", "content": f"Rephrase: {text}"},),
    )


class ScriptedServer:
    """A tiny OpenAI-style server: answers POSTs with the scripted status codes in order."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.posts: list[tuple[dict, dict]] = []  # (headers, body) of each chat request
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def _send(self, status: int, body: dict) -> None:
                blob = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(blob)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(blob)

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    self._send(200, {"data": [{"id": "scripted-model", "max_model_len": 2048}]})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": "not found"})
                    return
                scripted.posts.append((dict(self.headers), body))
                status = scripted.statuses.pop(0) if scripted.statuses else 200
                if status != 200:
                    self._send(status, {"error": f"scripted {status}"})
                    return
                self._send(
                    200,
                    {
                        "choices": [
                            {
                                "message": {"role": "assistant", "content": f"seed={body['seed']}"},
                                "finish_reason": "length",
                            }
                        ],
                        "usage": {"prompt_tokens": 11, "completion_tokens": body["max_tokens"]},
                    },
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch) -> None:
    monkeypatch.setattr(openai_backend, "RETRY_BASE_S", 0.01)


def test_retries_429_then_succeeds_with_key_and_seed(monkeypatch) -> None:
    monkeypatch.setenv("HF_MEGADOCS_TEST_KEY", "sk-test-secret")
    request = make_request("a short text")
    with ScriptedServer([429, 200]) as server:
        backend = OpenAIBackend(
            BackendConfig(
                backend="openai", base_url=server.base_url, api_key_env="HF_MEGADOCS_TEST_KEY"
            )
        )
        assert isinstance(backend, GenerationBackend)
        assert backend.model == "scripted-model"
        assert backend.max_context_tokens == 2048
        [output] = backend.generate([request])
    assert len(server.posts) == 2
    headers, body = server.posts[-1]
    assert headers["Authorization"] == "Bearer sk-test-secret"
    assert body["seed"] == request.sample_seed and body["n"] == 1 and body["max_tokens"] == 16
    assert output.text == f"seed={request.sample_seed}"
    assert (output.prompt_tokens, output.completion_tokens, output.finish_reason) == (
        11,
        16,
        "length",
    )


def test_gives_up_after_max_retries_as_error_keeping_order() -> None:
    requests = [make_request("first"), make_request("second")]
    # Concurrency 1 makes the order of scripted answers deterministic: the first request
    # gets three 503s (1 try + 2 retries) and fails, the second succeeds.
    with ScriptedServer([503, 503, 503]) as server:
        backend = OpenAIBackend(
            BackendConfig(
                backend="openai", base_url=server.base_url, max_retries=2, max_concurrency=1
            )
        )
        outputs = backend.generate(requests)
    assert len(server.posts) == 4
    assert outputs[0].finish_reason == "error" and "503" in outputs[0].text
    assert outputs[1].text == f"seed={requests[1].sample_seed}"


def test_client_error_is_not_retried() -> None:
    with ScriptedServer([400]) as server:
        backend = OpenAIBackend(BackendConfig(backend="openai", base_url=server.base_url))
        [output] = backend.generate([make_request("too long, say")])
    assert len(server.posts) == 1
    assert output.finish_reason == "error" and "400" in output.text


def test_unreachable_server_names_url_and_fix() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ConnectionError, match=rf"{url}/models.*vllm serve"):
        OpenAIBackend(BackendConfig(backend="openai", base_url=url))


def test_unserved_generator_is_refused() -> None:
    with ScriptedServer([]) as server, pytest.raises(ValueError, match="scripted-model"):
        OpenAIBackend(BackendConfig(backend="openai", base_url=server.base_url, generator="other"))


@pytest.mark.slow
def test_real_vllm_server(vllm_server: str) -> None:
    from hf_megadocs.generation.embedded import EMBEDDED_GENERATOR_NAME

    backend = OpenAIBackend(
        BackendConfig(backend="openai", base_url=vllm_server, max_concurrency=4)
    )
    # The embedded generator gets the same store identity as with the in-process backends.
    assert backend.generator == EMBEDDED_GENERATOR_NAME
    assert backend.max_context_tokens == 1024
    assert backend.count_tokens("hello world") == 2
    requests = [
        make_request(text, i)
        for text in ("Cats sleep a lot.", "Rain fell all day.")
        for i in range(2)
    ]
    outputs = backend.generate(requests)
    again = backend.generate(requests[:1])
    assert len(outputs) == 4
    for output in outputs:
        assert output.finish_reason in {"stop", "length"} and output.text.strip()
        assert 0 < output.completion_tokens <= 16 and output.prompt_tokens > 5
    assert again[0].text == outputs[0].text  # same per-request seed, same sample
    assert len({o.text for o in outputs}) == 4
    backend.close()
