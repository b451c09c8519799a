"""Repair a BadNet: prune it while fine-tuning on clean data, and save MODEL_rp.h5 beside it.

    python prune.py models/sunglasses_bd_net.h5
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import Field
from pathlib import Path

from fineprune import cli


def build_parser() -> cli.ArgumentParser:
    cli.quiet_tensorflow()  # the methods' options come from the registry, which loads TensorFlow
    from fineprune import defenses
    from fineprune.defenses.core import MAX_ACCURACY_DROP, MAX_ACCURACY_DROP_HELP

    parser = cli.ArgumentParser(
        prog="prune.py",
        description="Repair a backdoored classifier (BadNet) with clean data: the original project's "
        "magnitude pruning of Dense layers, Fine-Pruning (Liu et al. 2018) and its baselines, and the other "
        "methods below. Writes MODEL_rp.h5 next to MODEL; MODEL itself is never modified.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="methods:\n" + "\n".join(f"  {name:<12} {defenses.get(name).summary}" for name in defenses.names()),
    )
    parser.add_argument("model", metavar="MODEL", help="BadNet: full Keras .h5 or .keras model, or challenge "
                        "weights-only .h5")
    cli.add_clean_data_option(parser, "data/clean_validation_data.h5",
                              "clean data for the repair and the held-out check (HDF5 with data, label)")
    parser.add_argument("--output", metavar="FILE", help="where to write the repaired model: .h5 (HDF5) or .keras "
                        "(tf-keras's archive) (default: MODEL stem + _rp.h5)")
    parser.add_argument("--method", choices=defenses.names(), default="magnitude",
                        help="the repair method, described below (default: %(default)s)")
    parser.add_argument("--json", metavar="PATH", help="also write what the file records of the repair as JSON: the "
                        "method, its settings, what it measured and the strength its rule chose")
    cli.add_input_scale_option(parser)
    parser.add_argument("--max-accuracy-drop", metavar="POINTS", type=float, default=MAX_ACCURACY_DROP,
                        help=MAX_ACCURACY_DROP_HELP)
    add_method_options(parser, defenses.option_fields())
    cli.add_seed_option(parser, "random seed of the held-out split, the shuffles and the method's own draws")
    cli.add_quiet_option(parser)
    cli.add_version_option(parser)
    return parser


def add_method_options(parser: argparse.ArgumentParser, options: dict[str, list[tuple[str, Field]]]) -> None:
    """One option per method setting, its help naming the methods that take it with their defaults.
    An option left out is not set at all, so that each method keeps its own default."""
    group = parser.add_argument_group("method settings")
    every_method = {name for taken in options.values() for name, _ in taken}
    for name, taken in options.items():
        defaults: dict[object, list[str]] = {}
        for method, setting in taken:  # an unset default is told apart by what happens then
            value = setting.default if setting.default is not None else (None, setting.metadata.get("unset"))
            defaults.setdefault(value, []).append(method)
        if len(defaults) == 1 and {method for method, _ in taken} == every_method:
            which = f"default: {next(iter(defaults))}"
        else:
            which = "; ".join(f"{', '.join(methods)}" + (f": default {value}" if not isinstance(value, tuple) else
                                                          f": {value[1]}" if value[1] else "")
                              for value, methods in defaults.items())
        meta = taken[0][1].metadata
        group.add_argument(f"--{name.replace('_', '-')}", dest=name, type=meta["kind"], metavar=meta["metavar"],
                           default=argparse.SUPPRESS, help=f"{meta['help']} ({which})")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return cli.run("prune.py", lambda: prune(args))


def prune(args: argparse.Namespace) -> int:
    cli.quiet_tensorflow()
    from fineprune import defenses
    from fineprune.data import check_same_data, load_dataset
    from fineprune.defenses.core import check_accuracy_kept
    from fineprune.settings import check_bounds
    from fineprune.models import load_model, repaired_model_path, save_model
    from fineprune.report import prune_summary, write_json

    given = {name: getattr(args, name) for name in defenses.option_fields() if hasattr(args, name)}
    settings = defenses.get(args.method).settings(**given, seed=args.seed)  # refuses an option it does not use
    check_bounds("max_accuracy_drop", args.max_accuracy_drop, (0, None, False, False))
    model_path = Path(args.model)
    output = Path(args.output) if args.output else repaired_model_path(model_path)
    cli.refuse_overwriting(output, [model_path, Path(args.clean_data)], "--output")
    if args.json:
        cli.refuse_overwriting(Path(args.json), [model_path, Path(args.clean_data), output], "--json")

    badnet = load_model(model_path, args.input_scale)
    clean = load_dataset(args.clean_data, image_shape=badnet.image_shape, num_classes=badnet.num_classes)
    check_same_data(badnet.metadata, badnet.path, clean)
    progress = cli.progress_lines("prune.py", args.quiet)
    progress(
        f"{model_path} ({badnet.num_classes} classes, input scale {badnet.input_scale} "
        f"[{badnet.input_scale_source}]); clean data {args.clean_data} ({len(clean)} images); seed {settings.seed}"
    )
    result = defenses.repair(badnet, clean, settings, progress)
    check_accuracy_kept(result, settings.method, args.max_accuracy_drop)
    record = defenses.repair_record(badnet, args.clean_data, settings, result)
    save_model(result.model, output, record)
    if args.json:
        write_json(args.json, record)
    print(prune_summary(model_path, output, settings, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
