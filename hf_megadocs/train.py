"""Train a language model on real + synthetic megadoc corpora (the installed entry point).

    hf-megadocs train --config tiny_cpu [--section.field V]
    accelerate launch -m hf_megadocs.train --config tiny_cpu --max_steps 20
    accelerate launch --multi_gpu --num_processes 2 -m hf_megadocs.train --config ...

``--config`` takes a YAML path or a bundled config's name (``tiny_cpu``, ``paper_300m``;
:mod:`hf_megadocs.configs`). Any config field can be set (``--optim.lr 1e-3``,
``--mix.synthetic_share 0.9``, ``--output_dir runs/x``, ``--max_steps 10``,
``--resume_from_checkpoint latest``); ``--preset NAME`` starts from a named preset
(``hf_megadocs.training.PRESETS``); ``--help`` lists every field with its default. An
``--output_dir`` holding an earlier run's checkpoints or ``summary.json`` is refused (exit
2, nothing changed) unless the command resumes it (``--resume_from_checkpoint latest``) or
overwrites it (``--overwrite_output_dir``: its records are deleted first). A checkout's
``recipes/train.py`` is this module.
"""

from __future__ import annotations

import logging
import sys

from hf_megadocs.disk_full import DiskFullError
from hf_megadocs.flags import ConfigError
from hf_megadocs.lifetime import die_with_launcher
from hf_megadocs.locks import LockHeldError
from hf_megadocs.training import load_config, train

PROG = "hf-megadocs train"


def main(argv: list[str] | None = None) -> int:
    """Parse the training flags, train, print a one-line summary; the exit code."""
    die_with_launcher()  # killing `accelerate launch` stops the training too
    try:
        config = load_config(overrides=sys.argv[1:] if argv is None else argv)
    except ConfigError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        summary = train(config)
    except (LockHeldError, ValueError, DiskFullError) as error:  # the message says the fix
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    print(
        f"done: {summary['steps']} steps, iid_loss={summary['iid_loss']:.4f}, "
        f"output in {config.output_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
