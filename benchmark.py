#!/usr/bin/env python3
"""The embedded synthetic benchmark: build its data, train its BadNets, run the whole reproduction.

The program lives in `fineprune.commands.benchmark`; this file keeps `python benchmark.py ...` working.
"""

import sys

from fineprune.commands.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
