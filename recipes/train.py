"""Train a language model on real + synthetic megadoc corpora.

    accelerate launch recipes/train.py --config recipes/configs/tiny_cpu.yaml [--section.field V]
    accelerate launch --cpu --num_processes 2 recipes/train.py --config ... --max_steps 20

Any config field can be overridden (``--optim.lr 1e-3``, ``--mix.synthetic_share 0.9``,
``--output_dir runs/x``, ``--max_steps 10``, ``--resume_from_checkpoint latest``);
``--preset NAME`` starts from a named preset (``hf_megadocs.train.PRESETS``).
"""

from __future__ import annotations

import argparse
import logging
import sys

from hf_megadocs.train import PRESETS, load_config, train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", help="YAML config file (fields of TrainConfig)")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="start from a named preset")
    args, overrides = parser.parse_known_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = load_config(args.config, overrides, preset=args.preset)
    summary = train(config)
    print(
        f"done: {summary['steps']} steps, iid_loss={summary['iid_loss']:.4f}, "
        f"output in {config.output_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
