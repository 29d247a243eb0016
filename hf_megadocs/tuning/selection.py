"""Which documents a model-aware round regenerates, and when a round is due.

Pure functions over scores and metrics records: no model, no I/O.

- :func:`select_documents`: SynPro's own pipeline regenerates every document ("all"); its
  code also carries, unused, a selection by influence (top-k, positive only, Gumbel-top-k
  at temperature 0.5); "highest_loss" picks the documents the checkpoint still predicts
  worst. Ties and noise are keyed by document id, so the choice does not depend on the
  order documents arrive in.
- :func:`detect_plateau`: the loss on the run's *selection* documents (validation
  documents held apart from the reported ``iid_loss`` by ``eval.selection_fraction``) has
  stopped improving; the reported loss never decides when a round starts (SynPro
  triggered rounds by hand when its reference loss saturated).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

SelectionMode = Literal["all", "top_k", "positive", "gumbel_top_k", "highest_loss"]
SELECTION_MODES: tuple[str, ...] = ("all", "top_k", "positive", "gumbel_top_k", "highest_loss")

SCORE_OF_MODE: dict[str, str | None] = {
    "all": None,
    "top_k": "influence",
    "positive": "influence",
    "gumbel_top_k": "influence",
    "highest_loss": "loss",
}
"""The per-document score each mode ranks by (None: no score needed)."""


@dataclass(kw_only=True)
class SelectionConfig:
    """How a round picks the documents it regenerates."""

    mode: SelectionMode = "all"
    """"all" (SynPro's pipeline), "top_k" / "positive" / "gumbel_top_k" by the source's
    influence on the checkpoint, or "highest_loss" (the checkpoint's cross-entropy)."""
    k: int | None = None
    """Documents kept by the ranked modes; None = ``fraction`` of them."""
    fraction: float = 0.5
    """Share of documents kept by the ranked modes when ``k`` is unset."""
    temperature: float = 0.5
    """Gumbel-top-k temperature (SynPro's 0.5): lower is closer to plain top-k."""
    seed: int = 0
    """Seed of the Gumbel noise."""

    def __post_init__(self) -> None:
        if self.mode not in SELECTION_MODES:
            raise ValueError(
                f"selection.mode must be one of {list(SELECTION_MODES)}, got {self.mode!r}."
            )
        if self.k is not None and self.k < 1:
            raise ValueError(f"selection.k must be >= 1 or unset, got {self.k}.")
        if not 0 < self.fraction <= 1:
            raise ValueError(f"selection.fraction must be in (0, 1], got {self.fraction}.")
        if self.temperature <= 0:
            raise ValueError(f"selection.temperature must be > 0, got {self.temperature}.")

    @property
    def score(self) -> str | None:
        """ "influence", "loss" or None: what :func:`select_documents` needs per document."""
        return SCORE_OF_MODE[self.mode]

    def count(self, available: int) -> int:
        """Documents a ranked mode keeps out of ``available``."""
        wanted = self.k if self.k is not None else math.ceil(self.fraction * available)
        return min(available, wanted)


@dataclass
class Selection:
    """The chosen document ids (in the input order) and what happened to the rest."""

    ids: list[str]
    counters: Counter = field(default_factory=Counter)


def _uniform(seed: int, source_id: str) -> float:
    digest = hashlib.sha256(f"{seed}:{source_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") + 0.5) / 2**64


def select_documents(
    ids: Sequence[str], scores: Sequence[float] | None, config: SelectionConfig
) -> Selection:
    """The documents to regenerate; every document left out is counted by reason.

    ``scores`` (one per id, as :attr:`SelectionConfig.score` says) may be None for "all".
    A NaN score (a text too short to score) drops its document, counted as ``unscored``.
    """
    counters: Counter = Counter(candidates=len(ids))
    if config.mode == "all":
        counters["selected"] = len(ids)
        return Selection(list(ids), counters)
    if scores is None or len(scores) != len(ids):
        raise ValueError(
            f"selection.mode={config.mode!r} ranks documents by their {config.score}: pass one "
            f"score per document (got {0 if scores is None else len(scores)} for {len(ids)})."
        )
    scored = [(i, s) for i, s in zip(ids, scores, strict=True) if not math.isnan(s)]
    counters["unscored"] = len(ids) - len(scored)
    if config.mode == "positive":
        chosen = {i for i, s in scored if s > 0}
        counters["not_positive"] = len(scored) - len(chosen)
    else:
        if config.mode == "gumbel_top_k":
            keyed = [
                (s / config.temperature - math.log(-math.log(_uniform(config.seed, i))), i)
                for i, s in scored
            ]
        else:  # top_k by influence, highest_loss by loss: the highest scores first
            keyed = [(s, i) for i, s in scored]
        keyed.sort(key=lambda pair: (-pair[0], pair[1]))
        keep = config.count(len(keyed))
        chosen = {i for _, i in keyed[:keep]}
        counters["below_rank"] = len(keyed) - keep
    selected = [i for i in ids if i in chosen]
    counters["selected"] = len(selected)
    return Selection(selected, counters)


PLATEAU_METRIC = "selection_loss"
"""What the plateau trigger reads: the loss on validation documents held apart from the
reported ``iid_loss`` (``eval.selection_fraction`` of the run), so the documents a report
scores never drive a training decision."""


@dataclass(kw_only=True)
class PlateauConfig:
    """When a run's held-out (selection) loss counts as plateaued."""

    window: int = 3
    """The last ``window`` evaluations are compared with every one before them."""
    min_relative_improvement: float = 0.005
    """A plateau: the best loss of the window improves the best before it by less than this
    share (0.005 = 0.5%)."""

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"plateau.window must be >= 1, got {self.window}.")
        if self.min_relative_improvement < 0:
            raise ValueError(
                "plateau.min_relative_improvement must be >= 0, got "
                f"{self.min_relative_improvement}."
            )


