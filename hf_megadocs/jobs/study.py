"""``hf-megadocs study``: plan, run and summarise a data-efficiency study from one YAML.

A study trains every method and G on a base subset D0 of the real training documents
(``base_fraction``; corpora are generated for those documents only), and real-only runs at
nested sizes from D0 to 8·D0 (``law_multiples``), each over a grid of epochs and weight
decays at every seed. A method's i.i.d. loss is placed on the measured real-only curve by
interpolation (:mod:`hf_megadocs.analysis.efficiency`): its multiplier is an equivalent-D
inside the measured sizes, with a 95% bootstrap interval over seeds, or it says that it
lies outside them. Settings are chosen on selection documents disjoint from the reported
ones: per size for real-only, per method and G (m and E, at the first seed) for methods.

Every run goes through the one training launcher (:mod:`hf_megadocs.training.launch`), one
after another here, or emitted one command per line for a scheduler. Finished runs (a
``summary.json``) are skipped, interrupted ones resume from their latest checkpoint. For
each method's chosen point the planner adds a real-only run on D0 trained for as many
steps (E/(1−m) epochs), and the table's Δ is against it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hf_megadocs.flags import ConfigError, parse_dataclass
from hf_megadocs.generation.calibration import EstimateOnlyStop
from hf_megadocs.jobs.study_plan import (
    PlannedRun,
    StudyConfig,
    plan_study,
    run_flags,
    study_corpus_kwargs,
    train_study_tokenizer,
    training_flags,
)
from hf_megadocs.jobs.study_report import render_study
from hf_megadocs.jobs.study_summary import (
    CORPORA_FILE,
    MethodResult,
    StudyResult,
    selection_losses,
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
                "content_hash": corpus_content_hash(corpus["train"]),
                "validation_rows": corpus["validation"].num_rows if "validation" in corpus else 0,
                "seconds": round(time.perf_counter() - start, 1),
            })  # fmt: skip
            logger.info("built %s: %s", name, summaries[-1])
    finally:
        if backend is not None:
            backend.close()
    return summaries


def corpus_content_hash(dataset: Any) -> str:
    """sha256 of a split's texts in order: which generations the study trained on."""
    digest = hashlib.sha256()
    for batch in dataset.select_columns(["text"]).iter(batch_size=1024):
        for text in batch["text"]:
            digest.update(text.encode("utf-8", "surrogatepass"))
            digest.update(b"\0")
    return digest.hexdigest()[:16]


def build_study_corpora(config: StudyConfig, finished: Sequence[PlannedRun] = ()) -> None:
    """Build the hf_megadocs corpora the study trains on, before any run starts (one engine
    for every generation, for the D0 documents only), and pin them: ``corpora.json`` records
    a content hash of each, and a rerun whose generations differ from the ones ``finished``
    method runs trained on stops here. Local datasets (``data.real_path``) are left to the runs."""
    from hf_megadocs.training.presets import load_config

    data = load_config(overrides=training_flags(config)).data
    names = [data.real_corpus] if data.real_path is None and data.real_corpus else []
    names += sorted({f"{m}_g{g}" for m in config.methods for g in config.generations})
    if not names:
        return
    path = Path(config.output_dir) / CORPORA_FILE
    pinned = (
        {c["config"]: c.get("content_hash") for c in json.loads(path.read_text())}
        if path.is_file() else {}
    )  # fmt: skip
    estimate = {"estimate_only": config.estimate_only}  # the build only: runs never see it
    if config.expected_tokens_per_s is not None:
        estimate["expected_tokens_per_s"] = config.expected_tokens_per_s
    summaries = build_corpora(names, {**study_corpus_kwargs(config), **estimate})
    trained = {run.corpus for run in finished if run.corpus}
    changed = [
        f"{s['config']} ({pinned[s['config']]} → {s['content_hash']})" for s in summaries
        if s["config"] in trained and pinned.get(s["config"]) not in (None, s["content_hash"])
    ]  # fmt: skip
    if changed:
        raise ValueError(
            f"the generations of {', '.join(changed)} differ from the ones this study's finished "
            "runs trained on: the generation store was changed or replaced. Restore it "
            "(store_dir, $HF_MEGADOCS_CACHE) or use a new output_dir."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summaries, indent=2) + "\n")


def run_study(config: StudyConfig) -> list[str]:
    """Run (or emit) every unfinished planned run; the names of the runs that failed.

    Runs go in two steps: the real-only grid and each method's (m, E) search at the first
    seed, then, once a method's search has finished, its chosen point at the other seeds
    and the compute-matched real-only runs (re-planned from the finished runs' selection
    losses). Emitted commands are one step's; rerun after they finish for the next.
    """
    from hf_megadocs.training.launch import launch_command, run_training, shell_line

    out = Path(config.output_dir)
    failed: list[str] = []
    attempted: set[str] = set()
    built = False
    started = time.perf_counter()
    while True:
        planned = plan_study(config, selection_losses(config))
        todo = [
            run for run in planned
            if not (out / run.name / "summary.json").is_file() and run.name not in attempted
        ]  # fmt: skip
        if todo and not built and config.emit is None:
            # Emitted runs build their corpora themselves (or read a store filled elsewhere).
            finished = [run for run in planned if (out / run.name / "summary.json").is_file()]
            try:
                build_study_corpora(config, finished)
            except EstimateOnlyStop as stop:
                print(stop.estimate.as_text())
                logger.info("study %s: estimate only; stopping before generating", out)
                return []
            built = True
        if config.build_only:
            logger.info("study %s: corpora built; stopping (build_only)", out)
            return []
        if not todo:
            break
        train_study_tokenizer(config)
        logger.info("study %s: %d runs planned so far, %d to run", out, len(planned), len(todo))
        commands = [(run, run_flags(config, run, out / run.name)) for run in todo]
        if config.emit is not None:
            lines = [
                shell_line(launch_command(flags, num_processes=config.num_processes, portable=True))
                for _, flags in commands
            ]
            Path(config.emit).write_text("".join(line + "\n" for line in lines))
            logger.info("wrote %d commands to %s; rerun the study after they finish for the "
                        "next step", len(lines), config.emit)  # fmt: skip
            return []
        for index, (run, flags) in enumerate(commands, start=1):
            logger.info("study run %d/%d: %s", index, len(commands), run.name)
            attempted.add(run.name)
            code = run_training(launch_command(flags, num_processes=config.num_processes))
            if code != 0:
                logger.error("study run %s exited with %d; the others go on", run.name, code)
                failed.append(run.name)
    if attempted:
        logger.info("study %s: %d runs in %.0f s, %d failed", out, len(attempted),
                    time.perf_counter() - started, len(failed))  # fmt: skip
    return failed


DESCRIPTION = (
    "Plan, run (or emit) and summarise a data-efficiency study: each method and G trains on "
    "a base subset D0 of the real documents; real-only runs from D0 to 8·D0, tuned at each "
    "size, measure the curve each method is placed on by interpolation, with a 95% "
    "bootstrap interval over seeds. Finished runs are skipped."
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
    if config.emit is not None or config.build_only or config.estimate_only:
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
