"""Scaling-law fits: recovery of a known law, the multiplier by hand, and refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hf_megadocs.analysis.fit import (
    InsufficientPointsError,
    data_efficiency,
    efficiency_interval,
    equivalent_real_tokens,
    fit_data_scaling_law,
    fit_parameter_scaling_law,
    fit_power_law,
)
from hf_megadocs.analysis.runs import RunError, load_runs
from tests.analysis.rundirs import LAW, law_loss, write_law_runs, write_run


@pytest.mark.parametrize("A,alpha,E", [(400.0, 0.3, 2.0), (1.2e3, 0.35, 1.7), (25.0, 0.12, 2.9)])
def test_fit_recovers_known_law_with_noise(A, alpha, E):
    rng = np.random.default_rng(1)
    d = np.geomspace(1e6, 1e9, 8)
    loss = A / d**alpha + E + rng.normal(0.0, 0.002, d.size)
    fit = fit_power_law(d, loss)
    # Within 4 standard errors (plus a small floor) of the truth, and errors are finite.
    assert abs(fit.alpha - alpha) <= 4 * fit.alpha_err + 0.01 * alpha
    assert abs(fit.E - E) <= 4 * fit.E_err + 0.01
    assert abs(math.log(fit.A / A)) <= 4 * fit.A_err / fit.A + 0.05
    assert all(math.isfinite(v) and v > 0 for v in (fit.A_err, fit.alpha_err, fit.E_err))
    assert fit.residual_rms < 0.005


def test_exact_points_give_exact_law():
    d = [1e6, 3e6, 1e7, 3e7, 1e8]
    fit = fit_power_law(d, [law_loss(x) for x in d])
    assert fit.A == pytest.approx(LAW["A"], rel=1e-6)
    assert fit.alpha == pytest.approx(LAW["alpha"], rel=1e-6)
    assert fit.E == pytest.approx(LAW["E"], rel=1e-6)


def test_multiplier_matches_hand_computation(tmp_path):
    runs = load_runs(write_law_runs(tmp_path))
    fit = fit_data_scaling_law(runs)
    simple = next(r for r in runs if r.name == "simple_g4")
    # By hand: loss = 400/6e6^0.3 + 2, so D_eq = (400 / (loss - 2))^(1/0.3) = 6e6; 6e6 / 4e6.
    hand = (400.0 / (simple.iid_loss - 2.0)) ** (1 / 0.3) / 4e6
    assert hand == pytest.approx(1.5, rel=1e-9)
    assert data_efficiency(simple, fit) == pytest.approx(hand, rel=1e-5)
    stitched = next(r for r in runs if r.name == "stitched_g4")
    assert data_efficiency(stitched, fit) == pytest.approx(2.0, rel=1e-5)
    assert equivalent_real_tokens(fit.E, fit) == math.inf
    assert equivalent_real_tokens(fit.E - 0.1, fit) == math.inf
    lo, hi = efficiency_interval(simple.iid_loss, simple.real_tokens, fit)
    assert lo <= 1.5 + 1e-6 and hi >= 1.5 - 1e-6


def test_too_few_points_refused():
    with pytest.raises(InsufficientPointsError, match="at least 4 distinct D.*got 3"):
        fit_power_law([1e6, 2e6, 4e6], [3.0, 2.9, 2.85])
    # Repeated D values do not count as new points.
    with pytest.raises(InsufficientPointsError, match="got 2"):
        fit_power_law([1e6, 1e6, 2e6, 2e6], [3.0, 3.01, 2.9, 2.91])


def test_bad_values_refused():
    with pytest.raises(ValueError, match="> 0"):
        fit_power_law([0, 1e6, 2e6, 4e6], [3.0, 2.9, 2.8, 2.7])
    with pytest.raises(ValueError, match="loss"):
        fit_power_law([1e6, 2e6, 4e6, 8e6], [3.0, float("nan"), 2.8, 2.7])


def test_data_law_refuses_mixed_model_sizes_and_no_real_runs(tmp_path):
    paths = [
        write_run(tmp_path, f"r{i}", real_tokens=int(d)) for i, d in enumerate([1e6, 2e6, 4e6])
    ]
    paths.append(write_run(tmp_path, "big", real_tokens=8_000_000, num_params=9_000_000))
    with pytest.raises(RunError, match="num_params.*big"):
        fit_data_scaling_law(load_runs(paths))
    simple = write_run(tmp_path, "s", method="simple", num_generations=2)
    with pytest.raises(InsufficientPointsError, match="real-only"):
        fit_data_scaling_law(load_runs([simple]))


def test_parameter_law_asymptote(tmp_path):
    sizes = [1e6, 3e6, 1e7, 3e7, 1e8]
    paths = [
        write_run(
            tmp_path,
            f"n{i}",
            num_params=int(n),
            real_tokens=4_000_000,
            iid_loss=50.0 / n**0.25 + 2.5,
        )
        for i, n in enumerate(sizes)
    ]
    fit = fit_parameter_scaling_law(load_runs(paths))
    assert fit.quantity == "N"
    assert fit.E == pytest.approx(2.5, abs=1e-4)
    assert fit.alpha == pytest.approx(0.25, rel=1e-4)
    with pytest.raises(ValueError, match="data law"):
        equivalent_real_tokens(3.0, fit)


def test_interval_widens_with_run_noise_and_fit_error_is_clear():
    rng = np.random.default_rng(3)
    d = np.geomspace(1e6, 16e6, 5)
    fit = fit_power_law(d, [law_loss(x) for x in d] + rng.normal(0, 0.01, d.size))
    loss = law_loss(8e6)
    narrow = efficiency_interval(loss, 4e6, fit, include_loss_noise=False)
    wide = efficiency_interval(loss, 4e6, fit)
    assert wide[0] < narrow[0] <= narrow[1] < wide[1]
    assert fit.residual_std > fit.residual_rms > 0  # n - 3 degrees of freedom
    with pytest.raises(ValueError, match="level"):
        efficiency_interval(loss, 4e6, fit, level=1.5)
    # A loss at the law's floor: most draws reach no finite real-data size. The upper end
    # is then infinite, never nan.
    lo, hi = efficiency_interval(fit.E + 1e-4, 4e6, fit)
    assert hi == float("inf") and not np.isnan(lo)
