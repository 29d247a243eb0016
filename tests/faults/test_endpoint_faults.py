"""Fault: an OpenAI-compatible endpoint that throttles, fails, resets and hangs.

A loopback proxy in front of a real `vllm serve` injects a fixed plan of faults per
request (429, 500, connection reset, a reply slower than the client's timeout) before
forwarding it. Every request must then complete exactly once (the upstream sees each one
once, the store holds each once), and the run's summary must count every retry by cause.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from hf_megadocs.generation.backends import BackendConfig
from hf_megadocs.generation.generate import GenerationConfig, generate
from hf_megadocs.generation.sources import SourceConfig
from hf_megadocs.generation.splits import SplitConfig
from hf_megadocs.generation.store import GenerationStore
from hf_megadocs.records import SamplingConfig
from tests.conftest import free_port

pytestmark = pytest.mark.slow
CLIENT_TIMEOUT_S = 20.0
FAULT_PLANS = [[], ["429"], ["500", "reset"], ["timeout"], ["reset", "429", "500"]]
"""Faults each new request meets on its first attempts, in turn; then it is forwarded."""
CAUSE = {"429": "429", "500": "5xx", "reset": "connection", "timeout": "timeout"}


class FaultProxy:
    """Forwards chat requests to ``upstream`` after the faults its plan gives them."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.plans: dict[str, list[str]] = {}
        self.injected: Counter[str] = Counter()
        self.forwarded: Counter[str] = Counter()
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str] = {}) -> None:
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                reply = httpx.get(proxy.upstream + self.path.removeprefix("/v1"), timeout=30)
                self._send(reply.status_code, reply.content)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = json.loads(body)
                key = json.dumps([request["messages"], request["seed"]], sort_keys=True)
                with proxy.lock:
                    plan = proxy.plans.setdefault(
                        key, list(FAULT_PLANS[len(proxy.plans) % len(FAULT_PLANS)])
                    )
                    fault = plan.pop(0) if plan else None
                    if fault:
                        proxy.injected[fault] += 1
                if fault == "429":
                    self._send(429, b'{"error": "slow down"}', {"Retry-After": "0"})
                elif fault == "500":
                    self._send(500, b'{"error": "injected"}')
                elif fault == "reset":  # RST instead of an answer
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.connection.close()
                    self.close_connection = True
                elif fault == "timeout":  # answer after the client gave up
                    time.sleep(CLIENT_TIMEOUT_S + 1)
                    self.close_connection = True
                else:
                    reply = httpx.post(
                        proxy.upstream + "/chat/completions", content=body, timeout=300,
                        headers={"Content-Type": "application/json"},
                    )  # fmt: skip
                    with proxy.lock:
                        proxy.forwarded[key] += 1
                    self._send(reply.status_code, reply.content)

            def finish(self) -> None:
                try:
                    super().finish()
                except OSError:  # the socket a "reset" closed
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_every_request_completes_once_through_429_500_resets_and_timeouts(vllm_server, tmp_path):
    store_dir = tmp_path / "store"
    with FaultProxy(vllm_server) as proxy:
        summary = generate(
            GenerationConfig(
                source=SourceConfig(source="embedded", max_docs=10),
                num_samples=1,
                sampling=SamplingConfig(max_new_tokens=8),
                backend=BackendConfig(
                    backend="openai", base_url=proxy.base_url, max_concurrency=4,
                    max_retries=4, request_timeout_s=CLIENT_TIMEOUT_S,
                ),
                split=SplitConfig(validation_fraction=0),
                store_dir=str(store_dir), num_shards=1, shard_index=0,
            )
        )  # fmt: skip
    assert summary.errors == 0 and summary.generated == summary.requests == 10
    assert set(proxy.injected) == set(CAUSE)  # every kind of fault happened
    expected = Counter()
    for fault, count in proxy.injected.items():
        expected[CAUSE[fault]] += count
    assert summary.retries == dict(expected)  # every retry counted, by cause
    assert len(proxy.forwarded) == 10 and set(proxy.forwarded.values()) == {1}
    store = GenerationStore(store_dir)
    assert len(store) == 10 and store.duplicates == 0
