"""``python -m mantid_exp2sim.train``: the same as ``exp2sim-train`` (and what torchrun launches)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
