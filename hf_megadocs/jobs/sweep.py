"""One-step-neighbour coordinate search over training hyper-parameters (the paper's sweep).

    hf-megadocs sweep --presets '[stitched_g32_300m, simple_g32_300m]' --out runs/sweep
    hf-megadocs sweep --configs '[tiny_cpu, my/x.yaml]' --out runs/sweep --emit_commands true
    hf-megadocs sweep ... --grid '{optim.lr: [1e-3, 3e-3]}' -- --max_steps 200

(``python recipes/sweep.py ...`` in a checkout is the same.)

From a start point (the config's own values, snapped to the grid, or ``--start``) the
search trains the point and every neighbour one grid step away along one axis, moves to
the best of them, and repeats until the centre is best. Default grids: real epochs
{1,2,4,8,16,32}, lr {1e-3,3e-3,1e-2}, weight decay {0.1,0.4,0.8,1.6}, synthetic share m
{0.5,0.75,0.9} (m is not searched for real-only configs).

Each run is ``accelerate launch -m hf_megadocs.train --config X --field value ... --output_dir
OUT/STUDY/POINT`` (:func:`hf_megadocs.training.launch.launch_command`). Locally the runs go
one after another. ``--emit_commands`` prints the
commands the search needs next, one per line, for a cluster scheduler; rerun the sweep when
they have finished to get the next round. A run whose ``summary.json`` exists is never
rerun; one killed mid-run resumes from its latest checkpoint. The sweep ends with the
best setting per method and G (also ``OUT/sweep_summary.md``).
Arguments after ``--`` are passed to every training command (and used to read the
start point).
"""

from __future__ import annotations

import json
import logging
import math
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_megadocs.flags import parse_dataclass
from hf_megadocs.jobs.search import Point, point_key, search_step
from hf_megadocs.training.launch import launch_command, run_training, shell_line

logger = logging.getLogger(__name__)

DEFAULT_GRID: dict[str, tuple[float, ...]] = {
    "mix.real_epochs": (1, 2, 4, 8, 16, 32),
    "optim.lr": (1e-3, 3e-3, 1e-2),
    "optim.weight_decay": (0.1, 0.4, 0.8, 1.6),
    "mix.synthetic_share": (0.3, 0.5, 0.75, 0.9),
}
"""The megadocs paper's search space, as TrainConfig override paths → grid values (sorted),
with Demystifying's ≈30% rephrase share added to the m axis."""

SHORT_NAMES = {
    "mix.real_epochs": "e",
    "optim.lr": "lr",
    "optim.weight_decay": "wd",
    "mix.synthetic_share": "m",
}
"""Short axis names for run-directory names."""

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
    launcher: Sequence[str] | None,
    recipe: str | None,
    extra: Sequence[str],
    portable: bool,
) -> list[str]:
    """The command that trains ``point`` of ``study`` into ``run_dir``."""
    overrides = [item for axis, value in point.items() for item in (f"--{axis}", _format(value))]
    # latest: a point killed mid-run resumes (its folder is refused without it)
    args = [*study.base_args(), *overrides, "--resume_from_checkpoint", "latest"]
    return launch_command(
        [*args, "--output_dir", str(run_dir), *extra],
        launcher=launcher,
        recipe=recipe,
        portable=portable,
    )


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
    from hf_megadocs.training import load_config

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


