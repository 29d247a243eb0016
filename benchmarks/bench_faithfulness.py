"""Recompute the rephrase faithfulness calibration: the F1 baseline and the threshold.

Usage::

    python benchmarks/bench_faithfulness.py [--pairs 2000] [--seed 0] [--json out.json]
    python benchmarks/bench_faithfulness.py --baseline 0.3499   # check set only (fast)

1. The baseline: the reward's F1 (``faithfulness_f1``: BERTScore's greedy matching over
   the embedded encoder, no idf) of ``--pairs`` random pairs of distinct articles of the
   embedded Lee corpus, whose mean is ``F1_BASELINE`` in
   ``hf_megadocs/tuning/faithfulness.py``.
2. The check set (``hf_megadocs/tuning/faithfulness_checks.py``): every pair's raw and
   rescaled F1 and fact support; per kind the lowest and highest rescaled F1; the AUC of
   faithful vs each unfaithful kind; the threshold that separates them; and how often the
   reward (stored constants), the F1 rule alone and the old rule (raw F1 > 0.65) are right.
3. Coverage: the rescaled F1 of each faithful paraphrase cut to its leading sentences,
   at several shares of its length: how much of its source a rewrite must cover to pass
   (what a completion cap shorter than the source costs).

Prints Markdown; encoding the 300 articles is the slow part (minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from collections import defaultdict
from pathlib import Path

from hf_megadocs.tuning.encoder import TextEncoder
from hf_megadocs.tuning.faithfulness import (
    F1_BASELINE,
    FACT_SUPPORT,
    RESCALED_THRESHOLD,
    auc,
    fact_support,
    faithfulness_f1,
    rescale,
    separating_threshold,
)
from hf_megadocs.tuning.faithfulness_checks import (
    FAITHFUL_KINDS,
    KINDS,
    check_pairs,
    lee_articles,
    truncate,
)

OLD_RAW_THRESHOLD = 0.65
COVERAGE_SHARES = (0.35, 0.5, 0.65, 0.8, 1.0)


def baseline(encoder: TextEncoder, pairs: int, seed: int) -> dict:
    """F1 statistics of random pairs of distinct Lee articles."""
    articles = sorted({a.strip() for a in lee_articles() if a.strip()})
    rng = random.Random(seed)
    drawn = [rng.sample(range(len(articles)), 2) for _ in range(pairs)]
    values = sorted(
        faithfulness_f1(encoder, [articles[i] for i, _ in drawn], [articles[j] for _, j in drawn])
    )
    return {
        "articles": len(articles),
        "pairs": pairs,
        "seed": seed,
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values),
        "p5": values[int(0.05 * len(values))],
        "p95": values[int(0.95 * len(values))],
    }


def check_set(encoder: TextEncoder, base: float) -> dict:
    """The check set scored with the baseline ``base``."""
    pairs = check_pairs()
    raw = faithfulness_f1(encoder, [p.candidate for p in pairs], [p.source for p in pairs])
    rows = [
        {
            "line": p.line,
            "kind": p.kind,
            "faithful": p.faithful,
            "f1": f1,
            "rescaled": rescale(f1, base),
            "facts": fact_support(p.candidate, p.source),
        }
        for p, f1 in zip(pairs, raw, strict=True)
    ]
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_kind[row["kind"]].append(row)
    positives = [r["rescaled"] for r in rows if r["faithful"]]
    negatives = [r["rescaled"] for r in rows if not r["faithful"]]
    kinds = {
        kind: {
            "min": min(r["rescaled"] for r in by_kind[kind]),
            "max": max(r["rescaled"] for r in by_kind[kind]),
            "facts_min": min(r["facts"] for r in by_kind[kind]),
            "facts_max": max(r["facts"] for r in by_kind[kind]),
            "auc": None
            if kind in FAITHFUL_KINDS
            else auc(positives, [r["rescaled"] for r in by_kind[kind]]),
        }
        for kind in KINDS
    }

    def correct(rule) -> int:
        return sum(rule(r) == r["faithful"] for r in rows)

    return {
        "rows": rows,
        "kinds": kinds,
        "auc": auc(positives, negatives),
        "threshold": separating_threshold(positives, negatives),
        "correct": {
            "reward": correct(
                lambda r: r["rescaled"] > RESCALED_THRESHOLD and r["facts"] >= FACT_SUPPORT
            ),
            "rescaled_f1_only": correct(lambda r: r["rescaled"] > RESCALED_THRESHOLD),
            "old_raw_0.65": correct(lambda r: r["f1"] > OLD_RAW_THRESHOLD),
        },
        "pairs": len(rows),
    }


def coverage(encoder: TextEncoder, base: float) -> dict[float, list[float]]:
    """Per share, the rescaled F1 of every faithful paraphrase cut to about that share."""
    faithful = [p for p in check_pairs() if p.kind == "faithful"]
    result = {}
    for share in COVERAGE_SHARES:
        cut = [truncate(p.candidate, share) if share < 1 else p.candidate for p in faithful]
        f1 = faithfulness_f1(encoder, cut, [p.source for p in faithful])
        result[share] = [rescale(v, base) for v in f1]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000, help="random article pairs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write every figure here")
    parser.add_argument(
        "--baseline", type=float, default=None, help="use this baseline instead of measuring it"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    encoder = TextEncoder()
    if args.baseline is None:
        base = baseline(encoder, args.pairs, args.seed)
    else:
        base = {"mean": args.baseline, "given": True}
    checks = check_set(encoder, base["mean"])
    covered = coverage(encoder, base["mean"])
    wall = time.perf_counter() - started

    print(f"{platform.machine()}, {platform.python_version()}; {wall:.0f} s\n")
    if base.get("given"):
        print(f"Baseline given: {base['mean']} (stored F1_BASELINE = {F1_BASELINE}).\n")
    else:
        print(
            f"Baseline: mean F1 {base['mean']:.4f} (sd {base['sd']:.3f}, 5th–95th percentile "
            f"{base['p5']:.3f}–{base['p95']:.3f}) over {base['pairs']} random pairs of "
            f"{base['articles']} Lee articles, seed {base['seed']}; stored F1_BASELINE = "
            f"{F1_BASELINE}.\n"
        )
    print("| kind | rescaled F1 min | max | AUC faithful vs kind | fact support min | max |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind, k in checks["kinds"].items():
        shown = "–" if k["auc"] is None else f"{k['auc']:.3f}"
        print(
            f"| {kind} | {k['min']:.3f} | {k['max']:.3f} | {shown} | "
            f"{k['facts_min']:.2f} | {k['facts_max']:.2f} |"
        )
    threshold = checks["threshold"]
    print(
        f"\nAUC faithful vs all unfaithful: {checks['auc']:.3f}; separating threshold "
        f"(midpoint): {'none, they overlap' if threshold is None else f'{threshold:.3f}'}; "
        f"stored RESCALED_THRESHOLD = {RESCALED_THRESHOLD}, FACT_SUPPORT = {FACT_SUPPORT}."
    )
    for rule, right in checks["correct"].items():
        print(f"- {rule}: {right}/{checks['pairs']} pairs judged right")
    print("\n| share of the paraphrase kept | rescaled F1 min | mean | max | passing |")
    print("|---:|---:|---:|---:|---:|")
    for share, values in covered.items():
        passing = sum(v > RESCALED_THRESHOLD for v in values)
        print(
            f"| {share:.2f} | {min(values):.3f} | {statistics.fmean(values):.3f} | "
            f"{max(values):.3f} | {passing}/{len(values)} |"
        )
    if args.json:
        figures = {"baseline": base, "checks": checks, "coverage": covered}
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
