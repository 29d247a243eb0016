"""The data-efficiency multiplier as a measurement: interpolation between measured real-data
sizes, and a bootstrap interval over seeds.

A study measures real-only runs at sizes D_0 < D_1 < … < D_K (each over a grid of settings,
several seeds) and trains each method on the base size D_0. The method's *equivalent real
tokens* are the D at which the real-only loss curve reaches the method's loss:

1. At each size, the setting (epochs, weight decay, …) with the lowest mean *selection*
   loss is chosen, and its mean *reported* loss is the curve's point (the selection
   documents are disjoint from the reported ones, so no point picked its own setting).
2. The curve is made non-increasing in D: the mean of its running minimum from the left
   and its running maximum from the right (equal to the points where they already fall).
3. The method's mean loss is placed on the curve by linear interpolation in log D between
   the two bracketing sizes. A loss above the curve at D_0 is "< 1×"; a loss below the
   curve at D_K is "> D_K/D_0× (beyond the measured sizes)": never a number.

No law's form enters the number; :func:`hf_megadocs.analysis.fit.fit_power_law` stays a
smoother and a picture, with :func:`lack_of_fit` saying whether it fits its points.

The interval resamples seeds with replacement at every size and for the method, redoes
step 1 inside each resample, and re-interpolates; its ends are the 2.5th and 97.5th
percentiles. With n seeds a plain bootstrap of a mean is too narrow (it cannot leave the
range of the n values: with 3 seeds it covers about 75% of the time for a nominal 95%), so
each resampled mean is *expanded* about the sample mean by
κ_n = √(n/(n−1)) · t_{n−1}(0.975) / z(0.975), Hesterberg's (2015) expansion written on the
deviations instead of the tail share (10 distinct resamples of 3 seeds have no tail
quantiles to read): 2.69 for 3 seeds, 1.22 for 10, → 1 as n grows. With one seed there is
no spread to resample and the interval says so. Generator randomness (which text the
generator wrote) is not resampled: the interval is over training seeds only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from hf_megadocs.extras import require

Placement = Literal["inside", "below", "above"]
"""Where a loss falls on the measured curve: between two sizes, above the curve at the
smallest size (worse than real-only on D_0), or below it at the largest (beyond)."""


@dataclass(frozen=True)
class SizeRuns:
    """The real-only runs at one real-data size: every setting × seed."""

    real_tokens: float
    """D: unique real training tokens at this size."""
    selection: Mapping[str, Mapping[int, float]]
    """setting → seed → selection loss (the loss that chooses the setting)."""
    reported: Mapping[str, Mapping[int, float]]
    """setting → seed → reported (i.i.d.) loss."""

    def complete_seeds(self) -> list[int]:
        """Seeds that ran every setting (a resample must compare settings on one seed set)."""
        sets = [set(by_seed) for by_seed in self.selection.values()]
        sets += [set(by_seed) for by_seed in self.reported.values()]
        return sorted(set.intersection(*sets)) if sets else []

    def matrices(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(settings, selection[setting, seed], reported[setting, seed]) over complete seeds."""
        seeds = self.complete_seeds()
        settings = sorted(self.selection)
        select = np.array([[self.selection[s][seed] for seed in seeds] for s in settings])
        report = np.array([[self.reported[s][seed] for seed in seeds] for s in settings])
        return settings, select, report


@dataclass(frozen=True)
class CurvePoint:
    """One measured size on the real-only curve (no resampling)."""

    real_tokens: float
    setting: str
    """The setting chosen on the selection documents (mean over seeds)."""
    losses: tuple[float, ...]
    """That setting's reported loss, each seed."""
    best_by_seed: tuple[str, ...]
    """The setting each seed alone would choose (shows how stable the choice is)."""

    @property
    def loss(self) -> float:
        return float(np.mean(self.losses))


@dataclass(frozen=True)
class Estimate:
    """A method's placement on the real-only curve, with its bootstrap interval."""

    multiplier: float
    """Equivalent real tokens / the method's real tokens; ``nan`` unless ``inside``."""
    placement: Placement
    equivalent_tokens: float
    """``nan`` unless ``inside``."""
    low: float
    """Lower end of the interval: a multiplier, or ``-inf`` for "below 1×"."""
    high: float
    """Upper end: a multiplier, or ``inf`` for "beyond the measured sizes"."""
    max_multiplier: float
    """D_K / the method's real tokens: the largest multiplier the study can measure."""
    level: float
    """Nominal coverage of [low, high] (0.95)."""
    seeds: int
    """The fewest seeds of any group the estimate used (1: no seed spread)."""
    resamples: int

    def describe(self) -> str:
        """``1.42× [1.10, 1.95]``, ``< 1× [< 1, 1.20]``, ``> 8× (beyond …) [5.1, > 8]``."""
        top = f"{self.max_multiplier:.3g}"
        if self.placement == "below":
            head = "< 1×"
        elif self.placement == "above":
            head = f"> {top}× (beyond the measured sizes)"
        else:
            head = f"{self.multiplier:.2f}×"
        if self.seeds < 2:
            return f"{head} [no seed spread: 1 seed]"

        def end(value: float) -> str:
            if value == -math.inf:
                return "< 1"
            if value == math.inf:
                return f"> {top}"
            return f"{value:.2f}"

        return f"{head} [{end(self.low)}, {end(self.high)}]"