@dataclass(kw_only=True)
class SweepConfig:
    """What to sweep and where the runs go."""

    out: str
    """Sweep folder: one run per ``OUT/STUDY/POINT``."""
    configs: list[str] = field(default_factory=list)
    """Training configs (YAML paths or bundled names), one study each, e.g. '[tiny_cpu]'."""
    presets: list[str] = field(default_factory=list)
    """Training presets, one study each, e.g. '[stitched_g32_300m]'."""
    grid: dict[str, list[float]] = field(default_factory=dict)
    """Axis grids replacing the defaults, e.g. '{optim.lr: [1e-3, 3e-3]}'."""
    drop_axes: list[str] = field(default_factory=list)
    """Axes not to search, e.g. '[mix.synthetic_share]'."""
    start: dict[str, float] = field(default_factory=dict)
    """Start point per axis (snapped to the grid); default the config's own values."""
    emit_commands: bool = False
    """Print the commands the search needs next (for a scheduler) instead of running them."""
    launcher: str | None = None
    """A launcher prefix replacing ``accelerate launch`` (e.g. 'srun accelerate launch')."""
    recipe: str | None = None
    """A training script to run instead of the installed ``hf_megadocs.train`` module."""

    def __post_init__(self) -> None:
        if not self.configs and not self.presets:
            raise ValueError("SweepConfig: give at least one of --configs or --presets to sweep.")
        unknown = sorted(
            (set(self.drop_axes) | set(self.start)) - set(DEFAULT_GRID) - set(self.grid)
        )
        if unknown:
            raise ValueError(
                f"SweepConfig: unknown axes {unknown}; the axes are {sorted(DEFAULT_GRID)} plus "
                "any in --grid."
            )

    def studies(self) -> list[Study]:
        studies = [Study(name=Path(c).stem, config=c) for c in self.configs]
        studies += [Study(name=p, preset=p) for p in self.presets]
        if len({s.name for s in studies}) != len(studies):
            raise ValueError("two studies share a name; give each config a distinct file name.")
        return studies

    def search_grid(self) -> dict[str, tuple]:
        grid = {**DEFAULT_GRID, **{a: tuple(sorted(v)) for a, v in self.grid.items()}}
        return {a: v for a, v in grid.items() if a not in self.drop_axes}


def run_sweep(config: SweepConfig, extra: Sequence[str] = ()) -> int:
    """Run (or, with ``emit_commands``, print) the search of every study; the exit status."""
    grid, out = config.search_grid(), Path(config.out)
    launcher = shlex.split(config.launcher) if config.launcher else None
    failed = 0
    for study in config.studies():
        study_grid, start_point = study_grid_and_start(study, grid, config.start, extra)
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
                    point,
                    train_command(
                        study,
                        point,
                        study_dir / run_dir_name(point),
                        launcher=launcher,
                        recipe=config.recipe,
                        extra=extra,
                        portable=config.emit_commands,
                    ),
                )
                for point in state.pending
            ]
            if config.emit_commands:
                print(
                    f"# {study.name}: {len(commands)} runs needed around {run_dir_name(state.center)}"
                )
                for _, command in commands:
                    print(shell_line(command))
                break
            for point, command in commands:
                run_dir = study_dir / run_dir_name(point)
                logger.info("%s: training %s", study.name, run_dir.name)
                returncode = run_training(command)
                if returncode != 0 or read_loss(run_dir) is None:
                    failed += 1
                    failures[point_key(point, list(study_grid))] = math.inf
                    logger.error("%s: run %s failed (exit %d)", study.name, run_dir, returncode)
    if not config.emit_commands or out.exists():
        out.mkdir(parents=True, exist_ok=True)
        text = summarize(out)
        (out / "sweep_summary.md").write_text(text)
        print(text, file=sys.stderr if config.emit_commands else sys.stdout)
    if failed:
        print(f"sweep: {failed} runs failed; see the log above.", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """``hf-megadocs sweep --out DIR --presets '[...]' [...] [-- training flags]``."""
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, extra = argv[:split], argv[split + 1 :]
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = parse_dataclass(SweepConfig, argv, prog="hf-megadocs sweep", description=_SUMMARY)
        return run_sweep(config, extra)
    except ValueError as error:
        print(f"sweep: error: {error}", file=sys.stderr)
        return 2


_SUMMARY = (
    "One-step-neighbour coordinate search over real epochs, lr, weight decay and synthetic "
    "share, resumable; arguments after -- go to every training run."
)


if __name__ == "__main__":
    sys.exit(main())
