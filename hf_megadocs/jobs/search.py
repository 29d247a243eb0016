"""The one-step-neighbour coordinate search, as pure functions over known results.

From a centre, evaluate it and every point one grid step away along one axis, move to the
best, and repeat until the centre is best. :func:`search_step` replays the search over the
results known so far, so a sweep resumes from whatever finished runs are on disk.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Point = dict[str, Any]
Objective = Callable[[Point], float]


def point_key(point: Mapping[str, Any], axes: Sequence[str]) -> tuple:
    """A hashable key of ``point`` in axis order."""
    return tuple(point[axis] for axis in axes)


def neighbours(point: Mapping[str, Any], grid: Mapping[str, Sequence[Any]]) -> list[Point]:
    """Points one grid step away from ``point`` along exactly one axis, in axis order."""
    out = []
    for axis, values in grid.items():
        index = list(values).index(point[axis])
        for step in (-1, 1):
            if 0 <= index + step < len(values):
                out.append({**point, axis: values[index + step]})
    return out


@dataclass(kw_only=True)
class SearchState:
    """Where a search stands given the results known so far."""

    center: Point
    """The current centre (the best point found so far)."""
    pending: list[Point] = field(default_factory=list)
    """Points whose results are needed before the search can move; empty when converged."""
    best_loss: float = math.inf
    """The centre's loss when known."""
    path: list[Point] = field(default_factory=list)
    """Centres visited, start first."""

    @property
    def converged(self) -> bool:
        return not self.pending


def search_step(
    grid: Mapping[str, Sequence[Any]], start: Point, known: Mapping[tuple, float]
) -> SearchState:
    """Replay the coordinate search from ``start`` over the ``known`` results (pure).

    Returns the points still needed, or a converged state whose centre is no worse than
    each of its neighbours. A move needs a strict improvement, so ties keep the centre and
    the search always ends. Failed runs should be reported as ``inf``.
    """
    axes = list(grid)
    for axis in axes:
        if start.get(axis) not in list(grid[axis]):
            raise ValueError(
                f"start value {axis}={start.get(axis)!r} is not on its grid {list(grid[axis])}."
            )
    center, path = dict(start), [dict(start)]
    while True:
        candidates = [center] + neighbours(center, grid)
        missing = [p for p in candidates if point_key(p, axes) not in known]
        if missing:
            return SearchState(
                center=center,
                pending=missing,
                best_loss=known.get(point_key(center, axes), math.inf),
                path=path,
            )
        best = min(candidates, key=lambda p: known[point_key(p, axes)])
        if known[point_key(best, axes)] >= known[point_key(center, axes)]:
            return SearchState(center=center, best_loss=known[point_key(center, axes)], path=path)
        center = best
        path.append(dict(best))


def coordinate_search(
    grid: Mapping[str, Sequence[Any]], start: Point, objective: Objective
) -> tuple[SearchState, dict[tuple, float]]:
    """Run the search to convergence, calling ``objective`` once per needed point."""
    known: dict[tuple, float] = {}
    while True:
        state = search_step(grid, start, known)
        if state.converged:
            return state, known
        for point in state.pending:
            known[point_key(point, list(grid))] = objective(point)


__all__ = [
    "Objective",
    "Point",
    "SearchState",
    "coordinate_search",
    "neighbours",
    "point_key",
    "search_step",
]
