"""`python -m fineprune COMMAND [options]`: the same programs as the top-level scripts."""

from __future__ import annotations

import sys
from typing import Callable

COMMANDS = ("prune", "eval", "inspect", "benchmark")
USAGE = (f"usage: python -m fineprune {{{','.join(COMMANDS)}}} [options]\n"
         "  prune      repair a BadNet (prune.py)\n"
         "  eval       measure a repair with the repaired detector G (eval.py)\n"
         "  inspect    is a net backdoored, from clean data alone (inspect_net.py)\n"
         "  benchmark  the embedded benchmark's commands (benchmark.py)\n"
         "Each command's --help tells its options.\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    if not argv:
        print(USAGE, end="", file=sys.stderr)
        return 2
    if argv[0] not in COMMANDS:
        print(f"python -m fineprune: error: {argv[0]!r} is not a command (one of {', '.join(COMMANDS)})",
              file=sys.stderr)
        return 2
    return program(argv[0])(argv[1:])


def program(command: str) -> Callable[[list[str]], int]:
    """The `main` of one of the COMMANDS, imported only when asked for (keeps --help fast)."""
    if command == "prune":
        from fineprune.commands.prune import main
    elif command == "eval":
        from fineprune.commands.eval import main
    elif command == "inspect":
        from fineprune.commands.inspect_net import main
    else:
        from fineprune.commands.benchmark import main
    return main


if __name__ == "__main__":
    sys.exit(main())
