"""``hf-megadocs study``: plan, run and summarise a data-efficiency study from one YAML.

A study trains real-only runs at several real-data sizes D (nested subsets of the real
documents, ``data.real_fraction``), each over an epoch grid, which give the data law
L(D) = A/D^α + E; and runs of each method and G on the full real data, whose i.i.d. losses
the law turns into equivalent real tokens and a multiplier with an interval. Every run
goes through the one training launcher (:mod:`hf_megadocs.training.launch`), one after
another here, or emitted one command per line for a scheduler. Finished runs (a
``summary.json``) are skipped, interrupted ones resume from their latest checkpoint.

Fair comparisons: for each synthetic share m the planner adds a real-only run on the full
data trained for as many steps as the mixed runs (E/(1−m) real epochs), and every Δ in the
table is against that run, named in the table.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from hf_megadocs.flags import ConfigError, parse_dataclass
from hf_megadocs.jobs.study_plan import (
    PlannedRun,
    StudyConfig,
    plan_study,
    run_flags,
    train_study_tokenizer,
    training_flags,
)
from hf_megadocs.jobs.study_summary import (
    MethodResult,
    StudyResult,
    render_study,
    summarise,
    write_figures,
)

logger = logging.getLogger(__name__)


def build_corpora(names: list[str], corpus_kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    """Build every corpus in ``names`` with one generation engine; a summary of each.

    :func:`~hf_megadocs.corpora.load.shared_backend` plans every corpus first and starts one
    engine sized for all their missing generations (none when the store has them all);
    each corpus is then built by the ``datasets`` builder with that engine, so the runs
    that load it after read the ``datasets`` cache.
    """
    from hf_megadocs.corpora.load import load_corpus, shared_backend

    backend = shared_backend(names, **corpus_kwargs)
    summaries = []
    try:
        for name in names:
            start = time.perf_counter()
            corpus = load_corpus(name, generation_backend=backend, **corpus_kwargs)
            summaries.append({
                "config": name,
                "train_rows": corpus["train"].num_rows,
                "train_chars": sum(len(text) for text in corpus["train"]["text"]),
                "validation_rows": corpus["validation"].num_rows if "validation" in corpus else 0,
                "seconds": round(time.perf_counter() - start, 1),
            })  # fmt: skip
            logger.info("built %s: %s", name, summaries[-1])
    finally:
        if backend is not None:
            backend.close()
    return summaries


def build_study_corpora(config: StudyConfig, runs: list[PlannedRun]) -> None:
    """Build the hf_megadocs corpora ``runs`` train on, before any run starts (one engine
    for every generation; ``<output_dir>/corpora.json`` summarises them). Local datasets
    (``data.real_path``) are left to the runs."""
    from hf_megadocs.training.presets import load_config

    data = load_config(overrides=training_flags(config)).data
    names = [data.real_corpus] if data.real_path is None and data.real_corpus else []
    names += sorted({f"{r.method}_g{r.num_generations}" for r in runs if r.method != "real"})
    if not names:
        return
    summaries = build_corpora(names, data.corpus_kwargs)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "corpora.json").write_text(json.dumps(summaries, indent=2) + "\n")


def run_study(config: StudyConfig) -> list[str]:
    """Run (or emit) every unfinished planned run; the names of the runs that failed."""
    from hf_megadocs.training.launch import launch_command, run_training, shell_line

    out = Path(config.output_dir)
    planned = plan_study(config)
    todo = [run for run in planned if not (out / run.name / "summary.json").is_file()]
    if todo and config.emit is None:
        # Emitted runs build their corpora themselves (or read a store filled elsewhere).
        build_study_corpora(config, todo)
    if config.build_only:
        logger.info("study %s: corpora built for %d runs; stopping (build_only)", out, len(todo))
        return []
    if todo:
        train_study_tokenizer(config)
    logger.info("study %s: %d runs planned, %d finished, %d to run", out, len(planned),
                len(planned) - len(todo), len(todo))  # fmt: skip
    commands = [(run, run_flags(config, run, out / run.name)) for run in todo]
    if config.emit is not None:
        lines = [
            shell_line(launch_command(flags, num_processes=config.num_processes, portable=True))
            for _, flags in commands
        ]
        Path(config.emit).write_text("".join(line + "\n" for line in lines))
        logger.info("wrote %d commands to %s", len(lines), config.emit)
        return []
    failed = []
    started = time.perf_counter()
    for index, (run, flags) in enumerate(commands, start=1):
        logger.info("study run %d/%d: %s", index, len(commands), run.name)
        code = run_training(launch_command(flags, num_processes=config.num_processes))
        if code != 0:
            logger.error("study run %s exited with %d; the others go on", run.name, code)
            failed.append(run.name)
    if commands:
        logger.info("study %s: %d runs in %.0f s, %d failed", out, len(commands),
                    time.perf_counter() - started, len(failed))  # fmt: skip
    return failed


DESCRIPTION = (
    "Plan, run (or emit) and summarise a data-efficiency study: real-only runs at several "
    "real-data sizes over an epoch grid give the data law; runs of each method and G get "
    "equivalent real tokens and a multiplier with an interval. Finished runs are skipped."
)


def main(argv: list[str] | None = None) -> int:
    """Run ``hf-megadocs study``; 0 when every run finished and the study is written."""
    try:
        config = parse_dataclass(
            StudyConfig, argv, prog="hf-megadocs study", description=DESCRIPTION
        )
    except (ConfigError, ValueError) as error:
        print(f"hf-megadocs study: error: {error}", file=sys.stderr)
        return 2
    return execute_study(config)


def execute_study(config: StudyConfig) -> int:
    """Run (or emit) every unfinished run, then write ``study.md`` with its figures and
    print it; 0 when every planned run finished (with or without a law: ``study.md`` says
    why there is none), 1 when some run failed or is missing."""
    failed = run_study(config)
    if config.emit is not None or config.build_only:
        return 0
    study = summarise(config)
    if study.fit is None:
        logger.warning("no data law, so no multipliers: %s", study.fit_error)
    figures = write_figures(config, study)
    text = render_study(study, figures)
    path = Path(config.output_dir) / "study.md"
    path.write_text(text)
    print(text + f"\nwritten to {path}")
    return 1 if failed or study.missing else 0


__all__ = ["MethodResult", "PlannedRun", "StudyConfig", "StudyResult", "execute_study", "main",
           "plan_study", "render_study", "run_study", "summarise", "write_figures"]  # fmt: skip
