"""``hf-megadocs demo``: the main job on the embedded defaults, end to end.

1. Builds ``real``, ``simple_g{G}``, ``stitched_g{G}`` and ``latent_g{G}`` through
   ``datasets.load_dataset("hf_megadocs", ...)`` with the embedded generator (vLLM when
   installed) on the embedded news corpus; generations land in the shared store, so a
   rerun generates nothing.
2. Trains one small model per corpus through ``accelerate launch recipes/train.py`` with
   the same real data, real epochs and seed; synthetic corpora are mixed at share ``m``.
3. Writes the report (Markdown + PNG) and prints the results table.

At this size the job shows the pipeline working; the papers' effect sizes need their scale.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hf_megadocs.corpora.names import format_config_name
from hf_megadocs.generation.backends import BACKEND_NAMES, BackendName
from hf_megadocs.training.launch import launch_command, repo_root, run_training, shell_line

logger = logging.getLogger(__name__)

METHODS = ("simple", "stitched", "latent")


@dataclass(kw_only=True)
class DemoConfig:
    """What the main job builds and trains."""

    output_dir: str = "outputs/demo"
    """Where runs, the report and the corpus summary go."""
    num_generations: int = 2
    """G: generations per source document for every synthetic method."""
    methods: tuple[str, ...] = METHODS
    """Synthetic methods trained next to the real-only baseline, e.g. '[simple,stitched]'."""
    max_docs: int = 80
    """Source documents read from the embedded corpus (train + validation), in documents."""
    max_new_tokens: int = 160
    """Generation length cap per sample, in generator tokens."""
    validation_fraction: float = 0.2
    """Share of source documents held out (never generated from) for the i.i.d. loss."""
    synthetic_share: float = 0.5
    """m: share of synthetic sequences in every global batch of the synthetic runs."""
    real_epochs: float = 4
    """E: passes over the real training tokens (the same for every run)."""
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
        if self.real_epochs <= 0:
            raise ValueError(f"DemoConfig.real_epochs must be > 0, got {self.real_epochs}.")
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

    def corpus_names(self) -> list[str]:
        """``real`` first, then one config per method at G."""
        return ["real"] + [format_config_name(m, self.num_generations) for m in self.methods]


def build_corpora(config: DemoConfig) -> list[dict[str, Any]]:
    """Step 1: build every corpus with one generation engine, and summarise each.

    :func:`~hf_megadocs.corpora.load.shared_backend` plans every corpus first and starts one
    engine sized for all their missing generations (none when the store has them all);
    each corpus is then built by the ``datasets`` builder with that engine.
    """
    from hf_megadocs.corpora.load import load_corpus, shared_backend

    names, kwargs = config.corpus_names(), config.corpus_kwargs()
    backend = shared_backend(names, **kwargs)
    summaries = []
    try:
        for name in names:
            start = time.perf_counter()
            corpus = load_corpus(name, generation_backend=backend, **kwargs)
            train = corpus["train"]
            summaries.append(
                {
                    "config": name,
                    "train_rows": train.num_rows,
                    "train_chars": sum(len(t) for t in train["text"]),
                    "validation_rows": corpus["validation"].num_rows
                    if "validation" in corpus
                    else 0,
                    "seconds": round(time.perf_counter() - start, 1),
                }
            )
            logger.info("built %s: %s", name, summaries[-1])
    finally:
        if backend is not None:
            backend.close()
    return summaries


def train_command(config: DemoConfig, corpus: str, run_dir: Path) -> list[str]:
    """Step 2: the ``accelerate launch recipes/train.py`` command of one run."""
    synthetic = corpus != "real"
    args = [
        "--config",
        str(repo_root() / config.train_config),
        "--output_dir",
        str(run_dir),
        "--data.real_corpus",
        "real",
        "--data.synthetic_corpus",
        corpus if synthetic else "null",
        "--mix.synthetic_share",
        str(config.synthetic_share if synthetic else 0.0),
        "--mix.real_epochs",
        str(config.real_epochs),
        "--data.corpus_kwargs",
        json.dumps(config.corpus_kwargs()),
        "--log_with",
        "none",
        # A run killed part-way resumes from its last checkpoint (a fresh start if none).
        "--resume_from_checkpoint",
        "latest",
    ]
    if config.max_steps is not None:
        args += ["--max_steps", str(config.max_steps)]
    return launch_command(args, num_processes=config.num_processes)


def train_runs(config: DemoConfig) -> list[Path]:
    """Train one model per corpus; a run with a ``summary.json`` is not trained again."""
    run_dirs = []
    for corpus in config.corpus_names():
        run_dir = Path(config.output_dir).resolve() / "runs" / corpus
        run_dirs.append(run_dir)
        if (run_dir / "summary.json").is_file():
            logger.info("run %s already finished, skipping", run_dir)
            continue
        command = train_command(config, corpus, run_dir)
        logger.info("training %s: %s", corpus, shell_line(command))
        returncode = run_training(command)
        if returncode != 0:
            raise RuntimeError(
                f"training run for {corpus!r} failed with exit code {returncode}; "
                f"its logs are above and its files in {run_dir}. Rerun `hf-megadocs demo` "
                "to resume: finished runs and stored generations are reused."
            )
    return run_dirs


def run_demo(config: DemoConfig) -> Path:
    """The whole main job; returns the report's path."""
    from hf_megadocs.analysis import report as report_module

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo_config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    started = time.perf_counter()
    corpora = build_corpora(config)
    (out / "corpora.json").write_text(json.dumps(corpora, indent=2) + "\n")
    build_s = time.perf_counter() - started
    run_dirs = train_runs(config)
    train_s = time.perf_counter() - started - build_s
    if report_module.main([str(d) for d in run_dirs] + ["--out", str(out / "report")]) != 0:
        raise RuntimeError(f"the report over {out / 'runs'} failed; its error is above.")
    report = out / "report" / "report.md"
    print(
        f"\nmain job done in {time.perf_counter() - started:.0f} s "
        f"(corpora {build_s:.0f} s, training {train_s:.0f} s); report: {report}\n"
        "At this size the demo shows the pipeline working; the papers' effect sizes need "
        "their scale (164k documents, G up to 32, 300M-parameter models)."
    )
    return report


def main(argv: list[str] | None = None) -> int:
    """``hf-megadocs demo [--output_dir DIR] [--num_generations G] ...`` (``--help``)."""
    from hf_megadocs.flags import ConfigError, parse_dataclass

    try:
        config = parse_dataclass(
            DemoConfig,
            argv,
            prog="hf-megadocs demo",
            description="The main job on the embedded defaults: build real, simple, stitched "
            "and latent corpora with one generation engine, train one small model per corpus "
            "with accelerate, and write the report.",
        )
    except ConfigError as error:
        print(f"hf-megadocs demo: error: {error}", file=sys.stderr)
        return 2
    run_demo(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
