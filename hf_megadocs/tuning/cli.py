"""``hf-megadocs tune-generator``: tune a rephrase or reformat generator with GRPO.

Flags are the fields of :class:`~hf_megadocs.tuning.config.TuneConfig` (``--operation``,
``--profile``, ``--source.source``, ``--influence.checkpoint``, ``--rewards '{"length": 1}'``,
...; ``--help`` lists them all). Prints where the adapter is and base vs tuned rewards.
"""

from __future__ import annotations

import logging
import sys

from hf_megadocs.flags import ConfigError, parse_dataclass

DESCRIPTION = (
    "Tune a generator with GRPO (TRL) and a LoRA adapter (peft) on a rephrase or reformat "
    "prompt over your documents, rewarded for length, format, faithfulness, quality and, "
    "with --influence.checkpoint, data influence on your pre-training run (SynPro)."
)


def main(argv: list[str] | None = None) -> int:
    """Run ``hf-megadocs tune-generator``; returns the exit status (2 for a bad configuration)."""
    from hf_megadocs.tuning.config import TuneConfig
    from hf_megadocs.tuning.tune import tune_generator

    try:
        config = parse_dataclass(
            TuneConfig, argv, prog="hf-megadocs tune-generator", description=DESCRIPTION
        )
        result = tune_generator(config)
    except (ConfigError, ValueError) as error:
        print(f"hf-megadocs tune-generator: error: {error}", file=sys.stderr)
        return 2
    print(summary_table(result.manifest))
    return 0


def summary_table(manifest: dict) -> str:
    """Base vs tuned mean reward per component on the held-out documents."""
    served = manifest["served"]
    lines = [
        f"tuned {manifest['operation']} generator: {manifest['steps']} GRPO steps, "
        f"{manifest['wall_s']:.0f} s",
        f"  serve with: --backend.generator {served['generator']}"
        + (f" --backend.lora_path {served['lora_path']}" if served["lora_path"] else ""),
    ]
    base = manifest["evaluation"]["base"]["rewards"]
    tuned = manifest["evaluation"]["tuned"]["rewards"]
    if base:
        lines.append(f"  {'reward':<14}{'base':>9}{'tuned':>9}   (held-out documents)")
        lines += [f"  {name:<14}{base[name]:>9.3f}{tuned[name]:>9.3f}" for name in base]
    return "\n".join(lines)


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(main())
