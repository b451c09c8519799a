#!/usr/bin/env python3
"""The embedded synthetic benchmark: build its data, train its BadNets, run the whole reproduction.

    python benchmark.py data        # make data: the CSAW-format synthetic face files in data/
    python benchmark.py badnets     # make badnets: train the four BadNets into models/ (committed)
"""

from __future__ import annotations

import argparse
import sys
import time

from fineprune import __version__, cli


def build_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="benchmark.py",
        description="The embedded synthetic face benchmark in the CSAW-HackML-2020 file layout.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data = commands.add_parser("data", help="build the data files (deterministic from the seed)")
    data.add_argument("--data-dir", default="data", metavar="DIR", help="where to write them (default: %(default)s)")
    data.add_argument("--seed", type=int, default=None, metavar="N", help="data seed (default: the benchmark's)")
    badnets = commands.add_parser("badnets", help="train the benchmark's BadNets on the attacker's own images")
    badnets.add_argument("--data-dir", default="data", metavar="DIR", help="benchmark data, for measuring (default: %(default)s)")
    badnets.add_argument("--models-dir", default="models", metavar="DIR", help="where to save them (default: %(default)s)")
    badnets.add_argument("--only", action="append", metavar="NAME",
                         help="train only this BadNet (repeatable): sunglasses, multi_trigger_multi_target, "
                         "anonymous_1, anonymous_2")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return cli.run("benchmark.py", lambda: COMMANDS[args.command](args))


def build_data(args: argparse.Namespace) -> int:
    from fineprune import benchmark

    started = time.perf_counter()
    seed = benchmark.DATA_SEED if args.seed is None else args.seed
    benchmark.build_data(args.data_dir, seed, progress=lambda m: cli.stderr_line(f"benchmark.py: {m}"))
    print(f"Built the benchmark data in {args.data_dir}/ (seed {seed}) in {time.perf_counter() - started:.1f} s")
    return 0


def train_badnets(args: argparse.Namespace) -> int:
    cli.quiet_tensorflow()
    from pathlib import Path

    from fineprune import attacks, benchmark, report
    from fineprune.errors import InputError

    specs = [spec for spec in benchmark.BADNETS if not args.only or spec.name in args.only]
    unknown = set(args.only or []) - {spec.name for spec in benchmark.BADNETS}
    if unknown:
        raise InputError(f"--only {sorted(unknown)[0]}: no such BadNet")
    rows = []
    for spec in specs:
        started = time.perf_counter()
        result = attacks.make_badnet(spec, Path(args.data_dir), Path(args.models_dir),
                                     log=lambda m: cli.stderr_line(f"benchmark.py: {m}"))
        for file, asr in result.attack_success_pct.items():
            rows.append([spec.name, Path(file).stem.removesuffix("_poisoned_data"), result.clean_accuracy_pct, asr,
                         f"{time.perf_counter() - started:.0f}"])
    print(report.markdown_table(["BadNet", "trigger", "clean accuracy (%)", "attack success (%)", "seconds"], rows))
    return 0


COMMANDS = {"data": build_data, "badnets": train_badnets}

if __name__ == "__main__":
    sys.exit(main())
