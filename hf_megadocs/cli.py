"""The ``hf-megadocs`` console script: one subcommand per capability.

Each subcommand lives in its own module and exposes ``main(argv: list[str]) -> int``;
this file only maps names to those modules (an explicit dict, no registry magic).
"""

from __future__ import annotations

import importlib
import logging
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("hf_megadocs.generation.cli", "fill the generation store for a source corpus"),
    "push": ("hf_megadocs.hub.cli", "export corpora to Parquet + dataset card, upload to the Hub"),
    "train": (
        "hf_megadocs.train",
        "train on real + synthetic corpora (one process; several: accelerate launch -m ...)",
    ),
    "sweep": ("hf_megadocs.jobs.sweep", "one-step-neighbour hyper-parameter search of training"),
    "report": ("hf_megadocs.analysis.report", "data-efficiency report from training runs"),
    "study": (
        "hf_megadocs.jobs.study",
        "plan, run and summarise a data-efficiency study (L(D) fit, multipliers)",
    ),
    "tune-generator": (
        "hf_megadocs.tuning.cli",
        "tune a rephrase/reformat generator with GRPO and a LoRA adapter (SynPro)",
    ),
    "rounds": (
        "hf_megadocs.tuning.rounds_cli",
        "model-aware rounds: tune, regenerate, continue pre-training (SynPro)",
    ),
    "demo": (
        "hf_megadocs.jobs.demo",
        "the main job: build corpora, train, report (embedded defaults)",
    ),
}


def _usage() -> str:
    lines = ["usage: hf-megadocs <command> [options]", "", "commands:"]
    lines += [f"  {name:<15} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines.append("\nRun 'hf-megadocs <command> --help' for a command's options.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``hf-megadocs <command> ...`` to the command's module."""
    if argv is None:  # the console script: its workers must not outlive it
        from hf_megadocs.lifetime import guard_workers

        guard_workers()
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"hf-megadocs: unknown command {name!r}.\n\n{_usage()}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from hf_megadocs.disk_full import DiskFullError, is_disk_full
    from hf_megadocs.extras import MissingExtraError
    from hf_megadocs.generation.generator_check import GeneratorNotFoundError
    from hf_megadocs.generation.store import StoreNotWritableError
    from hf_megadocs.locks import LockHeldError, LockNotSupportedError

    expected = (
        LockHeldError,
        LockNotSupportedError,
        MissingExtraError,
        StoreNotWritableError,
        ConnectionError,
        DiskFullError,
        GeneratorNotFoundError,
    )
    module = importlib.import_module(SUBCOMMANDS[name][0])
    try:
        return int(module.main(rest) or 0)
    except expected as error:
        # Expected failures whose message says the fix: no traceback.
        print(f"hf-megadocs {name}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        if not is_disk_full(error):
            raise
        # a writer that does not name its folder itself: still one line, not a traceback
        where = f" while writing {error.filename}" if error.filename else ""
        reason = error.strerror or error
        print(
            f"hf-megadocs {name}: error: the disk is full (or over quota){where} ({reason}). "
            "Free some space, then rerun the same command: what was already saved (stored "
            "generations, built corpora, checkpoints) is kept.",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
