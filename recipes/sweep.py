"""One-step-neighbour coordinate search over training hyper-parameters (the paper's sweep).

    python recipes/sweep.py --preset stitched_g32_300m --preset simple_g32_300m --out runs/sweep
    python recipes/sweep.py --config recipes/configs/x.yaml --out runs/sweep --emit-commands
    python recipes/sweep.py ... --grid optim.lr=1e-3,3e-3 -- --max_steps 200

From a start point (the config's own values, snapped to the grid, or ``--start``) the
search trains the point and every neighbour one grid step away along one axis, moves to
the best of them, and repeats until the centre is best. Default grids: real epochs
{1,2,4,8,16,32}, lr {1e-3,3e-3,1e-2}, weight decay {0.1,0.4,0.8,1.6}, synthetic share m
{0.5,0.75,0.9} (m is not searched for real-only configs).

Each run is ``accelerate launch recipes/train.py --config X --field value ... --output_dir
OUT/STUDY/POINT``. Locally the runs go one after another. ``--emit-commands`` prints the
commands the search needs next, one per line, for a cluster scheduler; rerun the sweep when
they have finished to get the next round. A run whose ``summary.json`` exists is never
rerun. The sweep ends with the best setting per method and G (also ``OUT/sweep_summary.md``).
Arguments after ``--`` are passed to every ``train.py`` command (and used to read the
start point).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger("hf_megadocs.sweep")

DEFAULT_GRID: dict[str, tuple[float, ...]] = {
    "mix.real_epochs": (1, 2, 4, 8, 16, 32),
    "optim.lr": (1e-3, 3e-3, 1e-2),
    "optim.weight_decay": (0.1, 0.4, 0.8, 1.6),
    "mix.synthetic_share": (0.5, 0.75, 0.9),
}
"""The paper's search space, as TrainConfig override paths → grid values (sorted)."""

SHORT_NAMES = {
    "mix.real_epochs": "e",
    "optim.lr": "lr",
    "optim.weight_decay": "wd",
    "mix.synthetic_share": "m",
}
"""Short axis names for run-directory names."""

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


# ------------------------------------------------------------------ runs on disk


@dataclass(kw_only=True)
class Study:
    """One base config to sweep: a YAML file and/or a preset."""

    name: str
    config: str | None = None
    preset: str | None = None

    def base_args(self) -> list[str]:
        args = []
        if self.config:
            args += ["--config", self.config]
        if self.preset:
            args += ["--preset", self.preset]
        return args


