"""Model-aware generation rounds (SynPro's second half): ``hf-megadocs rounds``.

One round, from a pre-training run whose held-out loss has plateaued (or on demand):

1. θ = the run's latest checkpoint;
2. tune a generator per operation (rephrase, reformat) from the *base* instruct model with
   the data-influence reward computed at θ (:func:`~hf_megadocs.tuning.tune.tune_generator`),
   or take adapters tuned elsewhere;
3. select the documents to regenerate (:mod:`~hf_megadocs.tuning.selection`: all, as
   SynPro's pipeline does, or ranked by influence or loss at θ);
4. generate them with the round's adapter into the shared generation store, as the corpus
   configs ``rephrase_g<G>_r<k>`` / ``reformat_g<G>_r<k>`` (adapter hash in every key and
   row), each saved under the round;
5. continue pre-training from θ (``recipes/train.py --continue_from``: weights, AdamW state
   and global step kept, constant learning rate) on the real data plus the **union** of
   every round's corpora so far;
6. beside it, the repetition-only control arm (:mod:`~hf_megadocs.tuning.control_arm`):
   continuations on organic data alone for the same steps, at several amounts of unique
   organic data, which give the effective-token multiplier of the rounds.

A round is triggered when the loss on the run's held-out *selection* documents plateaus
(never the reported ``iid_loss``), or on demand. ``rounds.md`` (with ``rounds.png``) in the
output folder reports rounds against repetition (:mod:`~hf_megadocs.tuning.rounds_report`).

Each round writes ``round_<k>/round.json``; every step is resumable (tuning and training
resume from their checkpoints, generations are never paid twice), and a finished round
is skipped when run again. The next round starts from the previous round's run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hf_megadocs.generation.sources import SourceConfig
from hf_megadocs.training.continuation import origin_step
from hf_megadocs.tuning.config import DEFAULT_WEIGHTS, TuneConfig
from hf_megadocs.tuning.continuations import continue_pretraining
from hf_megadocs.tuning.control_arm import ControlConfig, run_control
from hf_megadocs.tuning.round_corpora import (
    OPERATION_METHOD,
    ROUND_MANIFEST,
    generate_round_corpus,
    training_documents,
    union_of_rounds,
    write_documents,
)
from hf_megadocs.tuning.selection import (
    Plateau,
    PlateauConfig,
    SelectionConfig,
    detect_plateau,
    select_documents,
)

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class RoundsConfig:
    """Rounds of tune → select → regenerate → continue pre-training from one run."""

    run_dir: str
    """The pre-training run (a ``recipes/train.py`` output_dir with checkpoints) whose latest
    checkpoint starts round 1; later rounds start from the previous round's run."""
    output_dir: str = "runs/rounds"
    """Where ``round_<k>/`` folders go (tuning runs, documents, corpora, union, training)."""
    num_rounds: int = 1
    """Rounds to run (finished ones are skipped, so raising it adds rounds)."""
    trigger: Literal["plateau", "now"] = "plateau"
    """"plateau": start a round only once the run's ``selection_loss`` (validation documents
    held apart from the reported ``iid_loss``: train the run with ``eval.selection_fraction``
    > 0) has plateaued, else stop and say so; "now": start regardless (SynPro triggered
    rounds by hand)."""
    plateau: PlateauConfig = field(default_factory=PlateauConfig)
    operations: list[str] = field(default_factory=lambda: ["rephrase", "reformat"])
    """SynPro's two operations; each gets its own tuned adapter and corpus per round."""
    num_generations: int = 1
    """Generations per selected document and operation (G of the round's corpus names)."""
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    """Template of each round's tuning run (profile, steps, LoRA, rewards, the influence
    reference set); operation, output_dir, source and the influence checkpoint are set
    per round."""
    influence_weight: float = DEFAULT_WEIGHTS["influence"]
    """Weight of the data-influence reward in each round's tuning (SynPro's 3); 0 tunes
    without it."""
    adapters: dict[str, str] | None = None
    """Operation → an adapter folder tuned elsewhere, used instead of tuning (every round)."""
    corpus_kwargs: dict[str, Any] = field(default_factory=dict)
    """Generation knobs of the round corpora (``backend``, ``max_new_tokens``, ``store_dir``,
    engine settings; the same flat knobs as ``load_dataset("hf_megadocs", ...)``)."""
    synthetic_share: float = 0.5
    """m of each continuation: the share of every batch from the union of round corpora."""
    train_steps: int | None = None
    """Optimizer steps of each continuation; None = its whole plan (``mix.real_epochs``)."""
    warmup_fraction: float = 0.01
    """Warmup of each continuation's constant learning rate."""
    num_processes: int = 1
    """Processes of each continuation (``accelerate launch --num_processes``)."""
    train_flags: list[str] = field(default_factory=list)
    """Extra ``recipes/train.py`` flags for every continuation (e.g. ``--optim.lr 1e-3``)."""
    control: ControlConfig = field(default_factory=ControlConfig)
    """The repetition-only control arm beside every round (``--control.enabled false``
    turns it off)."""

    def __post_init__(self) -> None:
        if self.num_rounds < 1:
            raise ValueError(f"RoundsConfig.num_rounds must be >= 1, got {self.num_rounds}.")
        if self.trigger not in ("plateau", "now"):
            raise ValueError(
                f"RoundsConfig.trigger must be 'plateau' or 'now', got {self.trigger!r}."
            )
        unknown = sorted(set(self.operations) - set(OPERATION_METHOD))
        if unknown or not self.operations:
            raise ValueError(
                f"RoundsConfig.operations must name some of {sorted(OPERATION_METHOD)}, got "
                f"{self.operations}."
            )
        if self.num_generations < 1:
            raise ValueError(
                f"RoundsConfig.num_generations must be >= 1, got {self.num_generations}."
            )
        if not 0 < self.synthetic_share < 1:
            raise ValueError(
                f"RoundsConfig.synthetic_share must be in (0, 1), got {self.synthetic_share}."
            )
        if self.influence_weight < 0:
            raise ValueError(
                f"RoundsConfig.influence_weight must be >= 0, got {self.influence_weight}."
            )
        missing = sorted(set(self.operations) - set(self.adapters or {}))
        if self.adapters is not None and missing:
            raise ValueError(
                f"RoundsConfig.adapters has no adapter for operation(s) {missing}; give one per "
                "operation, or leave adapters unset to tune them."
            )
        for op, path in (self.adapters or {}).items():
            if not (Path(path) / "adapter_config.json").is_file():
                raise ValueError(
                    f"RoundsConfig.adapters[{op!r}]={path!r} holds no peft adapter (no "
                    "adapter_config.json); pass a folder hf-megadocs tune-generator wrote."
                )
        if self.train_steps is not None and self.train_steps < 1:
            raise ValueError(f"RoundsConfig.train_steps must be >= 1, got {self.train_steps}.")
        if self.uses_influence and self.tune.influence.reference.source is None:
            from hf_megadocs.tuning.reference_set import REFERENCE_HELP

            # Said now, not when round 1 builds its scorer after the trigger has fired.
            raise ValueError(
                "the influence reward (tuning or selection) has no reference set; "
                + REFERENCE_HELP.replace("--influence.", "--tune.influence.")
            )

    @property
    def uses_influence(self) -> bool:
        """Whether a round builds an influence scorer: to tune with it or to select by it."""
        tunes_with_influence = self.adapters is None and self.influence_weight > 0
        return tunes_with_influence or self.selection.score is not None


