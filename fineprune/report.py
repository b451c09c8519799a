"""Results people can paste into a report: Markdown tables, JSON and CSV files."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from fineprune.evaluation import Evaluation, poisoned_name
from fineprune.files import replacing
from fineprune.metrics import Spread

if TYPE_CHECKING:  # only for annotations: importing the defenses would load TensorFlow
    from fineprune.defenses import RepairResult, RepairSettings
    from fineprune.inspection import Inspection
    from fineprune.detection.reversal import ExaminedClass


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; numbers (and spreads over seeds) right-aligned."""
    def cell(value: object) -> str:
        if isinstance(value, Spread):
            return spread_cell(value)
        return f"{value:.2f}" if isinstance(value, (float, np.floating)) else str(value)

    text_rows = [[cell(value) for value in row] for row in rows]
    numeric = [bool(rows) and all(isinstance(row[i], (int, float, np.number, Spread)) for row in rows)
               for i in range(len(header))]
    widths = [max([len(h)] + [len(r[i]) for r in text_rows]) for i, h in enumerate(header)]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)
        ) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2)) for w, num in zip(widths, numeric)) + "|"
    return "\n".join([line(header), rule] + [line(r) for r in text_rows])


def spread_cell(spread: Spread, digits: int = 2) -> str:
    """A number over seeds as a table prints it: `median (low-high)`, or the one value when every
    seed gave the same (to the printed digits); "-" for a number not measured (NaN)."""
    if np.isnan(spread.median):
        return "-"
    median, low, high = (f"{value:.{digits}f}" for value in (spread.median, spread.low, spread.high))
    return median if low == high else f"{median} ({low}-{high})"


def over_seeds(seeds: Sequence[int], whose: str = "") -> str:
    """The sentence under a table of spreads: which seeds its numbers are taken over."""
    return (f"Each number is the median (and range) over {whose}seeds {', '.join(map(str, seeds))}; one value "
            "where every seed gave the same.")


def parse_spread_cell(text: str) -> Spread | None:
    """The inverse of `spread_cell` (None for a cell that holds no number, such as "-")."""
    text = text.strip()
    median, _, rest = text.partition(" (")
    try:
        if not rest:
            value = float(median)
            return Spread(value, value, value, 1)
        low, high = rest.removesuffix(")").split("-")
        return Spread(float(median), float(low), float(high), 0)
    except ValueError:
        return None


RESULT_COLUMNS = [
    "BadNet/trigger", "Accuracy(original)", "Accuracy(repaired)", "Success Rate(original)",
    "Success Rate(repaired)", "Accuracy(repaired net)", "Success Rate(repaired net)", "Flagged as N",
]


def _result_row(name: str, clean: dict[str, Any], poisoned: dict[str, Any] | None) -> list[object]:
    """One row of the original project's table from eval.py's JSON ("-" where nothing was poisoned)."""
    asr = (lambda key: poisoned[key]) if poisoned else (lambda key: "-")  # noqa: E731
    return [name, clean["accuracy_original_pct"], clean["accuracy_detector_pct"], asr("asr_original_pct"),
            asr("asr_detector_pct"), clean["accuracy_repaired_net_pct"], asr("asr_repaired_net_pct"),
            asr("detected_pct")]


def results_table(evaluation: Evaluation) -> str:
    """The original project's table, "repaired" meaning G, with the repaired net alone beside it.

    Every row repeats the clean accuracies, as the original table did, so each row reads alone.
    """
    result = evaluation.to_json()
    assert result["clean"] is not None, "results_table needs a clean-data evaluation"
    rows = [_result_row(p["name"], result["clean"], p) for p in result["poisoned"]]
    return markdown_table(RESULT_COLUMNS, rows or [_result_row("(clean data only)", result["clean"], None)])


