#!/usr/bin/env python3
"""Repair a BadNet: prune it while fine-tuning on clean data, and save MODEL_rp.h5 beside it.

    python prune.py models/sunglasses_bd_net.h5
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import asdict
from pathlib import Path

from fineprune import __version__, cli

def build_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="prune.py",
        description="Repair a backdoored classifier (BadNet) with clean data: the original project's "
        "magnitude pruning of Dense layers, or Fine-Pruning (Liu et al. 2018) and its baselines. "
        "Writes MODEL_rp.h5 next to MODEL; MODEL itself is never modified.",
    )
    parser.add_argument("model", metavar="MODEL", help="BadNet: full Keras .h5 model or challenge weights-only .h5")
    parser.add_argument("--clean-data", default="data/clean_validation_data.h5", metavar="H5",
                        help="clean data for fine-tuning and the held-out check (HDF5 with data, label; default: %(default)s)")
    parser.add_argument("--output", metavar="H5", help="where to write the repaired model (default: MODEL stem + _rp.h5)")
    parser.add_argument("--method", choices=["magnitude", "activation", "finetune", "prune"], default="magnitude",
                        help="magnitude = TF-MOT low-magnitude pruning of every Dense layer while fine-tuning; "
                        "activation = Fine-Pruning: prune --layer's least active channels, then fine-tune; "
                        "prune / finetune = either half alone (default: %(default)s)")
    parser.add_argument("--input-scale", choices=["unit", "raw"],
                        help="how MODEL expects pixels: unit = x/255, raw = 0..255 "
                        "(default: what MODEL records, else unit)")
    parser.add_argument("--layer", default="conv_3", metavar="NAME",
                        help="activation/prune: the convolutional layer whose channels are pruned (default: %(default)s)")
    parser.add_argument("--max-accuracy-drop", type=float, default=4.0, metavar="POINTS",
                        help="activation/prune: prune until held-out accuracy has fallen this far (default: %(default)s)")
    parser.add_argument("--prune-fraction", type=float, metavar="F",
                        help="activation/prune: prune exactly this share of the channels instead of using the budget")
    parser.add_argument("--initial-sparsity", type=float, default=0.5, metavar="S",
                        help="magnitude: share of Dense weights zeroed at the first step, in [0, 1) (default: %(default)s)")
    parser.add_argument("--final-sparsity", type=float, default=0.7, metavar="S",
                        help="magnitude: share zeroed at the last step, in [0, 1), at least the initial (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=2, metavar="N", help="fine-tuning epochs (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=10, metavar="N", help="fine-tuning batch size (default: %(default)s)")
    parser.add_argument("--validation-split", type=float, default=0.1, metavar="F",
                        help="share of the clean data held out (seeded shuffle) to measure accuracy "
                        "before and after (default: %(default)s)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, metavar="LR",
                        help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--pruning-frequency", type=int, default=100, metavar="N",
                        help="magnitude: steps between mask updates of the sparsity schedule (TF-MOT frequency; "
                        "default: %(default)s)")
    parser.add_argument("--seed", type=int, metavar="N",
                        help="random seed; the same seed repeats a run exactly (default: a random one, printed)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return cli.run("prune.py", lambda: prune(args))


def prune(args: argparse.Namespace) -> int:
    cli.quiet_tensorflow()
    from fineprune.benchmark.build import check_same_data
    from fineprune.data import load_dataset
    from fineprune.models import load_model, repaired_model_path, save_model
    from fineprune.pruning import ActivationPruningSettings, MagnitudePruningSettings, repair
    from fineprune.report import prune_summary

    seed = args.seed if args.seed is not None else random.randrange(2**31)
    common = dict(epochs=args.epochs, batch_size=args.batch_size, validation_split=args.validation_split,
                  learning_rate=args.learning_rate, seed=seed)
    settings = (
        MagnitudePruningSettings(initial_sparsity=args.initial_sparsity, final_sparsity=args.final_sparsity,
                                 pruning_frequency=args.pruning_frequency, **common)
        if args.method == "magnitude" else
        ActivationPruningSettings(method=args.method, layer=args.layer, max_accuracy_drop=args.max_accuracy_drop,
                                  prune_fraction=args.prune_fraction, **common)
    )
    model_path = Path(args.model)
    output = Path(args.output) if args.output else repaired_model_path(model_path)
    cli.refuse_overwriting(output, [model_path, Path(args.clean_data)], "--output")

    badnet = load_model(model_path, args.input_scale)
    clean = load_dataset(args.clean_data, image_shape=badnet.image_shape, num_classes=badnet.num_classes)
    check_same_data(badnet.metadata, badnet.path, clean)
    cli.stderr_line(
        f"prune.py: {model_path} ({badnet.num_classes} classes, input scale {badnet.input_scale} "
        f"[{badnet.input_scale_source}]); clean data {args.clean_data} ({len(clean)} images); seed {seed}"
    )
    result = repair(badnet, clean, settings, verbose=0 if args.quiet else 1)
    save_model(result.model, output, {
        "created_by": f"fineprune {__version__}",
        "input_scale": badnet.input_scale,
        **({"data": badnet.metadata["data"]} if "data" in badnet.metadata else {}),
        "source_model": str(model_path),
        "clean_data": str(args.clean_data),
        "method": args.method,
        "settings": asdict(settings),
        "result": result.summary(),
    })
    print(prune_summary(model_path, output, settings, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
