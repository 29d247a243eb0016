"""The interpolated multiplier and its bootstrap interval, on simulated studies whose truth
is known: a power law, and a law concave in log D like the CPU study's points."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hf_megadocs.analysis.efficiency import (
    SizeRuns,
    estimate,
    expansion,
    lack_of_fit,
    monotone_curve,
    place,
)

D0 = 10_000.0
MULTIPLES = (1, 1.5, 2, 3, 4, 6, 8)


def power_law(d: float) -> float:
    return 30.0 / d**0.25 + 2.0


def concave_law(d: float) -> float:
    """Loss falling faster as D grows (0.31, 0.49, 0.68 nats per doubling, as SCIENCE.md's)."""
    x = math.log2(d / D0)
    return 6.5 - 0.22 * x - 0.09 * x * x


def simulate(law, true_multiplier, rng, *, seeds=3, noise=0.02, off_best=(0.04, 0.1)):
    """A study: at each size two settings (the better one on the law), a shared seed effect
    and independent evaluation noise on the selection and reported documents."""
    sizes = []
    for multiple in MULTIPLES:
        d = D0 * multiple
        selection, reported = {}, {}
        for setting, offset in zip(("e8", "e16", "e32"), (off_best[0], 0.0, off_best[1])):
            effect = rng.normal(0, noise, seeds)
            selection[setting] = dict(
                enumerate(law(d) + offset + effect + rng.normal(0, noise / 3, seeds))
            )
            reported[setting] = dict(
                enumerate(law(d) + offset + effect + rng.normal(0, noise / 3, seeds))
            )
        sizes.append(SizeRuns(real_tokens=d, selection=selection, reported=reported))
    truth = law(D0 * true_multiplier)
    method = dict(enumerate(truth + rng.normal(0, noise, seeds) + rng.normal(0, noise / 3, seeds)))
    return method, sizes


@pytest.mark.parametrize("law", [power_law, concave_law], ids=["power_law", "concave"])
@pytest.mark.parametrize("true_multiplier", [1.7, 4.5])
def test_recovers_the_truth_and_the_95_interval_covers_it(law, true_multiplier):
    rng = np.random.default_rng(7)
    covered, errors = 0, []
    studies = 200
    for study in range(studies):
        method, sizes = simulate(law, true_multiplier, rng)
        result = estimate(method, D0, sizes, resamples=400, seed=study)
        assert result.level == 0.95 and result.seeds == 3
        if result.placement == "inside":
            errors.append(math.log(result.multiplier / true_multiplier))
        covered += result.low <= true_multiplier <= result.high
    assert len(errors) >= 0.95 * studies
    assert abs(np.median(errors)) < 0.08  # within 8% of the truth, typically
    assert covered / studies >= 0.90, f"coverage {covered / studies:.2f}"


def test_real_only_at_the_base_size_is_exactly_one():
    rng = np.random.default_rng(0)
    _, sizes = simulate(power_law, 2.0, rng)
    base = sizes[0]
    settings = sorted(base.selection)
    chosen = min(settings, key=lambda s: np.mean(list(base.selection[s].values())))
    result = estimate(base.reported[chosen], D0, sizes, resamples=200)
    assert result.placement == "inside"
    assert result.multiplier == pytest.approx(1.0)
    assert result.describe().startswith("1.00×")


def test_beyond_the_largest_size_is_flagged_not_numbered():
    rng = np.random.default_rng(1)
    method, sizes = simulate(power_law, 20.0, rng, noise=0.002)
    result = estimate(method, D0, sizes, resamples=200)
    assert result.placement == "above" and math.isnan(result.multiplier)
    assert result.max_multiplier == pytest.approx(8.0)
    assert result.describe().startswith("> 8× (beyond the measured sizes)")
    worse = estimate({0: 9.0, 1: 9.1, 2: 9.05}, D0, sizes, resamples=200)
    assert worse.placement == "below" and worse.describe().startswith("< 1×")
    assert worse.high == -math.inf  # every resample is below 1× too


def test_one_seed_says_it_has_no_seed_spread():
    rng = np.random.default_rng(2)
    method, sizes = simulate(power_law, 3.0, rng, seeds=1)
    result = estimate(method, D0, sizes)
    assert result.seeds == 1 and math.isnan(result.low)
    assert "no seed spread" in result.describe()
    assert 2.5 < result.multiplier < 3.6


def test_monotone_curve_and_placement():
    assert monotone_curve(np.array([5.0, 4.0, 3.0])).tolist() == [5.0, 4.0, 3.0]
    bumpy = monotone_curve(np.array([5.0, 4.0, 4.2, 3.0]))
    assert np.all(np.diff(bumpy) <= 0) and bumpy[0] == 5.0 and bumpy[-1] == 3.0
    log_d = np.log([1.0, 2.0, 4.0])
    where, code = place(np.array([4.5, 6.0, 2.0]), log_d, np.array([[5.0, 4.0, 3.0]] * 3))
    assert code.tolist() == [0, -1, 1]
    assert math.exp(where[0]) == pytest.approx(math.sqrt(2))  # halfway in log D


def test_expansion_widens_small_seed_counts():
    assert expansion(0.95, 3) == pytest.approx(2.69, abs=0.01)
    assert expansion(0.95, 3) > expansion(0.95, 10) > 1.0
    assert expansion(0.95, 10_000) == pytest.approx(1.0, abs=0.001)


def test_lack_of_fit_rejects_a_law_that_misses_precise_points():
    from hf_megadocs.analysis.efficiency import curve_points

    rng = np.random.default_rng(3)
    _, sizes = simulate(concave_law, 2.0, rng, noise=0.005)
    points = curve_points(sizes)
    straight = np.polyval(
        np.polyfit(np.log([p.real_tokens for p in points]), [p.loss for p in points], 1),
        np.log([p.real_tokens for p in points]),
    )
    assert lack_of_fit(straight, points).rejected
    exact = [concave_law(p.real_tokens) for p in points]
    assert not lack_of_fit(exact, points).rejected
    one_seed = curve_points(simulate(concave_law, 2.0, rng, seeds=1)[1])
    assert "not testable" in lack_of_fit(exact, one_seed).describe()
