#!/usr/bin/env python3
"""Evaluate a repair: clean accuracy and attack success rate of the BadNet vs the repaired detector G.

The program lives in `fineprune.commands.eval`; this file keeps `python eval.py ...` working.
"""

import sys

from fineprune.commands.eval import main

if __name__ == "__main__":
    sys.exit(main())