def curve_points(sizes: Sequence[SizeRuns]) -> list[CurvePoint]:
    """The measured curve on all seeds: the chosen setting and its losses at each size."""
    points = []
    for size in sorted(sizes, key=lambda s: s.real_tokens):
        settings, select, report = size.matrices()
        if select.size == 0:
            raise ValueError(
                f"no seed ran every setting at D = {size.real_tokens:,.0f}; finish those runs."
            )
        chosen = int(np.argmin(select.mean(axis=1)))
        points.append(CurvePoint(
            real_tokens=size.real_tokens, setting=settings[chosen],
            losses=tuple(float(v) for v in report[chosen]),
            best_by_seed=tuple(settings[i] for i in np.argmin(select, axis=0)),
        ))  # fmt: skip
    return points


def monotone_curve(losses: np.ndarray) -> np.ndarray:
    """Non-increasing along the last axis: the mean of the running minimum from the left
    and the running maximum from the right (both non-increasing; each equal to the input
    where it already falls)."""
    from_left = np.minimum.accumulate(losses, axis=-1)
    from_right = np.flip(np.maximum.accumulate(np.flip(losses, axis=-1), axis=-1), axis=-1)
    return (from_left + from_right) / 2


def place(
    loss: np.ndarray, log_tokens: np.ndarray, curve: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """log D at which each non-increasing ``curve`` row reaches ``loss`` (linear in log D
    between the bracketing sizes), and a code: 0 inside, -1 below D_0's loss, 1 beyond D_K."""
    loss, curve = np.atleast_1d(loss), np.atleast_2d(curve)
    below, above = loss > curve[:, 0], loss < curve[:, -1]
    k = np.clip((curve >= loss[:, None]).sum(axis=1) - 1, 0, curve.shape[1] - 2)
    rows = np.arange(len(loss))
    hi, lo = curve[rows, k], curve[rows, k + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(hi > lo, (hi - loss) / (hi - lo), 0.5)
    log_d = log_tokens[k] + np.clip(t, 0, 1) * (log_tokens[k + 1] - log_tokens[k])
    code = np.where(below, -1, np.where(above, 1, 0))
    return log_d, code


def expansion(level: float, n: int) -> float:
    """κ_n = √(n/(n−1)) · t_{n−1}(1 − α/2) / z(1 − α/2): how far resampled means of ``n``
    seeds are stretched about their sample mean so a ``level`` interval keeps its level."""
    stats = require("scipy.stats", "analysis", "Seed-resampled efficiency intervals")
    norm, t = stats.norm, stats.t

    tail = 1 - (1 - level) / 2
    return float(math.sqrt(n / (n - 1)) * t.ppf(tail, n - 1) / norm.ppf(tail))


def _resampled_means(
    values: np.ndarray, rng: np.random.Generator, resamples: int, level: float
) -> tuple[np.ndarray, np.ndarray]:
    """Seed indices drawn with replacement (resamples × seeds) and, for each row of
    ``values`` (… × seeds), the expanded resampled means (… × resamples)."""
    n = values.shape[-1]
    idx = rng.integers(0, n, size=(resamples, n))
    mean = values.mean(axis=-1, keepdims=True)
    return idx, mean + expansion(level, n) * (values[..., idx].mean(axis=-1) - mean)


def estimate(
    method_losses: Mapping[int, float],
    method_tokens: float,
    sizes: Sequence[SizeRuns],
    *,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Estimate:
    """Place a method (its reported loss per seed, trained on ``method_tokens`` real
    tokens) on the real-only curve of ``sizes``, with a bootstrap interval over seeds."""
    if len(sizes) < 2:
        raise ValueError(
            f"the real-only curve needs at least 2 measured sizes, got {len(sizes)}; train "
            "real-only runs from the base size up to 8× it."
        )
    if not method_losses:
        raise ValueError("the method has no finished seed to place.")
    ordered = sorted(sizes, key=lambda s: s.real_tokens)
    log_tokens = np.log([s.real_tokens for s in ordered])
    mats = [s.matrices() for s in ordered]
    points = curve_points(ordered)
    curve = monotone_curve(np.array([[p.loss for p in points]]))
    method = np.array(list(method_losses.values()), dtype=float)
    log_d, code = place(np.array([method.mean()]), log_tokens, curve)
    top = math.exp(log_tokens[-1]) / method_tokens
    placement: Placement = ("below", "inside", "above")[int(code[0]) + 1]
    equivalent = math.exp(log_d[0]) if placement == "inside" else math.nan
    n_min = min([len(method), *(select.shape[1] for _, select, _ in mats)])
    if n_min < 2:
        return Estimate(
            multiplier=equivalent / method_tokens, placement=placement,
            equivalent_tokens=equivalent, low=math.nan, high=math.nan, max_multiplier=top,
            level=level, seeds=n_min, resamples=0,
        )  # fmt: skip
    rng = np.random.default_rng(seed)
    boot_curve = np.empty((resamples, len(ordered)))
    for k, (_, select, report) in enumerate(mats):
        # One draw of seeds serves both sets: a seed's selection and reported losses come
        # from one model.
        stacked = np.stack([select, report])  # (2, settings, seeds)
        _, (select_means, report_means) = _resampled_means(stacked, rng, resamples, level)
        chosen = select_means.argmin(axis=0)  # (resamples,)
        boot_curve[:, k] = report_means[chosen, np.arange(resamples)]
    _, boot_method = _resampled_means(method, rng, resamples, level)
    boot_log_d, boot_code = place(boot_method, log_tokens, monotone_curve(boot_curve))
    values = np.where(
        boot_code < 0, -np.inf, np.where(boot_code > 0, np.inf, np.exp(boot_log_d) / method_tokens)
    )
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail], method="inverted_cdf")
    return Estimate(
        multiplier=equivalent / method_tokens, placement=placement, equivalent_tokens=equivalent,
        low=float(low), high=float(high), max_multiplier=top, level=level, seeds=n_min,
        resamples=resamples,
    )  # fmt: skip


@dataclass(frozen=True)
class LackOfFit:
    """How well a fitted law follows the measured curve, against the seeds' noise."""

    chi2: float
    """Σ ((point − law) / standard error of the point)², the standard errors from the
    seed variance pooled over every size (one seed's spread of 3 is too noisy alone)."""
    dof: int
    """Points − 3 parameters."""
    p_value: float
    """P(F ≥ chi2/dof) with (dof, pooled seed dof) degrees of freedom, the lack-of-fit F
    test; ``nan`` when dof < 1 or no size has two seeds."""

    @property
    def rejected(self) -> bool:
        """The law does not fit its points at the 5% level."""
        return self.p_value < 0.05

    def describe(self) -> str:
        if math.isnan(self.p_value):
            return (
                f"lack of fit not testable ({self.dof} degrees of freedom beyond the law's 3 "
                "parameters, or no size with two seeds)"
            )
        verdict = (
            "rejected: the law does not follow its points" if self.rejected else "not rejected"
        )
        return (
            f"lack of fit χ² = {self.chi2:.3g} on {self.dof} dof against the pooled seed "
            f"standard errors, p = {self.p_value:.2g} ({verdict})"
        )


def lack_of_fit(predicted: Sequence[float], points: Sequence[CurvePoint]) -> LackOfFit:
    """A law's ``predicted`` losses against the curve ``points``: χ² with each point's
    standard error (pooled seed standard deviation / √seeds) and the F test's p-value."""
    f_dist = require("scipy.stats", "analysis", "The lack-of-fit test").f

    dof = len(points) - 3
    spread_dof = sum(len(p.losses) - 1 for p in points)
    if dof < 1 or spread_dof < 1:
        return LackOfFit(chi2=math.nan, dof=dof, p_value=math.nan)
    pooled = sum(float(np.sum((np.array(p.losses) - p.loss) ** 2)) for p in points) / spread_dof
    if pooled <= 0:
        return LackOfFit(chi2=math.nan, dof=dof, p_value=math.nan)
    chi2 = sum(len(p.losses) * (p.loss - f) ** 2 / pooled for p, f in zip(points, predicted))
    return LackOfFit(
        chi2=float(chi2), dof=dof, p_value=float(f_dist.sf(chi2 / dof, dof, spread_dof))
    )


__all__ = ["CurvePoint", "Estimate", "LackOfFit", "Placement", "SizeRuns", "curve_points",
           "estimate", "expansion", "lack_of_fit", "monotone_curve", "place"]  # fmt: skip
