"""Evaluate a repair: clean accuracy and attack success rate of the BadNet vs the repaired detector G.

    python eval.py data/sunglasses_poisoned_data.h5 models/sunglasses_bd_net.h5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fineprune import cli


def build_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="eval.py",
        description="Build the repaired detector G from a BadNet and its repaired net (G outputs the class "
        "both nets agree on, else class N = 'backdoor detected') and report clean accuracy and attack "
        "success rate, original vs repaired. DATA: poisoned .h5 files, folders of them, or face images "
        "(.png/.jpg/.jpeg, 55x47 RGB), which get one line each.",
        usage="%(prog)s [options] DATA [DATA ...] MODEL",
    )
    parser.add_argument("inputs", nargs="+", metavar="DATA... MODEL",
                        help="poisoned .h5 file(s), folder(s) of them, or image(s); then the BadNet model")
    parser.add_argument("--repaired", metavar="FILE", help="repaired model, .h5 or .keras (default: MODEL stem + _rp.h5, "
                        "as prune.py writes it)")
    cli.add_clean_data_option(parser, "data/clean_test_data.h5", "clean test data, evaluated whenever DATA holds .h5 files")
    cli.add_input_scale_option(parser, "both models expect", "what each model file records, else unit")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON (percentages 0..100), with "
                        "how the repaired net was made where its file records it (method, settings, what the repair "
                        "measured, the strength its rule chose)")
    cli.add_plots_option(parser, "a gallery of what G gets wrong (clean faces misclassified or flagged, poisoned "
                         "faces let through) to DIR/mistakes_MODEL.png; needs .h5 DATA")
    cli.add_quiet_option(parser)
    cli.add_version_option(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if len(args.inputs) < 2:
        parser.error("give at least one DATA argument and then MODEL")
    return cli.run("eval.py", lambda: evaluate(args))


def evaluate(args: argparse.Namespace) -> int:
    cli.quiet_tensorflow()
    from fineprune import evaluation, report
    from fineprune.detector import RepairedDetector
    from fineprune.errors import InputError
    from fineprune.models import load_model, repaired_model_path

    *data, model_path = (Path(p) for p in args.inputs)
    h5_files, image_files = evaluation.collect_inputs(data)
    if not model_path.is_file():
        raise InputError(f"{model_path}: no such model file")
    repaired_path = Path(args.repaired) if args.repaired else repaired_model_path(model_path)
    if not repaired_path.exists():
        raise InputError(f"{repaired_path}: no repaired model; run `python prune.py {model_path}` first, or pass --repaired")

    clean = [Path(args.clean_data)] if h5_files else []
    inputs = [model_path, repaired_path, *clean, *image_files, *(f.path for f in h5_files)]
    if args.json:
        cli.refuse_overwriting(Path(args.json), inputs, "--json")
    gallery = None
    if args.plots:
        if not h5_files:
            raise InputError(f"{image_files[0]}: --plots needs .h5 data with labels, not images")
        gallery = cli.plots_folder(args.plots) / f"mistakes_{model_path.stem}.png"
        cli.refuse_overwriting(gallery, inputs, "--plots")

    repaired = load_model(repaired_path, args.input_scale)
    # A BadNet from elsewhere records no scale; the repaired net prune.py made from it does.
    original = load_model(model_path, args.input_scale, fallback_scale=repaired.metadata.get("input_scale"))
    detector = RepairedDetector(original, repaired)
    results = evaluation.evaluate(
        detector,
        h5_files,
        clean_file=Path(args.clean_data) if h5_files else None,
        image_files=image_files,
        progress=cli.progress_lines("eval.py", args.quiet),
        mistakes_per_kind=evaluation.MISTAKES_PER_KIND if gallery else 0,
    )
    print(report.evaluation_report(results))
    if args.json:
        made = {key: repaired.metadata[key] for key in ("method", "settings", "result") if key in repaired.metadata}
        report.write_json(args.json, {**results.to_json(), "repair": made or None})
    if gallery:
        from fineprune.plots import draw_mistakes

        draw_mistakes(results, gallery, f"What G gets wrong: {model_path.name} with {repaired_path.name}")
        print(f"\nWrote {gallery}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
