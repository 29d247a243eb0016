"""Report figures: each plot writes a real PNG of sensible size, and skips what is absent."""

from __future__ import annotations

import pytest

from hf_megadocs.analysis import plots
from hf_megadocs.analysis.fit import fit_data_scaling_law
from hf_megadocs.analysis.runs import load_runs
from tests.analysis.rundirs import write_law_runs, write_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path) -> bool:
    from PIL import Image

    with path.open("rb") as fh:
        if fh.read(8) != PNG_MAGIC:
            return False
    with Image.open(path) as image:
        width, height = image.size
    return width >= 400 and height >= 300


@pytest.fixture()
def runs(tmp_path):
    return load_runs(write_law_runs(tmp_path / "runs"))


def test_every_plot_writes_a_png(runs, tmp_path):
    fit = fit_data_scaling_law(runs)
    written = [
        plots.plot_loss_vs_g(runs, tmp_path / "a.png"),
        plots.plot_long_context_by_position(runs, tmp_path / "b.png"),
        plots.plot_training_curves(runs, tmp_path / "c.png"),
        plots.plot_scaling_law(fit, runs, tmp_path / "d.png"),
    ]
    assert all(path is not None and _is_png(path) for path in written)


def test_plots_skip_missing_series(tmp_path):
    run = write_run(tmp_path / "runs", "real_only", long_context_loss=None, steps=0)
    runs = load_runs([run])
    assert plots.plot_long_context_by_position(runs, tmp_path / "lc.png") is None
    assert plots.plot_training_curves(runs, tmp_path / "tc.png") is None
    assert _is_png(plots.plot_loss_vs_g(runs, tmp_path / "g.png"))


def test_legend_names_disambiguate_repeated_labels(runs):
    names = plots.legend_names(runs)
    assert names["simple_g4"] == "simple G=4"
    assert names["real_1m"] == "real (real_1m)"
