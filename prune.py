#!/usr/bin/env python3
"""Repair a BadNet: prune it while fine-tuning on clean data, and save MODEL_rp.h5 beside it.

The program lives in `fineprune.commands.prune`; this file keeps `python prune.py ...` working.
"""

import sys

from fineprune.commands.prune import main

if __name__ == "__main__":
    sys.exit(main())
