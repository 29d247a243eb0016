"""One-step-neighbour hyper-parameter search (the paper's sweep); see ``hf_megadocs.jobs.sweep``.

python recipes/sweep.py --presets '[stitched_g32_300m]' --out runs/sweep [--emit_commands true]
(installed: ``hf-megadocs sweep ...``)
"""

import sys

from hf_megadocs.jobs.sweep import main

if __name__ == "__main__":
    sys.exit(main())
