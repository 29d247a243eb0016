"""The OpenAI-compatible backend: any ``/v1/chat/completions`` server (vllm serve, SGLang, TGI).

Requests go out concurrently (``asyncio`` + ``httpx``, at most ``max_concurrency`` in
flight), each with its own ``seed=request.sample_seed`` and ``n=1``. 429s, 5xx answers,
timeouts and connection errors are retried with exponential backoff and jitter; a request
that still fails after ``max_retries`` comes back with ``finish_reason="error"`` so the
orchestrator counts it and retries it on the next run. Other 4xx answers (a prompt over
the context limit, say) are not retried; 400, 413 and 422 are permanent failures, stored
once as tombstones (:mod:`hf_megadocs.generation.failures`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hf_megadocs.generation.embedded import resolve_generator
from hf_megadocs.generation.failures import failed_output, permanent_http_status
from hf_megadocs.records import FinishReason, GenerationRequest, RawOutput

if TYPE_CHECKING:
    from hf_megadocs.generation.backends import BackendConfig

logger = logging.getLogger(__name__)

RETRY_BASE_S = 0.5
"""First backoff delay; doubles per attempt (with jitter) up to ``RETRY_CAP_S``."""
RETRY_CAP_S = 30.0
DEFAULT_CONTEXT_TOKENS = 4096
"""Context length assumed when neither the server nor BackendConfig.max_model_len says."""

_FINISH_REASONS: dict[str | None, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "eos_token": "stop",  # TGI
    "stop_sequence": "stop",  # TGI
}
_START_HINT = (
    "Start a server first, e.g. 'vllm serve <model> --host 127.0.0.1 --port 8000' "
    "(or SGLang/TGI) and set BackendConfig.base_url='http://127.0.0.1:8000/v1'."
)


def import_httpx() -> Any:
    """Import httpx, or raise an ImportError with the ``pip install`` line."""
    try:
        import httpx
    except ImportError as error:
        raise ImportError(
            f"The openai backend needs httpx ({error}). pip install 'httpx>=0.28,<0.29'"
        ) from error
    return httpx


def backoff_delay(attempt: int, retry_after: str | None = None) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): a server's Retry-After wins."""
    if retry_after is not None:
        try:
            return min(RETRY_CAP_S, max(0.0, float(retry_after)))
        except ValueError:
            pass  # an HTTP date: fall back to our own schedule
    ceiling = min(RETRY_CAP_S, RETRY_BASE_S * 2**attempt)
    return ceiling * (0.5 + random.random() / 2)