def evaluation_report(evaluation: Evaluation) -> str:
    """What eval.py prints: the models, then the table or one line per image."""
    lines = [
        f"BadNet:   {evaluation.model}",
        f"Repaired: {evaluation.repaired_model}",
        f"Classes:  {evaluation.num_classes} (G outputs {evaluation.num_classes} for \"backdoor detected\"); "
        f"input scale {evaluation.input_scale}",
    ]
    if evaluation.clean is not None:
        clean = evaluation.clean
        lines += [
            f"Clean:    {clean.file} ({clean.images} images)",
            "All values in percent; \"repaired\" is the detector G.",
            "",
            results_table(evaluation),
        ]
    if evaluation.images:
        lines += ["", markdown_table(
            ["image", "G", "original", "repaired"],
            [[row.file, row.detector, row.original, row.repaired] for row in evaluation.images],
        )]
    return "\n".join(lines)


def _is_records(value: object) -> bool:
    """A non-empty list of dicts with the same keys: shown as a table."""
    return (isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)
            and all(item.keys() == value[0].keys() for item in value))


def tradeoff_table(curves: Mapping[str, Mapping[str, Sequence[Any]]]) -> str:
    """Per net and method, each strength measured as "setting: lost / ASR", the rule's pick starred."""
    rows = []
    for net, methods in curves.items():
        for label, points in methods.items():
            cells = [f"{'*' if p.chosen else ''}{'defaults' if p.value is None else f'{p.value:g}'}: "
                     f"{p.g_accuracy_lost_points:.2f} / {p.g_asr_pct:.1f}" for p in points]
            rows.append([net, label, points[0].parameter.replace("_", " "), "; ".join(cells)])
    return markdown_table(["net", "method", "strength", "setting: G accuracy lost (points) / G ASR (%)"], rows)


def strength_line(strength: dict[str, Any]) -> str:
    """One line on how strongly a method repaired: the setting its strength rule kept, the rule,
    and what each setting tried cost in held-out accuracy (`defenses.strength`)."""
    tried = ", ".join(f"{value:g}: {accuracy:.2f}%" for value, accuracy in strength["tried"])
    verdict = "" if strength["within_budget"] else " (no setting tried was within the budget; the weakest was kept)"
    rule = "given" if strength["rule"] == "given" else f"by the rule: {strength['rule']}"
    return (f"Strength: {strength['parameter'].replace('_', ' ')} {strength['chosen']:g}, {rule}{verdict}; held-out "
            f"accuracy {strength['accuracy_before_pct']:.2f}% before, at each setting tried: {tried}")


def prune_summary(model: Path, output: Path, settings: RepairSettings, result: RepairResult) -> str:
    """What prune.py prints once the repaired model is saved."""
    lines = [f"Repaired model: {output} (from {model}, method {settings.method}, seed {settings.seed})"]
    if result.sparsity:
        lines += [
            f"Sparsity schedule: {settings.initial_sparsity:g} -> {settings.final_sparsity:g} over "
            f"{result.fine_tuning_steps} steps ({settings.epochs} epochs, {result.train_images} images)",
            "",
            markdown_table(["pruned layer", "zero weights (%)"],
                           [[name, 100.0 * value] for name, value in result.sparsity.items()]),
            "",
        ]
    for layer, channels in result.pruned_channels.items():
        lines.append(f"Pruned {len(channels)} channels of {layer} (least active first): {channels}")
    if result.fine_tuning_steps and not result.sparsity:
        epochs = getattr(settings, "epochs", None)  # methods that fit only the output layer have none
        lines.append(f"Fine-tuned for {result.fine_tuning_steps} steps ({epochs} epochs, {result.train_images} images)"
                     if epochs is not None else
                     f"Fitted the output layer for {result.fine_tuning_steps} full-batch steps on the features of "
                     f"{result.train_images} images")
    strength = result.details.get("strength")
    if strength:
        lines.append(strength_line(strength))
    plain = {key: value for key, value in result.details.items() if not _is_records(value) and key != "strength"}
    if plain:
        lines.append("Found: " + ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in plain.items()))
    for key, records in result.details.items():
        if _is_records(records):
            lines += ["", f"{key.replace('_', ' ').capitalize()}:", "",
                      markdown_table([column.replace("_", " ") for column in records[0]],
                                     [list(record.values()) for record in records]), ""]
    lines += [
        f"Held-out clean accuracy ({result.heldout_images} images): "
        f"{result.heldout_accuracy_before_pct:.2f}% before, {result.heldout_accuracy_after_pct:.2f}% after",
        f"Time: {result.seconds:.1f} s",
    ]
    return "\n".join(lines)


