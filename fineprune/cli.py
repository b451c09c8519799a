"""Plumbing shared by the command-line scripts (prune.py, eval.py, inspect_net.py, benchmark.py).

- `ArgumentParser`: argparse whose usage errors are one line, like every other error here;
- the options every script spells the same way: `--version`, `--seed`, `--clean-data`,
  `--input-scale`, `--plots` (with `plots_folder`, its check), and one option per setting field;
- `run`: runs a command body, turning InputError into a one-line message and exit status 2;
- `refuse_overwriting`: an output option may never name one of the user's input files;
- `quiet_tensorflow`: imports TensorFlow without its start-up chatter on stderr, so that what the
  user sees is the tool's own output. Scripts call it before importing the heavy modules, and only
  once they need them: `eval.py --help` and `benchmark.py --help` never load TensorFlow and stay
  fast, while `prune.py --help` and `inspect_net.py --help` wait for it, because their options are
  built from settings classes that live beside TensorFlow code (prune.py's from the registry of
  repair methods, inspect_net.py's from the detection).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Callable, Iterable, NoReturn

from fineprune import __version__
from fineprune.errors import InputError
from fineprune.progress import Progress, silent
from fineprune.settings import SEED_HIGH, check_seed


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


def add_version_option(parser: argparse.ArgumentParser) -> None:
    """--version: the script's name and the package's version."""
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")


def seed_number(text: str) -> int:
    """argparse type of a seed: an integer in [0, 2**32 - 1], else a one-line usage error."""
    try:
        return check_seed(int(text))
    except (ValueError, InputError):
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer in [0, {SEED_HIGH}]") from None


def add_seed_option(parser: argparse.ArgumentParser, what: str = "random seed") -> None:
    """--seed N, 0 by default as everywhere in the tool (the rule beside `settings.SEED_HIGH`)."""
    parser.add_argument("--seed", type=seed_number, default=0, metavar="N",
                        help=f"{what}, an integer in [0, {SEED_HIGH}]; the same seed repeats a run exactly "
                        "(default: %(default)s)")


def add_clean_data_option(parser: argparse.ArgumentParser, default: str, purpose: str) -> None:
    """--clean-data H5: the clean HDF5 file a script reads, with what it is for."""
    parser.add_argument("--clean-data", default=default, metavar="H5", help=f"{purpose} (default: %(default)s)")


def add_plots_option(parser: argparse.ArgumentParser, what: str) -> None:
    """--plots DIR: a folder to draw the script's figures in (check it with `plots_folder`)."""
    parser.add_argument("--plots", metavar="DIR", help=f"also draw {what}")


def plots_folder(value: str | None) -> Path | None:
    """The --plots folder, or None without the option; InputError if it names a file."""
    if value is None:
        return None
    folder = Path(value)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: --plots names a file, not a folder")
    return folder


def add_settings_options(group: argparse._ArgumentGroup, settings: type) -> None:
    """One option per field of a settings dataclass declared with `settings.option`, named as the
    field with dashes, its default shown."""
    for setting in dataclasses.fields(settings):
        meta = setting.metadata
        if "help" in meta:
            group.add_argument(f"--{setting.name.replace('_', '-')}", dest=setting.name, type=meta["kind"],
                               metavar=meta["metavar"], default=setting.default,
                               help=f"{meta['help']} (default: %(default)s)")


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


def add_quiet_option(parser: argparse.ArgumentParser) -> None:
    """--quiet: no progress on stderr; the report on stdout and errors stay."""
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr (the report on stdout, "
                        "and errors, stay)")


def progress_lines(program: str, quiet: bool = False) -> Progress:
    """The progress callback of a command: each line on stderr after the command's name, or nothing
    with --quiet."""
    return silent if quiet else lambda message: stderr_line(f"{program}: {message}")


def stderr_line(message: str) -> None:
    """Progress for the user, kept off stdout so stdout stays pasteable."""
    print(message, file=sys.stderr, flush=True)
