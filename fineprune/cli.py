"""Plumbing shared by the command-line scripts (prune.py, eval.py).

- `ArgumentParser`: argparse whose usage errors are one line, like every other error here;
- `run`: runs a command body, turning InputError into a one-line message and exit status 2;
- `refuse_overwriting`: an output option may never name one of the user's input files;
- `quiet_tensorflow`: imports TensorFlow without its start-up chatter on stderr, so that what the
  user sees is the tool's own output. Scripts call it before importing the heavy modules, which
  also keeps `--help` fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Iterable, NoReturn

from fineprune.errors import InputError


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error: `prog: error: message (see --help)`, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def run(program: str, body: Callable[[], int]) -> int:
    """Run `body`, reporting bad input as one line on stderr with exit status 2 (no traceback)."""
    try:
        return body()
    except InputError as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{program}: interrupted; no output file was changed", file=sys.stderr)
        return 130


def add_input_scale_option(parser: argparse.ArgumentParser, which: str = "MODEL expects",
                           default: str = "what MODEL records, else unit") -> None:
    """--input-scale, as every script offers it: real BadNets differ in the pixels they expect."""
    parser.add_argument("--input-scale", choices=["unit", "raw"],
                        help=f"how {which} pixels: unit = x/255, raw = 0..255 (default: {default})")


def refuse_overwriting(output: Path, inputs: Iterable[Path], option: str) -> None:
    """Raise InputError if `output` (set by `option`) is one of the user's input files."""
    for source in inputs:
        if output.resolve() == source.resolve():
            raise InputError(f"{output}: {option} would overwrite the input {source}; choose another file")


def quiet_tensorflow() -> None:
    """Import TensorFlow and tf-keras with their C++ start-up log lines silenced.

    TF_CPP_MIN_LOG_LEVEL hides the runtime log; the lines printed while the libraries load come
    before that setting is read, so stderr is pointed at /dev/null for the import only. Real
    failures still surface as Python exceptions.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
            import tf_keras  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    tensorflow.get_logger().setLevel("ERROR")


def stderr_line(message: str) -> None:
    """Progress for the user, kept off stdout so stdout stays pasteable."""
    print(message, file=sys.stderr, flush=True)
