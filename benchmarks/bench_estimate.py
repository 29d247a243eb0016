"""The estimate before generation against what the generation then took: the demo's corpora.

Runs the generation stage of the study ``make demo`` runs (``DemoConfig().study()`` with
``build_only``: ``simple_g2``, ``stitched_g2``, ``latent_g2`` on the embedded corpus and
generator, one vLLM engine) into a fresh store, twice:

1. with ``estimate_only``: no rate is recorded in a fresh store, so a calibration batch of
   ``--calibration-requests`` requests is generated (and stored) to measure one;
2. the real build, which reuses the calibrated generations; before each corpus it logs the
   estimate of what that corpus still lacks.

Every estimate made is recorded as it is made (``Estimator.estimate`` is wrapped to keep a
reference to what it returns; nothing else is changed), and the store's run records give what
each corpus's generation then took. Prints one row per corpus: estimated vs actual
requests, output tokens, generation time and store bytes, and the ratio of the times.
The generator's conversion is cached under ``$HF_MEGADOCS_CACHE/generators`` and is not
part of any figure.

    python benchmarks/bench_estimate.py --calibration-requests 16
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _watch_estimates() -> list[tuple[str, object]]:
    """Keep (description, estimate) for every estimate made from now on."""
    from hf_megadocs.generation.estimate import Estimator

    made: list[tuple[str, object]] = []
    original = Estimator.estimate

    def estimate(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        result = original(self, *args, **kwargs)
        made.append((self.desc, result))
        return result

    Estimator.estimate = estimate  # type: ignore[method-assign]
    return made


def _record_bytes(store_dir: Path) -> int:
    """Bytes of the store's generation records and their index entries (what the estimate's
    "disk" counts; run records, prompts and locks left out)."""
    return sum(
        p.stat().st_size
        for part in ("generations", "index")
        for p in (store_dir / part).rglob("*")
        if p.is_file()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration-requests", type=int, default=16)
    parser.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from bench_data_parallel import load_note  # the sibling scripts (sys.path[0])
    from bench_generation import machine

    from hf_megadocs.generation.store import GenerationStore
    from hf_megadocs.jobs.demo import DemoConfig
    from hf_megadocs.jobs.study import execute_study

    work = Path(args.dir or tempfile.mkdtemp(prefix="bench-estimate-"))
    store_dir = work / "store"
    study = DemoConfig(
        output_dir=str(work / "study"),
        store_dir=str(store_dir),
        corpus_overrides={"calibration_requests": args.calibration_requests},
    ).study()
    print(f"machine: {machine()}\nbefore: {load_note()}", flush=True)
    made = _watch_estimates()

    started = time.perf_counter()
    execute_study(dataclasses.replace(study, build_only=True, estimate_only=True))
    estimate_only_s = time.perf_counter() - started
    calibrated = len(made)
    bytes_after_calibration = _record_bytes(store_dir)
    started = time.perf_counter()
    execute_study(dataclasses.replace(study, build_only=True))
    build_s = time.perf_counter() - started
    print(f"after: {load_note()}")

    runs = GenerationStore(store_dir).runs()
    actual = {r["config"].get("config_name"): r["summary"] for r in runs
              if not r["config"].get("calibration")}  # fmt: skip
    # the estimate each corpus's fill logged last, before it generated; the first one the
    # build made covers every corpus (the shared engine's), keyed by all their names
    estimated = {d.removesuffix(": generate"): e for d, e in made[calibrated:] if e.missing}
    added = _record_bytes(store_dir) - bytes_after_calibration
    print(
        f"\nestimate_only (calibration of {args.calibration_requests} requests included): "
        f"{estimate_only_s:.1f} s; build: {build_s:.1f} s\n"
    )
    print("| corpus | requests est / actual | output tokens est / actual | rate est / actual "
          "(tok/s) | generation est / actual (s) | actual / est time |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name, est in estimated.items():
        names = name.split(", ")
        runs_of = [actual[n] for n in names if n in actual]
        if not runs_of:
            print(f"| {name} | {est.missing} / (no run recorded) | | | | |")
            continue
        generated = sum(r["generated"] for r in runs_of)
        tokens = sum(r["completion_tokens"] for r in runs_of)
        seconds = sum(r["wall_s"] for r in runs_of)
        est_s = est.generation_s or float("nan")
        print(
            f"| {name} | {est.missing} / {generated} | {est.output_tokens:,} / {tokens:,} "
            f"| {est.tokens_per_s or float('nan'):.2f} / {tokens / seconds:.2f} "
            f"| {est_s:.1f} / {seconds:.1f} | {seconds / est_s:.2f} |"
        )
    if estimated:
        first = next(iter(estimated.values()))
        print(
            f"\nthe build's first estimate: engine start {first.startup_s:.1f} s (the actual "
            f"start is in the log: 'Starting vLLM engine' to the first fill), "
            f"{first.disk_bytes:,} B of records; the build added {added:,} B of records "
            f"and index entries ({added / first.disk_bytes:.2f}x)"
        )


if __name__ == "__main__":
    main()
