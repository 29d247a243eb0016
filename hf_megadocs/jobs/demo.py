"""``hf-megadocs demo``: the main job on the embedded defaults, a small data-efficiency study.

1. Builds ``real``, ``simple_g{G}``, ``stitched_g{G}`` and ``latent_g{G}`` through
   ``datasets.load_dataset("hf_megadocs", ...)`` with the embedded generator (vLLM when
   installed) on the embedded news corpus, with one engine; generations land in the shared
   store, so a rerun generates nothing.
2. Trains one small BPE tokenizer on the real training split and, through
   ``accelerate launch -m hf_megadocs.train``, real-only models at sizes D0, 2·D0, 4·D0 and
   8·D0 (D0 = one sixteenth of the training documents) over an epoch grid at two seeds
   (the measured curve), and each method on D0, its synthetic share
   and epochs chosen at the first seed on selection documents, then run at both seeds.
3. Prints and writes ``<output_dir>/study/study.md``: per method the multiplier
   interpolated on the measured curve with its 95% bootstrap interval (or "beyond the
   measured sizes"), the i.i.d. and long-context loss, the Δ against real-only on D0
   trained for as many steps; PNG figures beside it.

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

from hf_megadocs.configs import config_path
from hf_megadocs.generation.backends import BACKEND_NAMES, BackendName
from hf_megadocs.jobs.study import execute_study
from hf_megadocs.jobs.study_plan import StudyConfig

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
    max_docs: int | None = None
    """Source documents read from the embedded corpus (train + validation); None reads all
    300 (generation is for the base subset only, so the whole corpus costs little)."""
    max_new_tokens: int = 160
    """Generation length cap per sample, in generator tokens."""
    validation_fraction: float = 0.2
    """Share of source documents held out (never generated from) for the i.i.d. loss."""
    base_fraction: float = 0.0625
    """D0: the share of the real training documents every method trains on (and that
    corpora are generated for); real-only runs measure the curve from D0 to 8·D0 (half the
    training documents, so the demo's 8·D0 runs stay within its 20 minutes)."""
    law_multiples: tuple[float, ...] = (1, 2, 4, 8)
    """Real-only sizes as multiples of D0."""
    synthetic_shares: tuple[float, ...] = (0.75, 0.9)
    """m values each method searches at the first seed."""
    mixed_epochs: tuple[float, ...] = (4, 8)
    """E values each method searches at the first seed, with each m."""
    real_epoch_grid: tuple[float, ...] = (16, 32)
    """Epoch counts tried by the real-only runs at each size and seed."""
    real_weight_decays: tuple[float, ...] = (0.4,)
    """Weight decays tried by the real-only runs at each size and seed (the study's default
    searches 0.4 and 1.6; one value keeps the demo within its 20 minutes)."""
    tokenizer_vocab: int | None = 2048
    """Tokens of the BPE tokenizer trained on the real training split for every run; None
    uses the training config's (the generator's 49k vocabulary)."""
    seeds: tuple[int, ...] = (0, 1)
    """Seeds: the real-only grid runs at each, a method's search at the first and its
    chosen point at each (two give the interval a seed spread; the study uses three)."""
    train_config: str = "tiny_cpu"
    """Training config every run starts from: a YAML path or a bundled config's name."""
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
        if any(e <= 0 for e in (*self.real_epoch_grid, *self.mixed_epochs)):
            raise ValueError(
                f"DemoConfig.real_epoch_grid and mixed_epochs must be > 0, got "
                f"{list(self.real_epoch_grid)} and {list(self.mixed_epochs)}."
            )
        if self.backend not in BACKEND_NAMES:
            raise ValueError(
                f"DemoConfig.backend must be one of {BACKEND_NAMES}, got {self.backend!r}."
            )
        self.methods = tuple(self.methods)

    def corpus_kwargs(self) -> dict[str, Any]:
        """Builder keyword arguments shared by every corpus (one source, one store)."""
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "validation_fraction": self.validation_fraction,
            "backend": self.backend,
            "enforce_eager": True,
        }
        if self.max_docs is not None:
            kwargs["max_docs"] = self.max_docs
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
            train_config=str(Path(config_path(self.train_config)).resolve()),
            preset=None,
            overrides=overrides,
            base_fraction=self.base_fraction,
            law_multiples=list(self.law_multiples),
            real_epochs=list(self.real_epoch_grid),
            real_weight_decays=list(self.real_weight_decays),
            methods=list(self.methods),
            generations=[self.num_generations],
            synthetic_shares=list(self.synthetic_shares),
            mixed_epochs=list(self.mixed_epochs),
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
            "and latent corpora for a base subset D0 with one generation engine, measure "
            "real-only loss from D0 to 8·D0, place each method (trained on D0) on that curve "
            "and print its data-efficiency multiplier with a 95% interval.",
        )
    except (ConfigError, ValueError) as error:
        print(f"hf-megadocs demo: error: {error}", file=sys.stderr)
        return 2
    return run_demo(config)


if __name__ == "__main__":
    sys.exit(main())