def _format(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def run_dir_name(point: Mapping[str, Any]) -> str:
    """``e16_lr0.003_wd0.4_m0.75``: one directory per point."""
    return "_".join(
        f"{SHORT_NAMES.get(a, a.replace('.', '-'))}{_format(v)}" for a, v in point.items()
    )


def train_command(
    study: Study,
    point: Mapping[str, Any],
    run_dir: Path,
    *,
    launcher: Sequence[str],
    recipe: str,
    extra: Sequence[str],
) -> list[str]:
    """The command that trains ``point`` of ``study`` into ``run_dir``."""
    overrides = [item for axis, value in point.items() for item in (f"--{axis}", _format(value))]
    return [*launcher, recipe, *study.base_args(), *overrides, "--output_dir", str(run_dir), *extra]


def read_loss(run_dir: Path) -> float | None:
    """The finished run's i.i.d. loss, ``inf`` for a finished run without one, None if unfinished."""
    summary = run_dir / "summary.json"
    if not summary.is_file():
        return None
    loss = json.loads(summary.read_text()).get("iid_loss")
    return float(loss) if isinstance(loss, (int, float)) and math.isfinite(loss) else math.inf


def _snap(value: Any, values: Sequence[float]) -> float:
    """The grid value nearest to ``value`` on a log scale (grids here are geometric)."""
    value = float(value)
    return min(
        values, key=lambda v: abs(math.log(v / value)) if value > 0 and v > 0 else abs(v - value)
    )


def study_grid_and_start(
    study: Study,
    grid: Mapping[str, Sequence[float]],
    start: Mapping[str, float],
    extra: Sequence[str] = (),
) -> tuple[dict[str, tuple], Point]:
    """Resolve the study's config (with the ``extra`` overrides) to choose its start point.

    The synthetic share m is not searched for a real-only config.
    """
    from hf_megadocs.train import load_config

    config = load_config(study.config, list(extra), preset=study.preset).to_dict()
    real_only = not config.get("data", {}).get("synthetic_corpus") or not config.get("mix", {}).get(
        "synthetic_share"
    )
    study_grid = {
        a: tuple(v) for a, v in grid.items() if not (real_only and a == "mix.synthetic_share")
    }
    point: Point = {}
    for axis, values in study_grid.items():
        if axis in start:
            point[axis] = _snap(start[axis], values)
            continue
        node: Any = config
        for part in axis.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ValueError(
                    f"sweep axis {axis!r} is not a TrainConfig field of study {study.name!r}; "
                    f"use a dotted field path such as {', '.join(DEFAULT_GRID)}."
                )
            node = node[part]
        point[axis] = (
            _snap(node, values)
            if isinstance(node, (int, float)) and node
            else values[len(values) // 2]
        )
    return study_grid, point


def known_results(study_dir: Path, grid: Mapping[str, Sequence[Any]]) -> dict[tuple, float]:
    """Results of finished runs of one study, keyed by point (resumability)."""
    known = {}
    for point in _all_points(grid):
        loss = read_loss(study_dir / run_dir_name(point))
        if loss is not None:
            known[point_key(point, list(grid))] = loss
    return known


def _all_points(grid: Mapping[str, Sequence[Any]]) -> list[Point]:
    points: list[Point] = [{}]
    for axis, values in grid.items():
        points = [{**p, axis: v} for p in points for v in values]
    return points


def summarize(out: Path) -> str:
    """Markdown: the best finished run per (method, G) across every study under ``out``."""
    best: dict[tuple[str, int], tuple[float, Path, dict]] = {}
    finished = 0
    for summary_path in sorted(out.glob("*/*/summary.json")):
        run_dir = summary_path.parent
        loss = read_loss(run_dir)
        config_path = run_dir / "config.json"
        if loss is None or not config_path.is_file():
            continue
        finished += 1
        config = json.loads(config_path.read_text())
        key = (str(config.get("method", "?")), int(config.get("num_generations", 0) or 0))
        if key not in best or loss < best[key][0]:
            best[key] = (loss, run_dir, config)
    lines = [
        f"# Sweep summary ({finished} finished runs under {out})",
        "",
        "| method | G | real epochs | lr | weight decay | m | i.i.d. loss | run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (method, g), (loss, run_dir, config) in sorted(best.items()):
        mix, optim = config.get("mix", {}), config.get("optim", {})
        lines.append(
            f"| {method} | {g} | {_format(mix.get('real_epochs'))} | {_format(optim.get('lr'))} | "
            f"{_format(optim.get('weight_decay'))} | {_format(mix.get('synthetic_share'))} | "
            f"{loss:.4f} | {run_dir.relative_to(out)} |"
        )
    return "\n".join(lines) + "\n"


def _parse_assignments(items: Sequence[str], what: str) -> dict[str, list[float]]:
    out = {}
    for item in items:
        axis, eq, raw = item.partition("=")
        if not eq or not raw:
            raise SystemExit(
                f"sweep: {what} {item!r} must look like field=v1,v2 (e.g. optim.lr=1e-3,3e-3)."
            )
        try:
            out[axis] = [float(v) if any(c in v for c in ".e") else int(v) for v in raw.split(",")]
        except ValueError:
            raise SystemExit(f"sweep: {what} {item!r} has a value that is not a number.") from None
    return out


def _default_recipe() -> str:
    """recipes/train.py next to this file; relative to the working directory when inside it,
    so emitted commands work on any machine with the same checkout layout."""
    recipe = Path(__file__).resolve().with_name("train.py")
    try:
        return str(recipe.relative_to(Path.cwd()))
    except ValueError:
        return str(recipe)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, extra = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config", action="append", default=[], help="YAML config (repeatable: one study each)"
    )
    parser.add_argument(
        "--preset", action="append", default=[], help="preset name (repeatable: one study each)"
    )
    parser.add_argument("--out", required=True, help="sweep folder: OUT/STUDY/POINT per run")
    parser.add_argument(
        "--grid", action="append", default=[], help="axis=v1,v2,... replaces an axis's grid"
    )
    parser.add_argument("--drop-axis", action="append", default=[], help="do not search this axis")
    parser.add_argument(
        "--start", action="append", default=[], help="axis=value start point (snapped to grid)"
    )
    parser.add_argument(
        "--emit-commands", action="store_true", help="print the next commands instead of running"
    )
    parser.add_argument(
        "--launcher",
        default="accelerate launch",
        help='command before the recipe (default "accelerate launch")',
    )
    parser.add_argument("--recipe", default=_default_recipe(), help="the training entry point")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    studies = [Study(name=Path(c).stem, config=c) for c in args.config]
    studies += [Study(name=p, preset=p) for p in args.preset]
    if not studies:
        parser.error("give at least one --config or --preset to sweep.")
    if len({s.name for s in studies}) != len(studies):
        parser.error("two studies share a name; give each --config a distinct file name.")
    grid = {
        **DEFAULT_GRID,
        **{a: tuple(sorted(v)) for a, v in _parse_assignments(args.grid, "--grid").items()},
    }
    for axis in args.drop_axis:
        grid.pop(axis, None)
    start = {a: v[0] for a, v in _parse_assignments(args.start, "--start").items()}
    out, launcher = Path(args.out), shlex.split(args.launcher)

    failed = 0
    for study in studies:
        try:
            study_grid, start_point = study_grid_and_start(study, grid, start, extra)
        except ValueError as err:
            parser.error(str(err))
        study_dir = out / study.name
        # Failed points count as infinitely bad for the rest of this invocation only; having
        # no summary.json, they are retried by the next one.
        failures: dict[tuple, float] = {}
        while True:
            known = {**known_results(study_dir, study_grid), **failures}
            state = search_step(study_grid, start_point, known)
            if state.converged:
                logger.info(
                    "%s: converged at %s, iid_loss %.4f (%d runs)",
                    study.name,
                    run_dir_name(state.center),
                    state.best_loss,
                    len(known),
                )
                break
            commands = [
                (
                    p,
                    train_command(
                        study,
                        p,
                        study_dir / run_dir_name(p),
                        launcher=launcher,
                        recipe=args.recipe,
                        extra=extra,
                    ),
                )
                for p in state.pending
            ]
            if args.emit_commands:
                print(
                    f"# {study.name}: {len(commands)} runs needed around {run_dir_name(state.center)}"
                )
                for _, command in commands:
                    print(shlex.join(command))
                break
            for point, command in commands:
                run_dir = study_dir / run_dir_name(point)
                logger.info("%s: training %s", study.name, run_dir.name)
                result = subprocess.run(command)
                if result.returncode != 0 or read_loss(run_dir) is None:
                    failed += 1
                    failures[point_key(point, list(study_grid))] = math.inf
                    logger.error(
                        "%s: run %s failed (exit %d)", study.name, run_dir, result.returncode
                    )
    if not args.emit_commands or out.exists():
        out.mkdir(parents=True, exist_ok=True)
        text = summarize(out)
        (out / "sweep_summary.md").write_text(text)
        print(text, file=sys.stderr if args.emit_commands else sys.stdout)
    if failed:
        print(f"sweep: {failed} runs failed; see the log above.", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
