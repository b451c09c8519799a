"""The real challenge BadNets as the judge of detection, and the clean nets for its false alarms.

`inspect_net.py`'s two margin tests, without the trigger reversals that only draw the pictures:
- over the input space (MM-BD's own form, no clean data);
- over the clean feature range, from 5 clean faces and their fixed augmentations (the protocol of
  `location.box_faces`, since the real nets come with only 5 clean faces);
and a class counts as flagged by `both` when either test flags it. Each net's margins are a job
of `fineprune.jobs` (a local Dask cluster, or a running one), kept in a folder as it finishes, so
an interrupted run resumes.

Measured on the five real BadNets (their 7 targets: sunglasses 0, anonymous_1 0, anonymous_2 4,
multi-trigger 1, 5 and 8, lab3 0), on every benchmark BadNet, and on the clean benchmark nets,
where every flag is a false alarm.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from fineprune.benchmark.code_version import code_version
from fineprune.benchmark.location import box_faces
from fineprune.detection.input_margins import InputMarginSettings, input_margins
from fineprune.detection.margins import MarginTestSettings, flag_classes, gamma_test, scan_margins
from fineprune.files import file_digest
from fineprune.jobs import Job, run_jobs
from fineprune.models import load_model
from fineprune.report import markdown_table
from fineprune.progress import Progress, silent

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
    """A net's file, its true targets (none for a clean net), and the 5 clean faces of its own data:
    what a worker needs to measure its margins."""

    name: str
    kind: str  # "real", "synthetic" or "clean"
    model: Path
    input_scale: str | None  # None: what the file records
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


def net_margins(net: NetToJudge, settings: MarginTestSettings,
                input_settings: InputMarginSettings) -> dict[str, list[float]]:
    """Both tests' margins for every class of `net` (a job: it loads the net itself)."""
    loaded = load_model(net.model, net.input_scale)
    return {"input": input_margins(loaded, input_settings)[0].tolist(),
            "features": scan_margins(loaded, box_faces(net.clean_faces), settings).margins.tolist()}


def margins_job(net: NetToJudge, settings: MarginTestSettings, input_settings: InputMarginSettings) -> Job:
    """`net_margins` as a job, redone when the net's file, its faces, the settings or the code
    that measures them change."""
    return Job(f"{net.kind}_{net.name}", net_margins, (net, settings, input_settings), {
        "model": file_digest(net.model), "input_scale": net.input_scale,
        "faces": hashlib.sha256(np.ascontiguousarray(net.clean_faces, np.float32).tobytes()).hexdigest(),
        "settings": asdict(settings), "input_settings": asdict(input_settings), "code": code_version(__name__)})


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


def check_detection(nets: Sequence[NetToJudge], folder: Path, settings: MarginTestSettings = MarginTestSettings(),
                    input_settings: InputMarginSettings = InputMarginSettings(),
                    say: Progress = silent, workers: int = 1,
                    scheduler: str | None = None) -> list[JudgedNet]:
    """Both margin tests on every net, a job per net (kept in `folder`, so a run resumes) on
    `workers` local processes or the Dask cluster at `scheduler`."""
    jobs = [margins_job(net, settings, input_settings) for net in nets]
    done = run_jobs(jobs, folder, workers, progress=say, scheduler=scheduler)
    return [judge(net, {test: np.array(values) for test, values in done[job.key].items()}, settings)
            for net, job in zip(nets, jobs)]


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