@dataclass
class RoundsResult:
    """The manifests of the rounds run or found finished, and why the loop stopped."""

    rounds: list[dict[str, Any]]
    stopped: str


def run_rounds(config: RoundsConfig) -> RoundsResult:
    """Run up to ``config.num_rounds`` rounds (finished ones are read, not rerun)."""
    from hf_megadocs.training.checkpoint import checkpoint_of

    out = Path(config.output_dir)
    run_dir = Path(config.run_dir)
    manifests: list[dict[str, Any]] = []
    for index in range(1, config.num_rounds + 1):
        round_dir = out / f"round_{index}"
        if (round_dir / ROUND_MANIFEST).is_file():
            manifests.append(json.loads((round_dir / ROUND_MANIFEST).read_text()))
            logger.info("round %d is finished (%s): skipping it", index, round_dir)
            run_dir = round_dir / "train"
            continue
        checkpoint = checkpoint_of(run_dir, "run_dir")
        plateau = detect_plateau(_metrics(run_dir), config.plateau)
        logger.info("round %d from %s: %s", index, checkpoint, plateau.describe())
        if config.trigger == "plateau" and not plateau.reached:
            _report(config, manifests)
            return RoundsResult(manifests, f"round {index} not started: {plateau.describe()}")
        manifests.append(run_round(config, index, checkpoint, plateau))
        _report(config, manifests)
        run_dir = round_dir / "train"
    _report(config, manifests)
    return RoundsResult(manifests, f"{config.num_rounds} round(s) done")


