"""Inspect a net from clean data alone: is it backdoored, which class is the target, what does the
trigger look like (MM-BD's maximum-margin test, or Neural Cleanse's anomaly index, and Neural
Cleanse's trigger reversal for the picture).

    python inspect_net.py models/anonymous_2_bd_net.h5

(Not `inspect.py`: a file of that name beside the scripts would hide the standard library's
`inspect` module, which TensorFlow imports, and break every script here.)
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from fineprune import cli

PLOT_FACES = 4  # clean faces each reversed trigger is shown stamped on


def build_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="inspect_net.py",
        description="Decide from clean data alone whether a classifier is backdoored. By default every class's "
        "maximum margin (its logit minus the largest other) over the range the clean data's penultimate features "
        "span is measured, and the classes whose margin is improbably large are flagged (MM-BD, Wang et al. 2024); "
        "with --detector reversal, the suspect classes an untargeted search proposes are flagged if their "
        "reverse-engineered trigger is anomalously small (Neural Cleanse, Wang et al. 2019). Either way the smallest "
        "trigger (mask + pattern) of each flagged class is reverse-engineered, beside ordinary classes drawn at "
        "random, to show what it looks like. A net with several targets gets every one reported.",
    )
    parser.add_argument("model", metavar="MODEL", help="the net: full Keras .h5 or .keras model, or challenge "
                        "weights-only .h5")
    cli.add_clean_data_option(parser, "data/clean_validation_data.h5",
                              "clean data to reverse triggers on (HDF5 with data, label)")
    cli.add_input_scale_option(parser)
    cli.quiet_tensorflow()  # the detection settings live beside the code that loads TensorFlow
    from fineprune.inspection import DetectionSettings

    group = parser.add_argument_group("detection settings")
    cli.add_settings_options(group, DetectionSettings)
    group.add_argument("--class", dest="classes", type=int, action="append", default=[], metavar="N",
                       help="also examine this class, e.g. one you suspect (repeatable); its trigger is drawn "
                       "with --plots")
    cli.add_seed_option(parser)
    cli.add_plots_option(parser, "each suspected trigger (mask, stamp, stamped faces), the distribution of mask "
                         "sizes and (margin detector) of maximum margins to DIR")
    parser.add_argument("--json", metavar="PATH", help="also write every number as JSON")
    cli.add_version_option(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return cli.run("inspect_net.py", lambda: inspect_net(args))


def inspect_net(args: argparse.Namespace) -> int:
    from fineprune.errors import InputError
    from fineprune.inspection import DetectionSettings

    settings = DetectionSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DetectionSettings)
                                    if hasattr(args, f.name)})
    model_path, clean_path = Path(args.model), Path(args.clean_data)
    inputs = [model_path, clean_path]
    if args.json:
        cli.refuse_overwriting(Path(args.json), inputs, "--json")
    plots = cli.plots_folder(args.plots)
    cli.quiet_tensorflow()
    from fineprune import inspection, report
    from fineprune.data import load_dataset
    from fineprune.models import load_model

    net = load_model(model_path, args.input_scale)
    for asked in args.classes:  # checked before the clean data is read
        if not 0 <= asked < net.num_classes:
            raise InputError(f"--class {asked} is outside [0, {net.num_classes - 1}] ({model_path} has "
                             f"{net.num_classes} classes)")
    clean = load_dataset(clean_path, image_shape=net.image_shape, num_classes=net.num_classes)
    proposer = ("the classes the maximum-margin test flags" if settings.detector == "margin"
                else f"{settings.suspects} proposed")
    cli.stderr_line(f"inspect_net.py: {model_path} ({net.num_classes} classes, input scale {net.input_scale}); "
                    f"clean data {clean_path} ({len(clean)} images); reversing {proposer} and "
                    f"{settings.ordinary_classes} ordinary classes"
                    + (f", and class {', '.join(map(str, args.classes))} as asked" if args.classes else ""))
    found = inspection.inspect(net, clean, settings, progress=lambda m: cli.stderr_line(f"inspect_net.py: {m}"),
                               asked=args.classes)
    print(report.inspection_report(found))
    if args.json:
        report.write_json(args.json, found.to_json())
    if plots is not None:
        written = draw(found, clean.x[:: max(1, len(clean) // PLOT_FACES)][:PLOT_FACES], plots, model_path.stem)
        print("\nWrote " + ", ".join(str(p) for p in written))
    return 0


def draw(found, faces, folder: Path, stem: str) -> list[Path]:
    """The figures of --plots: each suspect's trigger (or the most anomalous class's, marked as not
    flagged, when nothing is), each asked-for class's, and the mask sizes with the threshold."""
    from fineprune import plots
    from fineprune.inspection import threshold_mask_share_pct

    shown = found.suspects or sorted(found.examined, key=lambda e: -e.anomaly_index)[:1]
    statistic = "margin index" if found.margins is not None else "anomaly index"
    index_of = (lambda e: e.margin_index) if found.margins is not None else (lambda e: e.anomaly_index)
    shown += [e for e in found.examined if e.asked and e not in shown]
    written = []
    for examined in shown:
        path = folder / f"trigger_{stem}_class_{examined.target}.png"
        verdict = ("flagged" if examined.flagged else "not flagged, asked for" if examined.asked
                   else "not flagged (the most anomalous class examined)")
        plots.draw_reversed_trigger(found.trigger_of(examined.target), faces, path,
                                    f"{stem}: reversed trigger for class {examined.target}, {verdict}\n"
                                    f"{statistic} {index_of(examined):.2f}, sends "
                                    f"{examined.hit_rate_pct:.1f}% of held-out faces to it")
        written.append(path)
    path = folder / f"mask_sizes_{stem}.png"
    threshold = threshold_mask_share_pct(found.examined, found.settings.anomaly_threshold)
    plots.draw_mask_sizes(found.examined, threshold, path,
                          f"{stem}: mask sizes of the {len(found.examined)} classes reversed",
                          "anomaly index threshold (not deciding)" if found.margins else "flagged below this size")
    written.append(path)
    if found.margins is not None:
        path = folder / f"margins_{stem}.png"
        plots.draw_margins(found.margins.margins, [f.target for f in found.margins.flagged], path,
                           f"{stem}: maximum margins of the {len(found.margins.margins)} classes")
        written.append(path)
    return written


if __name__ == "__main__":
    sys.exit(main())