def examined_because(examined: ExaminedClass, detector: str = "reversal") -> str:
    """Why a class was examined, in words."""
    if examined.proposed:
        return "untargeted search" if detector == "reversal" else "maximum-margin test"
    return "asked for" if examined.asked else "at random"


def inspection_report(found: Inspection) -> str:
    """inspect_net.py's verdict, then every class examined (most anomalous first), then how the
    verdict was reached."""
    settings, scans = found.settings, {"clean feature range": found.margins, "input space": found.input_margins}
    scans = {space: scan for space, scan in scans.items() if scan is not None}
    reversed_any = bool(found.triggers)
    if found.backdoored:
        verdict = (f"Verdict: BACKDOORED. Suspected target class(es): "
                   + ", ".join(str(e.target) for e in found.suspects))
    elif scans:
        verdict = "Verdict: no backdoor found (no class's maximum margin is improbably large)"
    else:
        verdict = "Verdict: no backdoor found (no class's reversed trigger is anomalously small)"
    columns = ["class", "verdict", "examined because"]
    if reversed_any:
        columns += ["mask (% of image)", "anomaly index", "hit rate (%)", "search reached 99%"]
    if found.margins is not None:
        columns += ["max margin (features)", "margin index"]
    if found.input_margins is not None:
        columns += ["max margin (input)", "input margin index"]

    def row(e: ExaminedClass) -> list[object]:
        cells: list[object] = [e.target, "flagged" if e.flagged else "", examined_because(e, settings.detector)]
        if reversed_any:
            cells += [round(e.mask_share_pct, 2), round(e.anomaly_index, 2), round(e.hit_rate_pct, 2),
                      "yes" if e.reached_threshold else "no"]
        if found.margins is not None:
            cells += [round(e.margin, 1), round(e.margin_index, 2)]
        if found.input_margins is not None:
            cells += [round(e.input_margin, 1), round(e.input_margin_index, 2)]
        return cells

    flagged = found.suspects
    rest = sorted((e for e in found.examined if not e.flagged),
                  key=(lambda e: -e.largest_margin_index) if scans else (lambda e: -e.anomaly_index))
    table = (markdown_table(columns, [row(e) for e in [*flagged, *rest]]) if found.examined
             else "No class flagged or asked for, so none to list (--class N examines one).")
    notes = []
    for space, scan in scans.items():
        tested = ", ".join(f"{f.target} (p {f.p_value:.2g})" for f in scan.flagged) or "none"
        passed = scan.largest_unflagged()
        if passed is not None:
            tested += f"; the largest margin not flagged: class {passed.target} (p {passed.p_value:.2g})"
        notes.append(f"Maximum-margin test over the {space}, all {len(scan.margins)} classes: a class is flagged if "
                     f"its maximum margin is this improbable under the gamma fitted to the margins below it, at "
                     f"p < {settings.significance:g}; flagged: {tested}; median margin {scan.median:.1f}.")
    if scans:
        notes.append("Margin index: MAD-scaled deviations above the median margin." + (
            " A class is flagged if either test flags it." if len(scans) == 2 else ""))
        if found.input_margins is not None and found.margins is None and settings.detector == "both":
            notes.append("No clean data: the test over the clean feature range was skipped.")
    if reversed_any:
        anomaly = (f"Anomaly index: MAD-scaled deviations of a class's mask size below the median of the "
                   f"{len(found.triggers)} classes reversed")
        anomaly += (f" (the flagged classes beside {settings.ordinary_classes} drawn at random; not deciding)."
                    if scans else f"; flagged above {settings.anomaly_threshold:g}.")
        notes.append(f"{anomaly} Hit rate: share of the {found.heldout_images} held-out clean faces of other classes "
                     f"the reversed trigger sends to the class.")
    elif found.reversal_skipped:
        notes.append(f"Trigger reversal skipped: the maximum-margin tests decide the verdict. --plots DIR draws each "
                     f"flagged class's reversed trigger (and each --class's) beside {settings.ordinary_classes} "
                     f"ordinary classes drawn at random; --reverse-triggers reports their mask size, anomaly index "
                     f"and hit rate without figures (Neural Cleanse, minutes).")
    elif scans:
        notes.append("No triggers reversed (no clean data); with --plots each class's picture is the image that "
                     "reached its input-space margin.")
    return f"{verdict}\n\n{table}\n\n" + "\n".join(notes) + f"\nTime: {found.seconds:.1f} s"


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` via a temporary file and a rename."""
    with replacing(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, content: Any) -> None:
    """Write `content` as indented JSON via a temporary file and a rename."""
    write_text(path, json.dumps(content, indent=2) + "\n")


def write_csv(path: str | os.PathLike, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Write `rows` as CSV under the header `columns` (None: an empty field), via a temporary file
    and a rename."""
    with replacing(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)


# The real lab3 sunglasses BadNet, conv_3 channels pruned by mean activation on clean validation
# data (published lab results): allowed accuracy drop -> (share of channels pruned, ASR), percent.
LAB3_SWEEP = {2.0: (75.0, 100.0), 4.0: (80.0, 99.99), 10.0: (86.7, 77.0), 30.0: (90.0, 7.0)}


def sweep_comparison(points: dict[float, Any], trigger: str) -> str:
    """The synthetic sunglasses BadNet's pruning curve beside the real lab3 BadNet's, at the same
    allowed accuracy drops. `points` maps each drop to a `pruning_curve.SweepPoint`."""
    rows = []
    for drop, point in points.items():
        real_pruned, real_asr = LAB3_SWEEP.get(drop, (None, None))
        rows.append([f"{drop:g}%", "-" if real_pruned is None else real_pruned, "-" if real_asr is None else real_asr,
                     100.0 * point.fraction_pruned, point.attack_success_pct[trigger], point.clean_accuracy_pct])
    return markdown_table(
        ["accuracy drop", "real lab3: pruned (%)", "real lab3: ASR (%)", "synthetic: pruned (%)",
         "synthetic: ASR (%)", "synthetic: accuracy (%)"], rows)


def demo_table(evaluations: dict[str, Sequence[dict[str, Any]]]) -> str:
    """The original project's table over all BadNets, "repaired" meaning G: one row per BadNet and
    trigger, each number its median and range over the seeds. `evaluations` maps each BadNet's
    name to eval.py's JSON for it, one per seed."""
    spreads = demo_spreads(evaluations)
    labels = list(dict.fromkeys(label for label, _ in spreads))
    return markdown_table(RESULT_COLUMNS, [[label, *(spreads.get((label, column), "-") for column in RESULT_COLUMNS[1:])]
                                           for label in labels])


def demo_spreads(evaluations: dict[str, Sequence[dict[str, Any]]]) -> dict[tuple[str, str], Spread]:
    """Every number of the demo table by (row label, column), as a spread over the seeds."""
    spreads: dict[tuple[str, str], Spread] = {}
    for badnet, runs in evaluations.items():
        for index, poisoned in enumerate(runs[0]["poisoned"]):
            trigger = poisoned["name"].split("/")[-1]
            label = badnet if trigger == badnet else f"{badnet}/{trigger}"
            per_seed = [_result_row(label, run["clean"], run["poisoned"][index]) for run in runs]
            for column, values in zip(RESULT_COLUMNS[1:], zip(*(row[1:] for row in per_seed))):
                spreads[(label, column)] = Spread.of(values)
    return spreads


DEMO_TABLE_MARK = "<!-- make demo checks its run against the table below -->"


def read_demo_table(text: str) -> dict[tuple[str, str], Spread]:
    """The demo table a README reports, by (row label, column): the first Markdown table after
    DEMO_TABLE_MARK (empty if there is none)."""
    _, mark, rest = text.partition(DEMO_TABLE_MARK)
    if not mark:
        return {}
    lines = [line.strip() for line in rest.strip().splitlines()]
    table = []
    for line in lines:
        if not line.startswith("|"):
            break
        table.append([cell.strip() for cell in line.strip("|").split("|")])
    if len(table) < 3:
        return {}
    header, *rows = table[0], *table[2:]
    found = {}
    for row in rows:
        for column, cell in zip(header[1:], row[1:]):
            spread = parse_spread_cell(cell)
            if spread is not None:
                found[(row[0], column)] = spread
    return found


def demo_check(run: dict[tuple[str, str], Spread], reported: dict[tuple[str, str], Spread]) -> list[str]:
    """For every number of a demo run: whether its median lies inside the range the README reports
    (to the hundredth), and by how much it misses where it does not. The last line sums up."""
    lines, inside, checked = [], 0, 0
    for (label, column), spread in run.items():
        expected = reported.get((label, column))
        if expected is None:
            lines.append(f"- {label}, {column}: {spread_cell(spread)}; the README reports no value")
            continue
        checked += 1
        if expected.contains(spread.median):
            inside += 1
            continue
        miss = spread.median - expected.high if spread.median > expected.high else expected.low - spread.median
        lines.append(f"- {label}, {column}: {spread.median:.2f} is outside the README's {spread_cell(expected)} "
                     f"by {miss:.2f} points")
    missing = [key for key in reported if key not in run]
    lines += [f"- {label}, {column}: in the README, not measured by this run" for label, column in missing]
    lines.append(f"{inside} of {checked} numbers inside the README's ranges" + ("." if inside == checked else
                 "; a seed repeats a run exactly only on the same CPU and TensorFlow build (docs/commands.md, \"Seeds\")."))
    return lines


COMPARISON_COLUMNS = [
    "BadNet", "trigger", "method", "removed", "repair (s)", "net: accuracy", "net: ASR",
    "G: accuracy", "G: ASR", "G: flagged", "seeds meeting the bar",
]


def comparison_table(rows: Sequence[Any]) -> str:
    """The comparison of repair methods (`comparison.SpreadRow`s) as one Markdown table, each number
    its median and range over the seeds; the method "none" rows are the BadNet itself."""
    def bar(row: Any) -> str:
        return "-" if row.seeds_meeting_bar is None else f"{row.seeds_meeting_bar}/{len(row.seeds)}"

    def seconds(row: Any) -> str:
        return "-" if row.repair_seconds is None else spread_cell(row.repair_seconds, digits=0)

    return markdown_table(COMPARISON_COLUMNS, [
        [row.badnet, row.trigger, row.method, row.removed, seconds(row),
         row.accuracy_repaired_net_pct, row.asr_repaired_net_pct, row.accuracy_detector_pct,
         row.asr_detector_pct, row.flagged_pct, bar(row)]
        for row in rows
    ])


def best_method_lines(best: dict[str, Any]) -> str:
    """One line per BadNet naming its best method (`comparison.best_methods`) and its worst trigger,
    with medians (and ranges) over the seeds."""
    def meets(row: Any) -> str:
        if not row.seeds_meeting_bar:
            return ""
        return f", meets the bar on {row.seeds_meeting_bar} of {len(row.seeds)} seeds"

    return "\n".join(
        f"- {badnet}: {row.method} (worst trigger {row.trigger}: G's ASR {spread_cell(row.asr_detector_pct)}%, "
        f"G's clean accuracy {spread_cell(row.accuracy_detector_pct)}%, "
        f"{spread_cell(row.repair_seconds, digits=0)} s{meets(row)})"
        for badnet, row in best.items())


VERDICT_COLUMNS = [
    "method", "runs meeting the bar", "worst G: ASR (BadNet/trigger)", "worst G: accuracy lost (points)",
    "clean nets: G's largest move (points)", "repair (s)",
]


def verdict_table(verdicts: Sequence[Any]) -> str:
    """Every method against the bar (`comparison.MethodVerdict`s) as one Markdown table; "-" where
    a method repaired no net of that kind."""
    def worst_asr(verdict: Any) -> str:
        row = verdict.worst_asr
        return "-" if row is None else f"{spread_cell(row.asr_detector_pct)} ({row.badnet}/{row.trigger})"

    def worst_loss(verdict: Any) -> str:
        return "-" if verdict.worst_loss is None else f"{spread_cell(verdict.worst_loss[1])} ({verdict.worst_loss[0]})"

    def clean_move(verdict: Any) -> str:
        if verdict.largest_clean_move is None:
            return "-"
        net, points = verdict.largest_clean_move
        return f"{points:.2f} ({net})"

    def seconds(verdict: Any) -> str:
        if verdict.seconds is None:
            return "-"
        quickest, slowest = (f"{value:.0f}" for value in verdict.seconds)
        return quickest if quickest == slowest else f"{quickest}-{slowest}"

    return markdown_table(VERDICT_COLUMNS, [
        [v.method, f"{v.runs_meeting_bar}/{v.runs}", worst_asr(v), worst_loss(v), clean_move(v), seconds(v)]
        for v in verdicts
    ])


def oracle_table(results: Sequence[Any]) -> str:
    """The oracle analysis (`comparison.OracleResult`s): where each trigger's channels sit in
    Fine-Pruning's order, and what pruning them, then fine-tuning, does to accuracy and ASR."""
    return markdown_table(
        ["BadNet", "trigger", "channels the trigger raises most", "their places in the pruning order",
         "pruned: accuracy", "pruned: ASR", "fine-tuned: accuracy", "fine-tuned: ASR"],
        [[r.badnet, r.trigger, " ".join(map(str, r.channels)),
          " ".join(map(str, r.places_in_pruning_order)) + f" (of {r.layer_channels})",
          r.accuracy_pruned_pct, r.asr_pruned_pct, r.accuracy_fine_tuned_pct, r.asr_fine_tuned_pct]
         for r in results],
    )


def fidelity_table(real: dict[str, dict[str, Any]], synthetic: dict[str, dict[str, Any]],
                   ranges: dict[str, tuple[float | None, float | None]], statistics: Sequence[Any]) -> str:
    """Each signature statistic (`fidelity.STATISTICS`) for the real BadNets (min-max) and each synthetic
    BadNet, with the allowed range; a value outside it is marked with "(out)". Percentages get two
    decimals, the other statistics three significant digits."""
    rows = []
    for stat in statistics:
        number = "{:.2f}".format if stat.key.endswith("_pct") else "{:.3g}".format
        low, high = ranges[stat.key]

        def span(low: float | None, high: float | None) -> str:
            if high is None:
                return f">= {number(low)}" if low is not None else "any"
            return f"<= {number(high)}" if low is None else f"{number(low)} .. {number(high)}"

        def cell(value: Any) -> str:
            if value is None:
                return "-"
            if isinstance(value, dict):
                return ", ".join(cell(v) for v in value.values()) or "-"
            out = (low is not None and value < low) or (high is not None and value > high)
            return number(value) + (" (out)" if out else "")

        values = [v for sig in real.values() for v in
                  (sig[stat.key].values() if isinstance(sig[stat.key], dict) else [sig[stat.key]])]
        rows.append([stat.label, span(min(values), max(values)), span(low, high),
                     *(cell(sig[stat.key]) for sig in synthetic.values())])
    return markdown_table(["statistic", "real BadNets", "allowed", *synthetic], rows)


def location_table(real: dict[str, Any], synthetic: Sequence[Any]) -> str:
    """Where each backdoor lives (`benchmark.location`): the real triggers, then each synthetic one
    by the 5-face protocol (with its twin's verdict) and over the whole clean validation file."""

    def cells(found: Any) -> list[object]:
        return [found.target, f"{found.bias_z:.1f}", f"{found.weight_norm_z:.1f}",
                f"{found.margin_rank} ({'yes' if found.flagged else 'no'})", f"{found.energy_outside_box_pct:.0f}%",
                f"{found.to_target_pct:.0f}% -> {found.to_target_capped_pct:.0f}%"]

    rows = [[label, *cells(found), "-"] for label, found in real.items()]
    for row in synthetic:
        name = f"synthetic {row.badnet}, {poisoned_name(row.poisoned_file)}"
        verdict = "no twin" if row.twin is None else ("inside" if not row.problems else "; ".join(row.problems))
        rows.append([name, *cells(row.five_faces), verdict])
        rows.append([f"{name} (whole validation file)", *cells(row.full_validation), "-"])
    return markdown_table(["net, trigger", "target", "bias z", "weight-norm z", "margin rank (flagged?)",
                           "energy outside box", "to target, after capping", "against its real twin"], rows)

