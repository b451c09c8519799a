#!/usr/bin/env python3
"""Inspect a net from clean data alone: is it backdoored, which class is the target, what does the

The program lives in `fineprune.commands.inspect_net`; this file keeps `python inspect_net.py ...` working.
"""

import sys

from fineprune.commands.inspect_net import main

if __name__ == "__main__":
    sys.exit(main())
