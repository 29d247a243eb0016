"""``hf-megadocs rounds``: model-aware generation rounds from a pre-training run (SynPro).

Flags are the fields of :class:`~hf_megadocs.tuning.rounds.RoundsConfig` (``--run_dir``,
``--trigger now``, ``--selection.mode top_k``, ``--tune.max_steps``,
``--corpus_kwargs '{"backend": "vllm"}'``, ``--control.sizes 0.5 1 2 4``, ...; ``--help``
lists them all). Prints one line per round: its selection, corpora and the continuation's
losses, then its loss against the repetition-only control arm and the effective-token
multiplier (``rounds.md`` in the output folder has the full report).
"""

from __future__ import annotations

import logging
import sys

from hf_megadocs.flags import ConfigError, parse_dataclass

DESCRIPTION = (
    "Model-aware generation rounds (SynPro): when a pre-training run's loss plateaus, tune "
    "rephrase/reformat generators with the data-influence reward at its checkpoint, "
    "regenerate the selected documents with them, and continue pre-training on real data "
    "plus the union of every round's corpora."
)


def main(argv: list[str] | None = None) -> int:
    """Run ``hf-megadocs rounds``; returns the exit status (2 for a bad configuration)."""
    from hf_megadocs.tuning.control_arm import compare
    from hf_megadocs.tuning.rounds import RoundsConfig, run_rounds

    try:
        config = parse_dataclass(
            RoundsConfig, argv, prog="hf-megadocs rounds", description=DESCRIPTION
        )
        result = run_rounds(config)
    except (ConfigError, ValueError) as error:
        print(f"hf-megadocs rounds: error: {error}", file=sys.stderr)
        return 2
    for manifest in result.rounds:
        corpora = ", ".join(f"{c['name']} ({c['rows']} rows)" for c in manifest["corpora"].values())
        training = manifest["training"]
        print(
            f"round {manifest['round']}: from step {manifest['checkpoint_step']}, "
            f"{manifest['documents'].get('selected')} documents regenerated → {corpora}; "
            f"union {manifest['union']['rows']} rows; continued to step {training['steps']}: "
            f"iid_loss {training['iid_loss']:.4f}"
        )
        comparison = compare(manifest, config.control)
        if comparison is not None:
            multiplier = comparison.estimate.describe() if comparison.estimate else "—"
            print(
                f"  vs repetition on the same data for the same steps: iid_loss "
                f"{comparison.repetition_loss:.4f}; effective-token multiplier {multiplier}"
                + (f" ({comparison.note})" if comparison.note else "")
            )
    print(result.stopped)
    return 0


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(main())
