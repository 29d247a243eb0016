"""Scaling-law fits L(x) = A / x^α + E and the data-efficiency multiplier.

The data law uses x = D, the unique real training tokens of real-only runs; the
parameter law uses x = N, the model's parameter count. Fitting A, α, E directly is badly
conditioned (A spans many orders of magnitude), so the fit works in the scaled form

    L(x) = exp(a − α · log(x / x0)) + E,      x0 = geometric mean of the x values,

whose parameters are all O(1), and converts back with A = exp(a) · x0^α. Standard errors
come from ``curve_fit``'s covariance (delta method for A). Three parameters need at least
four points so that one degree of freedom is left for the uncertainty.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from hf_megadocs.analysis.runs import REAL_METHOD, Run, RunError, check_same
from hf_megadocs.extras import require

logger = logging.getLogger(__name__)

MIN_POINTS = 4
"""Points needed for a three-parameter fit with an uncertainty (3 parameters + 1)."""


class InsufficientPointsError(ValueError):
    """Too few distinct points for a scaling-law fit."""


@dataclass(frozen=True, kw_only=True)
class ScalingLawFit:
    """A fitted law L(x) = A / x^α + E with standard errors."""

    quantity: Literal["D", "N"]
    """What x is: "D" (unique real tokens) or "N" (parameters)."""
    A: float
    """Scale, for x in its natural unit (tokens or parameters)."""
    alpha: float
    """Exponent α > 0."""
    E: float
    """Irreducible loss: the asymptote as x → ∞."""
    A_err: float
    """Standard error of A (delta method from the log-space covariance)."""
    alpha_err: float
    E_err: float
    x: tuple[float, ...]
    """The x values that were fitted."""
    loss: tuple[float, ...]
    """The losses that were fitted."""
    covariance: tuple[tuple[float, ...], ...]
    """Covariance of (a, α, E) in the scaled form (``a = log A − α·log x0``)."""
    x0: float
    """The scale x0 of the scaled form."""

    @property
    def n_points(self) -> int:
        return len(self.x)

    @property
    def residual_rms(self) -> float:
        """Root-mean-square difference between the fitted and observed losses."""
        pred = self.predict(np.asarray(self.x))
        return float(np.sqrt(np.mean((pred - np.asarray(self.loss)) ** 2)))

    @property
    def residual_std(self) -> float:
        """Residual standard deviation with n − 3 degrees of freedom (the loss noise estimate)."""
        pred = self.predict(np.asarray(self.x))
        sse = float(np.sum((pred - np.asarray(self.loss)) ** 2))
        return math.sqrt(sse / max(1, self.n_points - 3))

    def predict(self, x: float | np.ndarray) -> float | np.ndarray:
        """L(x) under the fitted law."""
        x_arr = np.asarray(x, dtype=float)
        out = np.exp(self._log_a() - self.alpha * np.log(x_arr / self.x0)) + self.E
        return float(out) if out.ndim == 0 else out

    def inverse(self, loss: float) -> float:
        """The x at which the law reaches ``loss``; ``inf`` when ``loss <= E``."""
        if not math.isfinite(loss) or loss <= 0:
            raise ValueError(f"loss must be a finite positive number, got {loss!r}.")
        if loss <= self.E:
            return math.inf
        return self.x0 * math.exp((self._log_a() - math.log(loss - self.E)) / self.alpha)

    def _log_a(self) -> float:
        return math.log(self.A) - self.alpha * math.log(self.x0)

    def describe(self) -> str:
        """One line: the law with its parameters ± standard errors."""
        return (
            f"L({self.quantity}) = A/{self.quantity}^α + E with A = {self.A:.4g} ± {self.A_err:.2g}, "
            f"α = {self.alpha:.4f} ± {self.alpha_err:.2g}, E = {self.E:.4f} ± {self.E_err:.2g} "
            f"({self.n_points} points, residual RMS {self.residual_rms:.2g})"
        )


def _model(log_x: np.ndarray, a: float, alpha: float, e: float) -> np.ndarray:
    return np.exp(a - alpha * log_x) + e


def _initial_guess(log_x: np.ndarray, loss: np.ndarray) -> tuple[float, float, float]:
    """Best (a, α, E) of log-linear fits of log(L − E) over a grid of E below min(L)."""
    best, best_sse = (0.0, 0.5, 0.0), math.inf
    for e in np.linspace(0.0, float(loss.min()) * 0.999, 50):
        slope, intercept = np.polyfit(log_x, np.log(loss - e), 1)
        if slope >= 0:
            continue
        sse = float(np.sum((_model(log_x, intercept, -slope, e) - loss) ** 2))
        if sse < best_sse:
            best, best_sse = (float(intercept), float(-slope), float(e)), sse
    return best


def fit_power_law(
    x: Sequence[float], loss: Sequence[float], *, quantity: Literal["D", "N"] = "D"
) -> ScalingLawFit:
    """Fit L(x) = A/x^α + E by least squares (scipy ``curve_fit``) with standard errors.

    Needs at least :data:`MIN_POINTS` distinct x values; raises
    :class:`InsufficientPointsError` otherwise, and ``ValueError`` for non-positive x or
    non-finite losses.
    """
    curve_fit = require("scipy.optimize", "analysis", "Fitting a scaling law").curve_fit

    x_arr, loss_arr = np.asarray(x, dtype=float), np.asarray(loss, dtype=float)
    if x_arr.shape != loss_arr.shape or x_arr.ndim != 1:
        raise ValueError(
            f"x and loss must be 1-D and equal length, got {x_arr.shape} and {loss_arr.shape}."
        )
    if np.any(~np.isfinite(x_arr)) or np.any(x_arr <= 0):
        raise ValueError(f"every {quantity} must be finite and > 0, got {x_arr.tolist()}.")
    if np.any(~np.isfinite(loss_arr)) or np.any(loss_arr <= 0):
        raise ValueError(f"every loss must be finite and > 0, got {loss_arr.tolist()}.")
    distinct = len(np.unique(x_arr))
    if distinct < MIN_POINTS:
        raise InsufficientPointsError(
            f"a fit of L({quantity}) = A/{quantity}^α + E has 3 parameters and needs at least "
            f"{MIN_POINTS} distinct {quantity} values (3 + 1 for the uncertainty); got {distinct} "
            f"({sorted(set(x_arr.tolist()))}). Add runs at more {quantity} values."
        )
    x0 = float(np.exp(np.mean(np.log(x_arr))))
    log_x = np.log(x_arr / x0)
    p0 = _initial_guess(log_x, loss_arr)
    lower, upper = [-np.inf, 1e-6, 0.0], [np.inf, 10.0, float(loss_arr.min())]
    p0 = (p0[0], min(max(p0[1], 1e-3), 9.9), min(p0[2], upper[2] * (1 - 1e-9)))
    try:
        params, cov = curve_fit(
            _model,
            log_x,
            loss_arr,
            p0=p0,
            bounds=(lower, upper),
            method="trf",
            maxfev=20000,
            x_scale="jac",
        )
    except RuntimeError as err:  # scipy's "optimal parameters not found"
        raise ValueError(
            f"the L({quantity}) fit did not converge on {len(x_arr)} points ({err}); the losses "
            f"{loss_arr.round(4).tolist()} may not decrease with {quantity}. Check the runs."
        ) from err
    a, alpha, e = (float(v) for v in params)
    cov = np.asarray(cov, dtype=float)
    if not np.all(np.isfinite(cov)):
        logger.warning(
            "L(%s) fit: the covariance is not finite (%d points for 3 parameters, or a "
            "parameter at its bound); standard errors are reported as inf",
            quantity,
            len(x_arr),
        )
    errs = np.sqrt(np.clip(np.diag(cov), 0, None))
    log_x0 = math.log(x0)
    big_a = math.exp(a + alpha * log_x0)
    var_log_a = cov[0, 0] + log_x0**2 * cov[1, 1] + 2 * log_x0 * cov[0, 1]
    a_err = (
        big_a * math.sqrt(var_log_a) if math.isfinite(var_log_a) and var_log_a >= 0 else math.inf
    )
    return ScalingLawFit(
        quantity=quantity,
        A=big_a,
        alpha=alpha,
        E=e,
        A_err=a_err,
        alpha_err=float(errs[1]),
        E_err=float(errs[2]),
        x=tuple(float(v) for v in x_arr),
        loss=tuple(float(v) for v in loss_arr),
        covariance=tuple(tuple(float(v) for v in row) for row in cov),
        x0=x0,
    )


def _best_per_value(pairs: Sequence[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """Lowest loss per x: several runs at one x (e.g. a sweep) contribute their best."""
    best: dict[float, float] = {}
    for x, loss in pairs:
        best[x] = min(loss, best.get(x, math.inf))
    xs = sorted(best)
    return xs, [best[x] for x in xs]


def fit_data_scaling_law(runs: Sequence[Run]) -> ScalingLawFit:
    """Fit L(D) on the real-only runs among ``runs`` (one tokenizer, one model size).

    D is each run's unique real training tokens; at each D the lowest i.i.d. loss is used.
    """
    real = [run for run in runs if run.method == REAL_METHOD]
    if not real:
        names = [run.name for run in runs]
        raise InsufficientPointsError(
            f"data scaling law: none of the runs {names} is real-only (method={REAL_METHOD!r}); "
            f"train real-only runs at {MIN_POINTS}+ real-data sizes."
        )
    check_same(real, "tokenizer", "data scaling law")
    check_same(real, "num_params", "data scaling law")
    xs, losses = _best_per_value([(run.real_tokens, run.iid_loss) for run in real])
    return fit_power_law(xs, losses, quantity="D")


def fit_parameter_scaling_law(runs: Sequence[Run]) -> ScalingLawFit:
    """Fit the parameter asymptote L(N) = A/N^α + E over runs of one recipe and data.

    The runs must share tokenizer, method, G and real tokens; they differ in model size.
    """
    for attribute in ("tokenizer", "method", "num_generations", "real_tokens"):
        check_same(runs, attribute, "parameter scaling law")
    xs, losses = _best_per_value([(run.num_params, run.iid_loss) for run in runs])
    return fit_power_law(xs, losses, quantity="N")


def equivalent_real_tokens(loss: float, fit: ScalingLawFit) -> float:
    """Real tokens a real-only run would need to reach ``loss`` under the data law.

    ``inf`` when ``loss <= E`` (no amount of real data reaches it under the fitted law).
    """
    if fit.quantity != "D":
        raise ValueError(
            f"equivalent_real_tokens needs a data law (quantity 'D'), got {fit.quantity!r}."
        )
    return fit.inverse(loss)


def data_efficiency(run: Run, fit: ScalingLawFit) -> float:
    """Equivalent real tokens of ``run``'s i.i.d. loss divided by the real tokens it used.

    The paper's 1.48× (simple, G=32) and 1.80× (stitched, G=32) are this number. The run
    must share the fit's tokenizer; that is checked by the caller that holds both sets.
    """
    if run.real_tokens <= 0:
        raise RunError(
            f"run {run.path}: real_tokens is {run.real_tokens}; data efficiency needs > 0."
        )
    return equivalent_real_tokens(run.iid_loss, fit) / run.real_tokens


def efficiency_interval(
    loss: float,
    real_tokens: float,
    fit: ScalingLawFit,
    *,
    level: float = 0.68,
    include_loss_noise: bool = True,
    samples: int = 4000,
    seed: int = 0,
) -> tuple[float, float]:
    """A ``level`` interval of the data-efficiency multiplier of a run at ``loss``.

    Draws (a, α, E) from a multivariate t with the fit's covariance and n − 3 degrees of
    freedom (few points make the covariance itself uncertain) and, with
    ``include_loss_noise``, the run's loss from its own seed noise, estimated by the fit's
    residual standard deviation. Samples with ``loss <= E`` count as an infinite
    multiplier, so the upper end may be inf. (nan, nan) when the covariance is not finite.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}.")
    cov = np.asarray(fit.covariance)
    if not np.all(np.isfinite(cov)):
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    dof = max(1, fit.n_points - 3)
    mean = np.array([fit._log_a(), fit.alpha, fit.E])
    normal = rng.multivariate_normal(np.zeros(3), cov, size=samples, method="eigh")
    draws = mean + normal / np.sqrt(rng.chisquare(dof, size=(samples, 1)) / dof)
    a, alpha, e = draws[:, 0], draws[:, 1], draws[:, 2]
    losses = np.full(samples, float(loss))
    if include_loss_noise:
        losses = losses + fit.residual_std * rng.standard_t(dof, size=samples)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        gap = losses - e
        log_ratio = (a - np.log(np.where(gap > 0, gap, np.nan))) / alpha
        mult = fit.x0 * np.exp(log_ratio) / real_tokens
        mult = np.where((gap > 0) & (alpha > 0), mult, np.inf)
        # No interpolation: between two infinite samples it would give nan, not inf.
        lo, hi = np.quantile(mult, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf")
    return float(lo), float(hi)
