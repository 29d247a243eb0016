"""Train a language model on real + synthetic megadoc corpora; see ``hf_megadocs.train``.

    accelerate launch recipes/train.py --config recipes/configs/tiny_cpu.yaml [--section.field V]
    accelerate launch --multi_gpu --num_processes 2 recipes/train.py --config ... --max_steps 20

The same trainer is installed with the package: ``hf-megadocs train`` or
``accelerate launch -m hf_megadocs.train``.
"""

import sys

from hf_megadocs.train import main

if __name__ == "__main__":
    sys.exit(main())
