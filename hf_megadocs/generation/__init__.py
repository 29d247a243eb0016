"""Generation: real documents in, stored generations out, each one paid for once.

Steps, bottom to top: :mod:`~.sources` (read documents), :mod:`~.embedded` (the bundled
generator and corpora), :mod:`~.prompts` (templates with content hashes), :mod:`~.requests`
(document × prompt × sample index → requests that fit the context), :mod:`~.backends`
(vLLM, OpenAI-compatible servers, transformers, a dummy for tests), :mod:`~.cleaning`,
:mod:`~.store` (append-only, sharded, crash-safe) and :mod:`~.fill`, the one orchestrator
that generates what the store lacks. Entry points: :func:`~.fill.fill_store` for any list
of requests, :func:`~.fill.generate` for a source × prompt × G, and ``hf-megadocs
generate`` (:mod:`~.cli`). Nothing here knows about corpora or training.
"""