class OpenAIBackend:
    """Generation through an OpenAI-compatible HTTP server.

    At construction ``GET {base_url}/models`` checks the server is up and finds the model
    name (``config.generator`` or the first served id) and its ``max_model_len``. The
    API key is read from ``os.environ[config.api_key_env]`` when set and is never logged.
    """

    name = "openai"

    def __init__(self, config: BackendConfig) -> None:
        httpx = import_httpx()
        if not config.base_url:
            raise ValueError("BackendConfig.base_url is required for the openai backend.")
        self.config = config
        self.base_url = config.base_url.rstrip("/")
        api_key = os.environ.get(config.api_key_env)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        models = self._get_models(httpx)
        served = [str(entry.get("id")) for entry in models]
        if not served:
            raise RuntimeError(f"{self.base_url}/models lists no models. {_START_HINT}")
        self.model = config.generator or served[0]
        if self.model not in served:
            raise ValueError(
                f"BackendConfig.generator={config.generator!r} is not served by {self.base_url} "
                f"(it serves {served}). Set generator to one of those ids, or None for the first."
            )
        card = next(entry for entry in models if str(entry.get("id")) == self.model)
        self._server_context = card.get("max_model_len")
        # LoRA adapters are served under their own ids; vLLM lists the adapter path as "root".
        self._lora_models = {
            str(entry.get("root")): str(entry["id"]) for entry in models if entry.get("parent")
        }
        self.generator, self.generator_revision = self._identity()
        self._tokenizer: Any = None
        self._token_counter: str | None = None  # "local" | "server" | "estimate", decided once
        self.retries: Counter[str] = Counter()
        """Retried attempts so far, by cause ("429", "5xx", "timeout", "connection")."""
        logger.info("OpenAI-compatible server %s serves %s", self.base_url, self.model)

    def _get_models(self, httpx: Any) -> list[dict[str, Any]]:
        url = f"{self.base_url}/models"
        try:
            response = httpx.get(url, headers=self._headers, timeout=10.0)
            response.raise_for_status()
            return list(response.json().get("data", []))
        except (httpx.HTTPError, ValueError) as error:
            raise ConnectionError(
                f"Cannot reach an OpenAI-compatible server at {url} ({type(error).__name__}: "
                f"{error}). {_START_HINT}"
            ) from error

    def _identity(self) -> tuple[str, str]:
        """(generator, revision) recorded in the store, shared with the vllm backend."""
        if self.config.generator is None and Path(self.model).is_dir():
            from hf_megadocs.generation.embedded import embedded_generator_dir

            if Path(self.model).resolve() == embedded_generator_dir().resolve():
                # Same key as the in-process backends, so one store serves both.
                _, name, revision = resolve_generator(None)
                return name, revision
        _, name, revision = resolve_generator(self.model, self.config.revision)
        return name, revision

    @property
    def max_context_tokens(self) -> int:
        limits = [n for n in (self._server_context, self.config.max_model_len) if n]
        if limits:
            return int(min(limits))
        logger.warning(
            "%s does not report max_model_len; assuming %d tokens (set "
            "BackendConfig.max_model_len to the server's real limit).",
            self.base_url,
            DEFAULT_CONTEXT_TOKENS,
        )
        return DEFAULT_CONTEXT_TOKENS

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text``: local tokenizer, else the server's /tokenize, else chars/4."""
        if self._token_counter is None:
            self._token_counter = self._pick_token_counter()
        if self._token_counter == "local":
            return len(self._tokenizer.encode(text, add_special_tokens=False))
        if self._token_counter == "server":
            return self._server_count(text)
        return max(1, len(text) // 4)

    def _pick_token_counter(self) -> str:
        try:
            from transformers import AutoTokenizer

            path, _, _ = resolve_generator(self.model, self.config.revision)
            self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            return "local"
        except (ImportError, OSError, ValueError) as error:  # not local, not cached
            logger.debug("No local tokenizer for %s: %s", self.model, error)
        try:
            self._server_count("probe")
            return "server"
        except (import_httpx().HTTPError, KeyError, ValueError) as error:
            logger.warning(
                "Counting tokens as chars/4: no local tokenizer for %s and %s has no "
                "/tokenize endpoint (%s). Context-limit checks are estimates.",
                self.model,
                self.base_url,
                type(error).__name__,
            )
            return "estimate"

    def _server_count(self, text: str) -> int:
        httpx = import_httpx()
        root = self.base_url.removesuffix("/v1")
        response = httpx.post(
            f"{root}/tokenize",
            json={"model": self.model, "prompt": text, "add_special_tokens": False},
            headers=self._headers,
            timeout=self.config.request_timeout_s,
        )
        response.raise_for_status()
        return int(response.json()["count"])

    def generate(self, requests: Sequence[GenerationRequest]) -> list[RawOutput]:
        """One sample per request, in order (requests run concurrently)."""
        if not requests:
            return []
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._generate_all(requests))
        # Called from inside an event loop (a notebook): run ours on a worker thread.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, self._generate_all(requests)).result()

    async def _generate_all(self, requests: Sequence[GenerationRequest]) -> list[RawOutput]:
        httpx = import_httpx()
        limits = httpx.Limits(max_connections=self.config.max_concurrency)
        semaphore = asyncio.Semaphore(self.config.max_concurrency)
        async with httpx.AsyncClient(
            headers=self._headers, timeout=self.config.request_timeout_s, limits=limits
        ) as client:
            return list(await asyncio.gather(*(self._one(client, semaphore, r) for r in requests)))

    def _payload(self, request: GenerationRequest) -> dict[str, Any] | str:
        """The chat-completions body, or an error message when the LoRA is not served."""
        model = self.model
        lora = request.lora or self.config.lora_path
        if lora is not None:
            if lora not in self._lora_models:
                return (
                    f"LoRA adapter {lora!r} is not served by {self.base_url}. Start the server "
                    f"with '--enable-lora --lora-modules NAME={lora}'."
                )
            model = self._lora_models[lora]
        return {
            "model": model,
            "messages": [dict(message) for message in request.messages],
            "n": 1,
            "seed": request.sample_seed,
            "temperature": request.sampling.temperature,
            "top_p": request.sampling.top_p,
            "max_tokens": request.sampling.max_new_tokens,
        }

    async def _one(
        self, client: Any, semaphore: asyncio.Semaphore, request: GenerationRequest
    ) -> RawOutput:
        httpx = import_httpx()
        payload = self._payload(request)
        if isinstance(payload, str):
            return RawOutput(
                text=payload, prompt_tokens=0, completion_tokens=0, finish_reason="error"
            )
        url = f"{self.base_url}/chat/completions"
        error, permanent = "", False
        async with semaphore:
            for attempt in range(self.config.max_retries + 1):
                retry_after = None
                try:
                    response = await client.post(url, json=payload)
                except (httpx.TimeoutException, httpx.TransportError) as exc:
                    error = f"{type(exc).__name__}: {exc}"
                    cause = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection"
                else:
                    if response.status_code == 200:
                        return self._parse(response.json())
                    error = f"HTTP {response.status_code} from {url}: {response.text[:500]}"
                    if response.status_code != 429 and response.status_code < 500:
                        permanent = permanent_http_status(response.status_code)
                        break  # a bad request stays bad: do not retry
                    retry_after = response.headers.get("retry-after")
                    cause = "429" if response.status_code == 429 else "5xx"
                if attempt < self.config.max_retries:
                    self.retries[cause] += 1
                    await asyncio.sleep(backoff_delay(attempt, retry_after))
        logger.warning("Request %s failed: %s", request.key, error)
        return failed_output(error, permanent=permanent)

    def _parse(self, body: dict[str, Any]) -> RawOutput:
        choice = body["choices"][0]
        text = choice.get("message", {}).get("content") or ""
        usage = body.get("usage") or {}
        completion = usage.get("completion_tokens")
        return RawOutput(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(completion)
            if completion is not None
            else self.count_tokens(text),
            finish_reason=_FINISH_REASONS.get(choice.get("finish_reason"), "error"),
        )

    def close(self) -> None:
        """Nothing to release: each ``generate`` call opens and closes its own client."""


__all__ = ["OpenAIBackend", "backoff_delay"]