def _report(config: RoundsConfig, manifests: list[dict[str, Any]]) -> None:
    from hf_megadocs.tuning.rounds_report import write_rounds_report

    if manifests:
        write_rounds_report(Path(config.output_dir), manifests, config.control)


def run_round(
    config: RoundsConfig, index: int, checkpoint: Path, plateau: Plateau | None = None
) -> dict[str, Any]:
    """Round ``index`` from checkpoint θ = ``checkpoint``; returns its manifest."""
    started = time.perf_counter()
    round_dir = Path(config.output_dir) / f"round_{index}"
    round_dir.mkdir(parents=True, exist_ok=True)
    run_info = json.loads((checkpoint / "config.json").read_text())
    ids, texts, doc_counters = training_documents(run_info)
    all_docs = write_documents(round_dir / "all_documents.jsonl", ids, texts)

    scorer = _influence_scorer(config, checkpoint)  # θ′ trained once for the whole round
    adapters = _adapters(config, round_dir, checkpoint, all_docs, scorer)
    scores = _scores(config, scorer, texts)
    selection = select_documents(ids, scores, config.selection)
    logger.info(
        "round %d selection (%s): %s", index, config.selection.mode, dict(selection.counters)
    )
    if not selection.ids:
        raise ValueError(
            f"round {index} selected no documents ({dict(selection.counters)}); loosen "
            "selection (mode 'all', a larger k or fraction)."
        )
    chosen = set(selection.ids)
    documents = write_documents(
        round_dir / "documents.jsonl",
        [i for i in ids if i in chosen],
        [t for i, t in zip(ids, texts, strict=True) if i in chosen],
    )
    corpora = {
        op: generate_round_corpus(
            op,
            index=index,
            num_generations=config.num_generations,
            lora_path=adapters[op]["lora_path"],
            documents=documents,
            round_dir=round_dir,
            corpus_kwargs=config.corpus_kwargs,
            generator=config.tune.generator,
        )
        for op in config.operations
    }
    union = union_of_rounds(
        Path(config.output_dir), index, round_dir, [c["path"] for c in corpora.values()]
    )
    changes = _continuation_changes(config, union["path"])
    training = continue_pretraining(
        run_info, checkpoint, round_dir / "train", round_dir / "train_config.yaml",
        changes=changes, max_steps=config.train_steps, num_processes=config.num_processes,
        train_flags=config.train_flags,
    )  # fmt: skip
    control = None
    if config.control.enabled:
        control = run_control(
            config.control, rounds_dir=Path(config.output_dir), index=index,
            checkpoint=checkpoint, run_info=run_info, rounds_changes=changes,
            steps=training["steps"] - origin_step(checkpoint),
            num_processes=config.num_processes, train_flags=config.train_flags,
        )  # fmt: skip
    manifest = {
        "round": index,
        "finished": True,
        "checkpoint": str(checkpoint.resolve()),
        "checkpoint_step": origin_step(checkpoint),
        "plateau": dataclasses.asdict(plateau) if plateau else None,
        "documents": {**doc_counters, **dict(selection.counters)},
        "selection": dataclasses.asdict(config.selection),
        "adapters": adapters,
        "corpora": corpora,
        "union": union,
        "training": training,
        "control": control,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    (round_dir / ROUND_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    logger.info("round %d done in %.0f s: %s", index, manifest["wall_s"], round_dir)
    return manifest


# ---------------------------------------------------------------- the steps


def _metrics(run_dir: Path) -> list[dict[str, Any]]:
    from hf_megadocs.jsonl import read_records

    path = run_dir / "metrics.jsonl"
    return read_records(path)[0] if path.is_file() else []


def _influence_scorer(config: RoundsConfig, checkpoint: Path) -> Any | None:
    """One influence scorer at θ for the round's tuning and selection, when either uses it."""
    if not config.uses_influence:
        return None
    from hf_megadocs.tuning.influence import InfluenceScorer

    return InfluenceScorer(dataclasses.replace(config.tune.influence, checkpoint=str(checkpoint)))


def _adapters(
    config: RoundsConfig, round_dir: Path, checkpoint: Path, documents: Path, scorer: Any | None
) -> dict[str, dict[str, Any]]:
    """Operation → the adapter generating it this round (tuned now, or given)."""
    from hf_megadocs.adapters import adapter_hash

    if config.adapters is not None:
        return {
            op: {"lora_path": str(Path(path).resolve()), "adapter_hash": adapter_hash(path),
                 "tuned": None}
            for op, path in config.adapters.items()
            if op in config.operations
        }  # fmt: skip
    from hf_megadocs.tuning.tune import tune_generator

    result = {}
    for op in config.operations:
        tune_config = _tune_config(config, op, round_dir, checkpoint, documents)
        tuned = tune_generator(
            tune_config, influence_scorer=scorer if tune_config.influence.enabled else None
        )
        served = tuned.manifest["served"]
        result[op] = {
            "lora_path": served["lora_path"],
            "adapter_hash": served["adapter_hash"],
            "tuned": str(tuned.output_dir / "tuning.json"),
        }
    return result


def _tune_config(
    config: RoundsConfig, op: str, round_dir: Path, checkpoint: Path, documents: Path
) -> TuneConfig:
    """The template with this round's operation, folder, documents and influence checkpoint."""
    template = config.tune
    rewards = {k: v for k, v in (template.rewards or {}).items() if k != "influence"}
    if config.influence_weight > 0:
        rewards["influence"] = config.influence_weight
    return dataclasses.replace(
        template,
        operation=op,  # type: ignore[arg-type]
        output_dir=str(round_dir / f"tune_{op}"),
        prompt_id=None,
        source=SourceConfig(
            source=str(documents),
            id_column="source_id",
            max_docs=template.source.max_docs,
        ),
        influence=dataclasses.replace(template.influence, checkpoint=str(checkpoint)),
        rewards=rewards,
        full_finetune=False,  # rounds serve adapters on the base generator
    )


def _scores(config: RoundsConfig, scorer: Any | None, texts: list[str]) -> list[float] | None:
    """Per document, what the selection mode ranks by (None for "all")."""
    if config.selection.score is None or scorer is None:
        return None
    if config.selection.score == "loss":
        return scorer.cross_entropy(scorer.model, texts)
    return scorer.influence(texts)


def _continuation_changes(config: RoundsConfig, union: str) -> dict[str, dict[str, Any]]:
    """What the rounds' continuation changes in the checkpoint's run settings: the union as
    its synthetic stream, at share m, and a constant learning rate after a short warmup."""
    return {
        "data": {"synthetic_corpus": None, "synthetic_path": union},
        "mix": {"synthetic_share": config.synthetic_share},
        "optim": {"schedule": "constant", "warmup_fraction": config.warmup_fraction},
    }


__all__ = ["OPERATION_METHOD", "RoundsConfig", "RoundsResult", "run_round", "run_rounds"]