@dataclass
class Plateau:
    """The outcome of :func:`detect_plateau`."""

    reached: bool
    step: int | None
    """Step of the last evaluation considered (None without evaluations)."""
    improvement: float | None
    """Relative improvement of the window over the evaluations before it."""
    evaluations: int
    without_selection: int = 0
    """Eval records with no ``selection_loss`` (a run trained with
    ``eval.selection_fraction`` 0): their reported loss is not read."""

    def describe(self) -> str:
        if self.improvement is None:
            text = (
                f"{self.evaluations} evaluation(s) of {PLATEAU_METRIC}: too few to judge a plateau"
            )
            if self.without_selection:
                text += (
                    f" ({self.without_selection} evaluation(s) have no {PLATEAU_METRIC}, only "
                    "the reported iid_loss, which never triggers a round: train the run with "
                    "--eval.selection_fraction 0.5, or start rounds with --trigger now)"
                )
            return text
        verdict = "plateau" if self.reached else "still improving"
        return (
            f"{verdict} at step {self.step}: the last evaluations improved {PLATEAU_METRIC} "
            f"by {100 * self.improvement:.2f}% ({self.evaluations} evaluations)"
        )


def detect_plateau(records: Sequence[dict[str, Any]], config: PlateauConfig) -> Plateau:
    """Whether the :data:`PLATEAU_METRIC` of the eval records in ``records`` has plateaued
    (their ``iid_loss``, the reported loss, is never read)."""
    evals = sorted(
        (int(r["step"]), float(r[PLATEAU_METRIC]))
        for r in records
        if r.get("kind") == "eval"
        and isinstance(r.get(PLATEAU_METRIC), int | float)
        and math.isfinite(r[PLATEAU_METRIC])
    )
    missing = sum(1 for r in records if r.get("kind") == "eval" and PLATEAU_METRIC not in r)
    if len(evals) <= config.window:
        return Plateau(False, evals[-1][0] if evals else None, None, len(evals), missing)
    before = min(loss for _, loss in evals[: -config.window])
    recent = min(loss for _, loss in evals[-config.window :])
    improvement = (before - recent) / abs(before) if before else 0.0
    reached = improvement < config.min_relative_improvement
    return Plateau(reached, evals[-1][0], improvement, len(evals), missing)


__all__ = [
    "PLATEAU_METRIC",
    "SELECTION_MODES",
    "Plateau",
    "PlateauConfig",
    "Selection",
    "SelectionConfig",
    "SelectionMode",
    "detect_plateau",
    "select_documents",
]
