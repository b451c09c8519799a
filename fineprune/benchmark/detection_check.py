"""The real challenge BadNets as the judge of detection, and the clean nets for its false alarms.

`inspect_net.py`'s two margin tests, without the trigger reversals that only draw the pictures:
- over the input space (MM-BD's own form, no clean data);
- over the clean feature range, from 5 clean faces and their fixed augmentations (the protocol of
  `location.box_faces`, since the real nets come with only 5 clean faces);
and a class counts as flagged by `both` when either test flags it. Each net's margins are kept in
a folder, so an interrupted run resumes.

Measured on the five real BadNets (their 7 targets: sunglasses 0, anonymous_1 0, anonymous_2 4,
multi-trigger 1, 5 and 8, lab3 0), on every benchmark BadNet, and on the clean benchmark nets,
where every flag is a false alarm.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from fineprune.benchmark.location import box_faces
from fineprune.detection.input_margins import InputMarginSettings, input_margins
from fineprune.detection.margins import MarginTestSettings, flag_classes, gamma_test, scan_margins
from fineprune.models import LoadedModel
from fineprune.report import markdown_table

TESTS = ("input", "features")
# The real BadNets in weights/ (their file stems), their targets and their input scaling. The
# multi-trigger's eyebrows target, 5, has no real sample; the published mapping gives it.
REAL_TARGETS: dict[str, tuple[tuple[int, ...], str]] = {
    "sunglasses": ((0,), "unit"),
    "multi_trigger_multi_target": ((1, 5, 8), "unit"),
    "anonymous_1": ((0,), "unit"),
    "anonymous_2": ((4,), "unit"),
    "lab3_sunglasses": ((0,), "raw"),
}


@dataclass(frozen=True)
class NetToJudge:
    """A net, its true targets (none for a clean net), and the 5 clean faces of its own data."""

    name: str
    kind: str  # "real", "synthetic" or "clean"
    net: LoadedModel
    targets: tuple[int, ...]
    clean_faces: np.ndarray


@dataclass(frozen=True)
class TargetFound:
    """Where one true target stands among all classes by one test's margins."""

    target: int
    rank: int  # 1: the largest margin
    p_value: float  # the gamma test at its rank, against the margins below it
    flagged: bool


@dataclass(frozen=True)
class JudgedNet:
    """What each test flagged on one net, and where its true targets stand."""

    name: str
    kind: str
    targets: tuple[int, ...]
    flagged: dict[str, list[int]]  # per test, and "both"
    found: dict[str, list[TargetFound]]  # per test

    def others_flagged(self, test: str) -> list[int]:
        return [c for c in self.flagged[test] if c not in self.targets]

    def targets_flagged(self, test: str) -> list[int]:
        return [c for c in self.targets if c in self.flagged[test]]


def net_margins(net: NetToJudge, settings: MarginTestSettings, input_settings: InputMarginSettings,
                folder: Path | None) -> dict[str, np.ndarray]:
    """Both tests' margins for every class of `net`, read from `folder` when a run already kept them."""
    key = (f"in{input_settings.input_steps}x{input_settings.input_starts}r{input_settings.input_rate:g}"
           f"_fe{settings.margin_steps}")  # the settings the margins depend on
    kept = None if folder is None else folder / f"{net.kind}_{net.name}_{key}.npz"
    if kept is not None and kept.exists():
        with np.load(kept) as stored:
            return {test: stored[test] for test in TESTS}
    margins = {"input": input_margins(net.net, input_settings)[0],
               "features": scan_margins(net.net, box_faces(net.clean_faces), settings).margins}
    if kept is not None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        np.savez(kept, **margins)
    return margins


def judge(net: NetToJudge, margins: dict[str, np.ndarray], settings: MarginTestSettings) -> JudgedNet:
    """Each test's verdict on `net` from its margins, and where its true targets stand."""
    flagged = {test: [f.target for f in flag_classes(margins[test], settings.significance, settings.max_targets)]
               for test in TESTS}
    flagged["both"] = list(dict.fromkeys([*flagged["input"], *flagged["features"]]))
    found = {}
    for test in TESTS:
        order = list(np.argsort(-margins[test], kind="stable"))
        ranks = {t: order.index(t) for t in net.targets}  # 0: the largest
        found[test] = [TargetFound(t, ranks[t] + 1, gamma_test(margins[test], ranks[t]).p_value, t in flagged[test])
                       for t in net.targets]
    return JudgedNet(net.name, net.kind, net.targets, flagged, found)


def check_detection(nets: Sequence[NetToJudge], settings: MarginTestSettings = MarginTestSettings(),
                    input_settings: InputMarginSettings = InputMarginSettings(), folder: Path | None = None,
                    say: Callable[[str], None] = lambda message: None) -> list[JudgedNet]:
    """Both margin tests on every net (margins kept in `folder`, so a run resumes)."""
    judged = []
    for number, net in enumerate(nets):
        say(f"detection: {net.kind} {net.name} ({number + 1}/{len(nets)})")
        judged.append(judge(net, net_margins(net, settings, input_settings, folder), settings))
    return judged


def detection_table(judged: Sequence[JudgedNet]) -> str:
    """One row per net: each true target's rank and p by each test, and the other classes flagged."""
    def targets(row: JudgedNet, test: str) -> str:
        return "; ".join(f"{'**' if f.flagged else ''}{f.target}: rank {f.rank}, p {f.p_value:.2g}"
                         f"{'**' if f.flagged else ''}" for f in row.found[test]) or "-"

    def others(row: JudgedNet, test: str) -> str:
        return ", ".join(map(str, row.others_flagged(test))) or "none"

    rows = [[f"{row.kind} {row.name}", targets(row, "input"), others(row, "input"), targets(row, "features"),
             others(row, "features"), f"{len(row.targets_flagged('both'))} of {len(row.targets)}",
             others(row, "both")] for row in judged]
    return markdown_table(["net", "input space: target rank, p", "input space: others flagged",
                           "feature range (5 faces): target rank, p", "feature range: others flagged",
                           "both: targets flagged", "both: others flagged"], rows)


def detection_summary(judged: Sequence[JudgedNet]) -> str:
    """Per test: true targets flagged on the real and the synthetic BadNets, other classes flagged
    on them, and the clean nets with a false alarm."""
    lines = []
    for test in (*TESTS, "both"):
        parts = []
        for kind in ("real", "synthetic"):
            rows = [r for r in judged if r.kind == kind]
            if rows:
                hit = sum(len(r.targets_flagged(test)) for r in rows)
                parts.append(f"{kind} targets flagged {hit} of {sum(len(r.targets) for r in rows)}, other classes "
                             f"flagged on those nets {sum(len(r.others_flagged(test)) for r in rows)}")
        clean = [r for r in judged if r.kind == "clean"]
        if clean:
            alarms = sum(bool(r.flagged[test]) for r in clean)
            parts.append(f"clean nets with a false alarm {alarms} of {len(clean)}")
        lines.append(f"- {test}: " + "; ".join(parts))
    return "\n".join(lines)


def to_json(judged: Sequence[JudgedNet]) -> list[dict[str, object]]:
    return [asdict(row) for row in judged]
