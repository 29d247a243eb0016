"""Analysis of training runs: run loading, scaling-law fits, plots and the report.

``hf-megadocs report RUN_DIR...`` (:mod:`hf_megadocs.analysis.report`) is the command-line
entry point; the functions below are the Python one.
"""

from hf_megadocs.analysis.fit import (
    InsufficientPointsError,
    ScalingLawFit,
    data_efficiency,
    efficiency_interval,
    equivalent_real_tokens,
    fit_data_scaling_law,
    fit_parameter_scaling_law,
    fit_power_law,
)
from hf_megadocs.analysis.report import write_report
from hf_megadocs.analysis.runs import Run, RunError, load_run, load_runs

__all__ = [
    "InsufficientPointsError",
    "Run",
    "RunError",
    "ScalingLawFit",
    "data_efficiency",
    "efficiency_interval",
    "equivalent_real_tokens",
    "fit_data_scaling_law",
    "fit_parameter_scaling_law",
    "fit_power_law",
    "load_run",
    "load_runs",
    "write_report",
]
