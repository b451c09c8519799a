"""Progress of long work, through one callback: a function that takes one line of text.

Every long job (a repair, a detection, an evaluation) takes a `progress` callback and calls it now
and then with a line saying where it is. The commands pass one that writes to stderr, so that
stdout holds only the report a user pastes; their `--quiet`, and the Python API by default, pass
`silent`.
"""

from __future__ import annotations

from typing import Callable

Progress = Callable[[str], None]


def silent(message: str) -> None:
    """The progress callback that reports nothing."""
