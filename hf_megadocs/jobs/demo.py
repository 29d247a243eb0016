"""``hf-megadocs demo``: the main job on the embedded defaults, a small data-efficiency study.

1. Builds ``real``, ``simple_g{G}``, ``stitched_g{G}`` and ``latent_g{G}`` through
   ``datasets.load_dataset("hf_megadocs", ...)`` with the embedded generator (vLLM when
   installed) on the embedded news corpus, with one engine; generations land in the shared
   store, so a rerun generates nothing.
2. Trains one small BPE tokenizer on the real training split and, through
   ``accelerate launch recipes/train.py``, real-only models at four nested real-data sizes
   over an epoch grid (the data law), then one model per method mixed at share ``m``.
3. Prints and writes ``<output_dir>/study/study.md``: the law, and per method the i.i.d.
   and long-context loss, the data-efficiency multiplier with its interval, and the Δ
   against the real-only run trained for as many steps; PNG figures beside it.

It is :mod:`hf_megadocs.jobs.study` with small defaults; the papers' effect sizes need
their scale.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hf_megadocs.generation.backends import BACKEND_NAMES, BackendName
from hf_megadocs.jobs.study import execute_study
from hf_megadocs.jobs.study_plan import StudyConfig
from hf_megadocs.training.launch import repo_root

logger = logging.getLogger(__name__)

METHODS = ("simple", "stitched", "latent")


@dataclass(kw_only=True)
class DemoConfig:
    """What the main job builds and trains."""

    output_dir: str = "outputs/demo"
    """Where the study (runs, ``study.md``, figures) and the job's config go."""
    num_generations: int = 2
    """G: generations per source document for every synthetic method."""
    methods: tuple[str, ...] = METHODS
    """Synthetic methods placed on the data law, e.g. '[simple,stitched]'."""
    max_docs: int = 120
    """Source documents read from the embedded corpus (train + validation), in documents."""
    max_new_tokens: int = 160
    """Generation length cap per sample, in generator tokens."""
    validation_fraction: float = 0.2
    """Share of source documents held out (never generated from) for the i.i.d. loss."""
    synthetic_share: float = 0.5
    """m: share of synthetic sequences in every global batch of the synthetic runs."""
    real_epochs: float = 8
    """E: passes over the real training tokens of every synthetic run (their steps are
    E/(1−m) real epochs' worth; the grid below holds that count for the fair Δ)."""
    real_fractions: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    """Real-data sizes of the real-only runs, as shares of the real training documents."""
    real_epoch_grid: tuple[float, ...] = (4, 8, 16, 32)
    """Epoch counts tried by the real-only runs at each size (the best one enters the law)."""
    tokenizer_vocab: int | None = 2048
    """Tokens of the BPE tokenizer trained on the real training split for every run; None
    uses the training config's (the generator's 49k vocabulary)."""
    seeds: tuple[int, ...] = (0,)
    """Seeds of every run; more seeds give the table a seed spread."""
    train_config: str = "recipes/configs/tiny_cpu.yaml"
    """Training config every run starts from (relative to the repository root)."""
    store_dir: str | None = None
    """Generation store; None uses the shared user cache, so reruns generate nothing."""
    num_processes: int = 1
    """Processes per training run (``accelerate launch --num_processes``)."""
    max_steps: int | None = None
    """Cap on optimizer steps per run (smoke tests); None trains the full schedule."""
    backend: BackendName = "auto"
    """Generation backend: "auto" (vLLM when installed, else transformers), "vllm",
    "transformers", or "dummy" (an echo, for tests)."""
    corpus_overrides: dict[str, Any] = field(default_factory=dict)
    """Extra builder keyword arguments as JSON (e.g. '{"kv_cache_memory_gb": 1}')."""

    def __post_init__(self) -> None:
        if self.num_generations < 1:
            raise ValueError(
                f"DemoConfig.num_generations must be >= 1, got {self.num_generations}."
            )
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise ValueError(
                f"DemoConfig.methods has unknown methods {unknown}; allowed: {list(METHODS)}."
            )
        if not 0 < self.synthetic_share < 1:
            raise ValueError(
                f"DemoConfig.synthetic_share must be in (0, 1), got {self.synthetic_share}."
            )
        if self.real_epochs <= 0 or any(e <= 0 for e in self.real_epoch_grid):
            raise ValueError(
                f"DemoConfig.real_epochs and real_epoch_grid must be > 0, got "
                f"{self.real_epochs} and {list(self.real_epoch_grid)}."
            )
        if self.backend not in BACKEND_NAMES:
            raise ValueError(
                f"DemoConfig.backend must be one of {BACKEND_NAMES}, got {self.backend!r}."
            )
        self.methods = tuple(self.methods)

    def corpus_kwargs(self) -> dict[str, Any]:
        """Builder keyword arguments shared by every corpus (one source, one store)."""
        kwargs: dict[str, Any] = {
            "max_docs": self.max_docs,
            "max_new_tokens": self.max_new_tokens,
            "validation_fraction": self.validation_fraction,
            "backend": self.backend,
            "enforce_eager": True,
        }
        if self.store_dir is not None:
            kwargs["store_dir"] = self.store_dir
        kwargs.update(self.corpus_overrides)
        return kwargs

    def study(self) -> StudyConfig:
        """The study this job runs."""
        overrides = [
            "--data.real_corpus", "real",
            "--data.corpus_kwargs", json.dumps(self.corpus_kwargs()),
            "--eval_every", "0",
            "--log_with", "none",
        ]  # fmt: skip
        if self.max_steps is not None:
            overrides += ["--max_steps", str(self.max_steps)]
        return StudyConfig(
            output_dir=str(Path(self.output_dir).resolve() / "study"),
            train_config=str(repo_root() / self.train_config),
            preset=None,
            overrides=overrides,
            real_fractions=list(self.real_fractions),
            real_epochs=list(self.real_epoch_grid),
            methods=list(self.methods),
            generations=[self.num_generations],
            synthetic_share={method: self.synthetic_share for method in self.methods},
            mixed_epochs=self.real_epochs,
            seeds=list(self.seeds),
            tokenizer_vocab=self.tokenizer_vocab,
            num_processes=self.num_processes,
        )


def run_demo(config: DemoConfig) -> int:
    """The whole main job; 0 when every run finished and ``study.md`` is written."""
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo_config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    started = time.perf_counter()
    code = execute_study(config.study())
    print(
        f"\nmain job done in {time.perf_counter() - started:.0f} s; study: "
        f"{out / 'study' / 'study.md'}\n"
        "At this size the demo shows the pipeline and the protocol working; the papers' "
        "effect sizes need their scale (164k documents, G up to 32, 300M-parameter models)."
    )
    return code


def main(argv: list[str] | None = None) -> int:
    """``hf-megadocs demo [--output_dir DIR] [--num_generations G] ...`` (``--help``)."""
    from hf_megadocs.flags import ConfigError, parse_dataclass

    try:
        config = parse_dataclass(
            DemoConfig,
            argv,
            prog="hf-megadocs demo",
            description="The main job on the embedded defaults: build real, simple, stitched "
            "and latent corpora with one generation engine, fit the data law from real-only "
            "runs at four real-data sizes, place each method on it and print the "
            "data-efficiency multipliers.",
        )
    except (ConfigError, ValueError) as error:
        print(f"hf-megadocs demo: error: {error}", file=sys.stderr)
        return 2
    return run_demo(config)


if __name__ == "__main__":
    sys.exit(main())
