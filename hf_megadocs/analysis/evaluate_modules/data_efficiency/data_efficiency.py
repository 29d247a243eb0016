"""`evaluate` metric: data-efficiency multipliers under a real-only data scaling law.

Load it from its folder, offline:

    import evaluate
    from hf_megadocs.analysis.evaluate_modules import module_path
    metric = evaluate.load(module_path("data_efficiency"))
    metric.compute(
        losses=[4.1, 3.9, 3.75, 3.66, 3.6, 3.7],
        real_tokens=[1e6, 2e6, 4e6, 8e6, 16e6, 4e6],
        methods=["real", "real", "real", "real", "real", "stitched"],
    )

Each row is one training run: its final i.i.d. loss, the unique real tokens it trained
on, and its method. Rows whose method is ``"real"`` fit L(D) = A/D^α + E (at least four
distinct D); every row then gets its equivalent real tokens (the D at which the law
reaches its loss) and its multiplier, equivalent real tokens / real tokens used. The fit
is :func:`hf_megadocs.analysis.fit.fit_power_law`, the same one ``hf-megadocs report`` uses.
"""

from __future__ import annotations

import datasets

from hf_megadocs.analysis.fit import efficiency_interval, fit_power_law
from hf_megadocs.extras import require

evaluate = require("evaluate", "analysis", "The data_efficiency metric")

_DESCRIPTION = """Fits the real-only data scaling law L(D) = A/D^alpha + E on the rows with
method "real" and returns each row's equivalent real tokens and data-efficiency multiplier,
with the fit's parameters and standard errors."""

_KWARGS_DESCRIPTION = """
Args:
    losses (list of float): each run's final i.i.d. loss (nats/token).
    real_tokens (list of float): unique real training tokens of each run.
    methods (list of str): each run's method; "real" rows fit the law.
    interval (float, default 0.68): level of the multiplier intervals (from the fit's
        covariance); 0 turns them off.
Returns:
    A, alpha, E (float) and A_err, alpha_err, E_err (standard errors), num_fit_points (int),
    equivalent_real_tokens (list of float; inf where loss <= E),
    data_efficiency (list of float), data_efficiency_interval (list of [low, high]).
Raises:
    ValueError when fewer than 4 distinct real-only D values are given.
"""

_CITATION = """@misc{hf_megadocs,
  title = {hf_megadocs: data-efficient pre-training with synthetic megadocs},
  year = {2026}
}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class DataEfficiency(evaluate.Metric):
    """Data-efficiency multipliers of runs against a fitted real-only L(D)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "losses": datasets.Value("float64"),
                    "real_tokens": datasets.Value("float64"),
                    "methods": datasets.Value("string"),
                }
            ),
            codebase_urls=["https://github.com/hf-megadocs/hf_megadocs"],
        )

    def _compute(
        self,
        losses: list[float],
        real_tokens: list[float],
        methods: list[str],
        interval: float = 0.68,
    ) -> dict:
        points: dict[float, float] = {}
        for loss, tokens, method in zip(losses, real_tokens, methods):
            if method == "real":
                points[tokens] = min(loss, points.get(tokens, float("inf")))
        xs = sorted(points)
        fit = fit_power_law(xs, [points[x] for x in xs], quantity="D")
        equivalent = [fit.inverse(loss) for loss in losses]
        result = {
            "A": fit.A,
            "alpha": fit.alpha,
            "E": fit.E,
            "A_err": fit.A_err,
            "alpha_err": fit.alpha_err,
            "E_err": fit.E_err,
            "num_fit_points": fit.n_points,
            "equivalent_real_tokens": equivalent,
            "data_efficiency": [eq / tokens for eq, tokens in zip(equivalent, real_tokens)],
        }
        if interval:
            result["data_efficiency_interval"] = [
                list(efficiency_interval(loss, tokens, fit, level=interval))
                for loss, tokens in zip(losses, real_tokens)
            ]
        return result
