"""How well the data-efficiency multiplier is recovered from a handful of noisy real-only runs.

Usage::

    python benchmarks/bench_fit.py [--trials 200] [--seed 0]

It prints two tables: first the study's own estimator on the reference protocol (below),
then the extrapolating law fit.

**The study's estimator.** The method trains on D0 = D_max/8 and real-only runs at
D0 × {1, 1.5, 2, 3, 4, 6, 8}, each with three settings (the best on the law, the others
+0.04 and +0.1), n seeds with a shared seed effect of size σ and independent evaluation
noise σ/3 on the selection and reported documents; the truth is a power law or a law
concave in log D (loss falling faster as D grows, like the CPU study's points). For true
multipliers 1.7× and 4.5× we report the median error of
:func:`hf_megadocs.analysis.efficiency.estimate` and how often its 95% interval covers the
truth.

A known law with the paper's real-only end point (L = 3.5544 at D = 203.9M tokens, α = 0.3,
E = 3.0) generates real-only losses at k geometrically spaced D values from D_max/16 to
D_max, with Gaussian noise σ (seed-to-seed loss noise). For a run at D_max whose true
multiplier is 1.80× (the paper's stitched G=32 figure), placed at D_max so that its
equivalent D lies *beyond* the fitted range, we fit L(D) with ``fit_power_law`` and report the
multiplier's median and 90th-percentile relative error, how often the 68% interval from
``efficiency_interval`` contains the truth, refused/failed fits, and the time per fit.
Prints a Markdown table.

This is the extrapolating protocol the study no longer uses: the paper's reference protocol
(and ``hf-megadocs study``) trains the method on the base size D0 and measures real-only up
to 8·D0, so its multipliers are interpolations (:mod:`hf_megadocs.analysis.efficiency`,
whose 95% interval's coverage is tested on simulated studies in
``tests/analysis/test_efficiency.py``). The table shows what extrapolating from a fitted
law costs.
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import numpy as np

from hf_megadocs.analysis.efficiency import SizeRuns, estimate
from hf_megadocs.analysis.fit import efficiency_interval, fit_power_law

D_MAX = 203.9e6
ALPHA, E = 0.3, 3.0
A = (3.5544 - E) * D_MAX**ALPHA
TRUE_MULTIPLIER = 1.80


def law(d: np.ndarray | float) -> np.ndarray | float:
    return A / np.asarray(d) ** ALPHA + E


def concave(d: np.ndarray | float) -> np.ndarray | float:
    x = np.log2(np.asarray(d) / (D_MAX / 8))
    return 3.9 - 0.05 * x - 0.02 * x * x


def simulated_study(truth, multiplier: float, seeds: int, sigma: float, rng):
    """(method losses per seed, real-only sizes) of one simulated study on the protocol."""
    d0 = D_MAX / 8
    sizes = []
    for multiple in (1, 1.5, 2, 3, 4, 6, 8):
        selection, reported = {}, {}
        for setting, offset in (("a", 0.04), ("b", 0.0), ("c", 0.1)):
            effect = rng.normal(0, sigma, seeds)
            base = float(truth(d0 * multiple)) + offset + effect
            selection[setting] = dict(enumerate(base + rng.normal(0, sigma / 3, seeds)))
            reported[setting] = dict(enumerate(base + rng.normal(0, sigma / 3, seeds)))
        sizes.append(SizeRuns(real_tokens=d0 * multiple, selection=selection, reported=reported))
    noise = rng.normal(0, sigma, seeds) + rng.normal(0, sigma / 3, seeds)
    return dict(enumerate(float(truth(d0 * multiplier)) + noise)), sizes


def interpolation_table(trials: int, rng: np.random.Generator) -> None:
    print("| truth | seeds | loss noise σ | true multiplier | median rel. error | "
          "95% interval coverage | outside the sizes | ms per study |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, truth in (("power law", law), ("concave in log D", concave)):
        for seeds in (2, 3, 5):
            for sigma in (0.005, 0.02):
                for multiplier in (1.7, 4.5):
                    errors, covered, outside, start = [], 0, 0, time.perf_counter()
                    for trial in range(trials):
                        method, sizes = simulated_study(truth, multiplier, seeds, sigma, rng)
                        result = estimate(method, D_MAX / 8, sizes, resamples=1000, seed=trial)
                        covered += int(result.low <= multiplier <= result.high)
                        if result.placement == "inside":
                            errors.append(abs(result.multiplier - multiplier) / multiplier)
                        else:
                            outside += 1
                    ms = 1000 * (time.perf_counter() - start) / trials
                    print(f"| {name} | {seeds} | {sigma} | {multiplier} | "
                          f"{np.median(errors):.1%} | {covered / trials:.0%} | {outside} | "
                          f"{ms:.1f} |")  # fmt: skip
    print()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    target_loss = float(law(TRUE_MULTIPLIER * D_MAX))

    print(
        f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}; "
        f"{args.trials} trials per row\n"
    )
    interpolation_table(args.trials, rng)
    print(f"Extrapolating law fit: true multiplier {TRUE_MULTIPLIER}× at D = {D_MAX:.4g}\n")
    print(
        "| real-only runs k | loss noise σ | median rel. error | p90 rel. error | 68% interval coverage | failed fits | ms per fit (+interval) |"
    )
    print("|---|---|---|---|---|---|---|")
    for k in (4, 5, 6, 8):
        d = np.geomspace(D_MAX / 16, D_MAX, k)
        for sigma in (0.002, 0.005, 0.01):
            errors, covered, failed, elapsed = [], 0, 0, 0.0
            for _ in range(args.trials):
                losses = law(d) + rng.normal(0.0, sigma, k)
                run_loss = target_loss + rng.normal(0.0, sigma)
                start = time.perf_counter()
                try:
                    fit = fit_power_law(d, losses)
                    multiplier = fit.inverse(run_loss) / D_MAX
                    lo, hi = efficiency_interval(run_loss, D_MAX, fit)
                except ValueError:
                    failed += 1
                    continue
                finally:
                    elapsed += time.perf_counter() - start
                errors.append(
                    abs(multiplier - TRUE_MULTIPLIER) / TRUE_MULTIPLIER
                    if math.isfinite(multiplier)
                    else math.inf
                )
                covered += int(lo <= TRUE_MULTIPLIER <= hi)
            ok = max(1, len(errors))
            print(
                f"| {k} | {sigma} | {np.median(errors):.1%} | {np.quantile(errors, 0.9):.1%} | "
                f"{covered / ok:.0%} | {failed} | {1000 * elapsed / args.trials:.1f} |"
            )


if __name__ == "__main__":
    main()
