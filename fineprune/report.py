"""Results people can paste into a report: Markdown tables and JSON files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from fineprune.evaluation import Evaluation
from fineprune.files import replacing

if TYPE_CHECKING:  # only for annotations: importing pruning would load TF-MOT
    from fineprune.pruning import MagnitudePruningSettings, RepairResult


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; numbers right-aligned."""
    def cell(value: object) -> str:
        return f"{value:.2f}" if isinstance(value, (float, np.floating)) else str(value)

    text_rows = [[cell(value) for value in row] for row in rows]
    numeric = [bool(rows) and all(isinstance(row[i], (int, float, np.number)) for row in rows) for i in range(len(header))]
    widths = [max([len(h)] + [len(r[i]) for r in text_rows]) for i, h in enumerate(header)]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)
        ) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2)) for w, num in zip(widths, numeric)) + "|"
    return "\n".join([line(header), rule] + [line(r) for r in text_rows])


def results_table(evaluation: Evaluation) -> str:
    """The original project's table, "repaired" meaning G, with the repaired net alone beside it.

    Every row repeats the clean accuracies, as the original table did, so each row reads alone.
    """
    clean = evaluation.clean
    assert clean is not None, "results_table needs a clean-data evaluation"
    header = [
        "BadNet/trigger", "Accuracy(original)", "Accuracy(repaired)", "Success Rate(original)",
        "Success Rate(repaired)", "Accuracy(repaired net)", "Success Rate(repaired net)", "Flagged as N",
    ]
    rows = [
        [row.name, clean.accuracy_original_pct, clean.accuracy_detector_pct, row.asr_original_pct,
         row.asr_detector_pct, clean.accuracy_repaired_net_pct, row.asr_repaired_net_pct, row.detected_pct]
        for row in evaluation.poisoned
    ]
    if not rows:
        rows = [["(clean data only)", clean.accuracy_original_pct, clean.accuracy_detector_pct, "-", "-",
                 clean.accuracy_repaired_net_pct, "-", "-"]]
    return markdown_table(header, rows)


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


def prune_summary(
    model: Path, output: Path, method: str, settings: MagnitudePruningSettings, result: RepairResult
) -> str:
    """What prune.py prints once the repaired model is saved."""
    sparsity = markdown_table(
        ["pruned layer", "zero weights (%)"], [[name, 100.0 * value] for name, value in result.sparsity.items()]
    )
    return "\n".join([
        f"Repaired model: {output} (from {model}, method {method}, seed {settings.seed})",
        f"Sparsity schedule: {settings.initial_sparsity:g} -> {settings.final_sparsity:g} over "
        f"{result.fine_tuning_steps} steps ({settings.epochs} epochs, {result.train_images} images)",
        "",
        sparsity,
        "",
        f"Held-out clean accuracy ({result.heldout_images} images): "
        f"{result.heldout_accuracy_before_pct:.2f}% before, {result.heldout_accuracy_after_pct:.2f}% after",
        f"Time: {result.seconds:.1f} s",
    ])


def write_json(path: str | os.PathLike, content: Any) -> None:
    """Write `content` as indented JSON via a temporary file and a rename."""
    with replacing(path) as tmp:
        tmp.write_text(json.dumps(content, indent=2) + "\n")
