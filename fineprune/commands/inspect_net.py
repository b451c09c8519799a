"""Inspect a net from clean data alone: is it backdoored, which class is the target, what does the
trigger look like (MM-BD's maximum-margin test, or Neural Cleanse's anomaly index, and Neural
Cleanse's trigger reversal for the picture, only where --plots or --reverse-triggers asks for it).

    python inspect_net.py models/anonymous_2_bd_net.h5

(Not `inspect.py`: a file of that name beside the scripts would hide the standard library's
`inspect` module, which TensorFlow imports, and break every script here.)
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import textwrap
from pathlib import Path

from fineprune import cli

PLOT_FACES = 4  # clean faces each reversed trigger is shown stamped on


def build_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="inspect_net.py",
        description="Decide from clean data, or from the net alone, whether a classifier is backdoored. By "
        "default every class's maximum margin (its logit minus the largest other) is searched twice, over the "
        "whole input space and over the range the clean data's penultimate features span, and a class whose margin "
        "is improbably large in either is flagged (MM-BD, Wang et al. 2024); with --detector reversal, the suspect "
        "classes an untargeted search proposes are flagged if their reverse-engineered trigger is anomalously "
        "small (Neural Cleanse, Wang et al. 2019). A margin test's verdict needs no trigger reversal, so none runs "
        "unless asked for: with clean data and --plots (or --reverse-triggers) the smallest trigger (mask + pattern) "
        "of each flagged class is reverse-engineered, beside ordinary classes drawn at random, to show what it "
        "looks like (minutes); with --no-clean-data only the input-space search runs. A net with several targets "
        "gets every one reported.",
    )
    parser.add_argument("model", metavar="MODEL", help="the net: full Keras .h5 or .keras model, or challenge "
                        "weights-only .h5")
    cli.add_clean_data_option(parser, "data/clean_validation_data.h5",
                              "clean data for the feature range and to reverse triggers on (HDF5 with data, label)")
    parser.add_argument("--no-clean-data", action="store_true",
                        help="no clean data at all: only the input-space margin test runs (--detector input or "
                        "both), and --plots draws the image that reached each class's margin")
    cli.add_input_scale_option(parser)
    cli.quiet_tensorflow()  # the detection settings live beside the code that loads TensorFlow
    from fineprune.inspection import DetectionSettings

    group = parser.add_argument_group("detection settings")
    cli.add_settings_options(group, DetectionSettings)
    group.add_argument("--class", dest="classes", type=int, action="append", default=[], metavar="N",
                       help="also examine this class, e.g. one you suspect (repeatable): its margins join the "
                       "table; its trigger is reversed, and drawn by --plots, where triggers are reversed")
    group.add_argument("--reverse-triggers", action="store_true",
                       help="with a margin detector (margin, input, both), also reverse Neural Cleanse's trigger of "
                       "each flagged and --class class beside --ordinary-classes drawn at random, and report each "
                       "one's mask size, anomaly index and hit rate (minutes; the verdict stays the margin tests'). "
                       "--plots does this anyway, to draw them; --detector reversal always does. Needs clean data")
    cli.add_seed_option(parser)
    cli.add_plots_option(parser, "each suspected trigger (mask, stamp, stamped faces), the distribution of mask "
                         "sizes and (margin detector) of maximum margins to DIR (with clean data the triggers are "
                         "reversed for it: minutes)")
    parser.add_argument("--json", metavar="PATH", help="also write every number as JSON")
    cli.add_quiet_option(parser)
    cli.add_version_option(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return cli.run("inspect_net.py", lambda: inspect_net(args))


def inspect_net(args: argparse.Namespace) -> int:
    from fineprune.errors import InputError
    from fineprune.inspection import DetectionSettings, check_clean_data_needed

    settings = DetectionSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DetectionSettings)
                                    if hasattr(args, f.name)})
    model_path, clean_path = Path(args.model), None if args.no_clean_data else Path(args.clean_data)
    check_clean_data_needed(settings, not args.no_clean_data, args.reverse_triggers)
    inputs = [model_path, *([clean_path] if clean_path else [])]
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
    clean = (None if clean_path is None
             else load_dataset(clean_path, image_shape=net.image_shape, num_classes=net.num_classes))
    # A margin test's verdict needs no reversal: it runs for the figures, or where asked for.
    reverse = args.reverse_triggers or (plots is not None and clean is not None)
    proposer = (f"{settings.suspects} proposed" if settings.detector == "reversal"
                else "the classes the maximum-margin tests flag")
    asked = f", and class {', '.join(map(str, args.classes))} as asked" if args.classes else ""
    start = f"{model_path} ({net.num_classes} classes, input scale {net.input_scale}); "
    if clean is None:
        start += f"no clean data: the input-space margin test only{asked}"
    elif settings.detector == "reversal" or reverse:
        start += (f"clean data {clean_path} ({len(clean)} images); reversing {proposer} and "
                  f"{settings.ordinary_classes} ordinary classes{asked}")
    else:
        examined = f" (and examine class {', '.join(map(str, args.classes))} as asked)" if args.classes else ""
        start += (f"clean data {clean_path} ({len(clean)} images); the maximum-margin tests decide{examined}; trigger "
                  f"reversal skipped (--plots DIR draws each flagged class's reversed trigger beside "
                  f"{settings.ordinary_classes} ordinary classes; --reverse-triggers reverses them without figures)")
    progress = cli.progress_lines("inspect_net.py", args.quiet)
    progress(start)
    found = inspection.inspect(net, clean, settings, progress=progress, asked=args.classes, reverse_triggers=reverse)
    print(report.inspection_report(found))
    if args.json:
        report.write_json(args.json, found.to_json())
    if plots is not None:
        faces = None if clean is None else clean.x[:: max(1, len(clean) // PLOT_FACES)][:PLOT_FACES]
        written = draw(found, faces, plots, model_path.stem)
        print("\nWrote " + ", ".join(str(p) for p in written))
    return 0


def draw(found, faces, folder: Path, stem: str) -> list[Path]:
    """The figures of --plots: each suspect's trigger (or the most anomalous class's, marked as not
    flagged, when nothing is), each asked-for class's, the mask sizes with the threshold, and each
    margin test's margins; without clean data, the images that reached the examined classes' margins."""
    from fineprune import plots
    from fineprune.inspection import threshold_mask_share_pct

    written = []
    for space, scan in (("the clean feature range", found.margins), ("the input space", found.input_margins)):
        if scan is not None:
            path = folder / f"margins_{stem}{'_input' if scan is found.input_margins else ''}.png"
            plots.draw_margins(scan.margins, [f.target for f in scan.flagged], path,
                               f"{stem}: maximum margins of the {len(scan.margins)} classes over {space}", space)
            written.append(path)
    if found.margin_images and not found.triggers:
        path = folder / f"margin_images_{stem}.png"
        shown = [*found.suspects, *(e for e in found.examined if not e.flagged)]
        plots.draw_gallery([found.margin_images[e.target] for e in shown],
                           [f"class {e.target}: {'flagged' if e.flagged else 'not flagged'}\n"
                            f"margin {e.input_margin:.1f}, index {e.input_margin_index:.1f}" for e in shown],
                           path, columns=(columns := max(1, min(len(shown), 5))),
                           title="\n".join(textwrap.wrap(f"{stem}: the images that reached each class's "
                                                          "input-space margin", 24 * columns)))
        written.append(path)
    if not found.triggers:
        return written
    decided_by_margin = found.decided_by_margins
    shown = found.suspects or sorted(found.examined, key=lambda e: -e.anomaly_index)[:1]
    statistic = "margin index" if decided_by_margin else "anomaly index"

    def index_of(e) -> float:
        return e.largest_margin_index if decided_by_margin else e.anomaly_index

    shown += [e for e in found.examined if e.asked and e not in shown]
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
                          "anomaly index threshold (not deciding)" if decided_by_margin else "flagged below this size")
    written.append(path)
    return written


if __name__ == "__main__":
    sys.exit(main())
