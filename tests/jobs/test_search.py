"""The coordinate search (hf_megadocs.jobs.search): pure functions over known results."""

from __future__ import annotations

import itertools
import math

import pytest

from hf_megadocs.jobs import search

GRID = {
    "e": (1, 2, 4, 8, 16, 32),
    "lr": (1e-3, 3e-3, 1e-2),
    "wd": (0.1, 0.4, 0.8, 1.6),
    "m": (0.5, 0.75, 0.9),
}


def test_neighbours_one_step_along_one_axis():
    corner = {"e": 1, "lr": 1e-3, "wd": 0.1, "m": 0.5}
    assert search.neighbours(corner, GRID) == [
        {**corner, "e": 2},
        {**corner, "lr": 3e-3},
        {**corner, "wd": 0.4},
        {**corner, "m": 0.75},
    ]
    inner = {"e": 8, "lr": 3e-3, "wd": 0.4, "m": 0.75}
    assert len(search.neighbours(inner, GRID)) == 8


def _separable_convex(optimum):
    def objective(point):
        return sum((math.log(point[a]) - math.log(optimum[a])) ** 2 for a in GRID) + 3.0

    return objective


@pytest.mark.parametrize(
    "optimum",
    [
        {"e": 16, "lr": 3e-3, "wd": 1.6, "m": 0.75},  # the paper's real-only-like setting
        {"e": 32, "lr": 1e-3, "wd": 0.4, "m": 0.9},  # stitched-like, on grid edges
        {"e": 1, "lr": 1e-2, "wd": 0.1, "m": 0.5},
    ],
)
def test_search_finds_the_optimum_of_a_separable_convex_toy(optimum):
    grid_size = math.prod(len(v) for v in GRID.values())
    for start_values in itertools.product(*[(v[0], v[-1]) for v in GRID.values()]):
        start = dict(zip(GRID, start_values))
        calls = []
        objective = _separable_convex(optimum)
        state, known = search.coordinate_search(
            GRID, start, lambda p: calls.append(p) or objective(p)
        )
        assert state.converged and state.center == optimum
        assert state.best_loss == pytest.approx(3.0)
        assert len(calls) == len(known) < grid_size  # each point once, far fewer than the grid
        assert state.path[0] == start and state.path[-1] == optimum


def test_search_step_is_a_pure_replay_and_ties_keep_the_centre():
    start = {"e": 4, "lr": 3e-3, "wd": 0.4, "m": 0.75}
    axes = list(GRID)
    first = search.search_step(GRID, start, {})
    assert first.pending[0] == start and len(first.pending) == 9
    flat = {search.point_key(p, axes): 2.0 for p in first.pending}
    state = search.search_step(GRID, start, flat)
    assert state.converged and state.center == start
    with pytest.raises(ValueError, match="not on its grid"):
        search.search_step(GRID, {**start, "e": 3}, {})
