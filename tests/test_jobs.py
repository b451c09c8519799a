"""Tests for fineprune.jobs: results are kept as they finish, read back on the next run unless
their fingerprint changed, an interrupted run resumes, worker processes give the same results, and
a long run does not stay in one process."""

from __future__ import annotations

import json
import operator
import os
from pathlib import Path

import pytest

from fineprune.jobs import Job, default_workers, run_jobs, stored_result

CALLS: list[str] = []


def record(key: str, value: int) -> dict:
    """A job that notes that it ran."""
    CALLS.append(key)
    return {"value": value}


def interrupt(key: str) -> dict:
    raise KeyboardInterrupt


@pytest.fixture(autouse=True)
def no_calls_yet() -> None:
    CALLS.clear()


def jobs(*values: int, fingerprint: dict | None = None) -> list[Job]:
    return [Job(f"cell/{n}", record, (f"cell/{n}", n), fingerprint or {"n": n}) for n in values]


def test_results_are_kept_and_read_back(tmp_path: Path) -> None:
    progress: list[str] = []
    assert run_jobs(jobs(1, 2), tmp_path, progress=progress.append) == {"cell/1": {"value": 1}, "cell/2": {"value": 2}}
    assert CALLS == ["cell/1", "cell/2"] and progress[0].startswith("1/2 done (cell/1: ")
    assert progress[0].endswith("1 left, about 0 s to go") and progress[1].endswith(", 0 left")
    stored = json.loads((tmp_path / "cell" / "1.json").read_text())
    assert stored["fingerprint"] == {"n": 1} and stored["result"] == {"value": 1} and stored["seconds"] >= 0
    CALLS.clear()
    progress.clear()
    assert run_jobs(jobs(1, 2, 3), tmp_path, progress=progress.append)["cell/3"] == {"value": 3}
    assert CALLS == ["cell/3"] and progress[0] == f"2 of 3 jobs already done in {tmp_path}/; 1 to run"


def test_a_changed_fingerprint_or_fresh_redoes_a_job(tmp_path: Path) -> None:
    run_jobs(jobs(1), tmp_path)
    (job,) = jobs(1, fingerprint={"n": 1, "badnet": "another file"})
    assert stored_result(tmp_path, job) is None
    CALLS.clear()
    run_jobs([job], tmp_path)
    run_jobs([job], tmp_path, fresh=True)
    assert CALLS == ["cell/1", "cell/1"]


def test_an_unreadable_result_file_is_redone(tmp_path: Path) -> None:
    (tmp_path / "cell").mkdir()
    (tmp_path / "cell" / "1.json").write_text('{"key": "cell/1", "result":')  # cut short
    run_jobs(jobs(1), tmp_path)
    assert CALLS == ["cell/1"] and stored_result(tmp_path, jobs(1)[0]) == {"value": 1}


def test_an_interrupted_run_keeps_what_finished_and_resumes(tmp_path: Path) -> None:
    broken = [*jobs(1), Job("cell/2", interrupt, ("cell/2",), {"n": 2}), *jobs(3)]
    with pytest.raises(KeyboardInterrupt):
        run_jobs(broken, tmp_path)
    assert CALLS == ["cell/1"] and sorted(p.name for p in (tmp_path / "cell").iterdir()) == ["1.json"]
    CALLS.clear()
    assert run_jobs(jobs(1, 2, 3), tmp_path) == {f"cell/{n}": {"value": n} for n in (1, 2, 3)}
    assert CALLS == ["cell/2", "cell/3"]


@pytest.mark.slow  # starts worker processes
def test_worker_processes_give_the_same_results(tmp_path: Path) -> None:
    adds = [Job(f"sum/{a}", operator.add, (a, 10), {"a": a}) for a in range(3)]
    assert run_jobs(adds, tmp_path, workers=2) == {f"sum/{a}": a + 10 for a in range(3)}
    assert stored_result(tmp_path, adds[2]) == 12


@pytest.mark.slow  # starts worker processes
def test_a_long_run_replaces_its_worker_process(tmp_path: Path) -> None:
    """More jobs than `jobs_per_process`: they run outside this process, in a new one after every
    `jobs_per_process` of them, so that the memory a job's TensorFlow kept goes with its process."""
    pids = run_jobs([Job(f"pid/{n}", os.getpid, (), {"n": n}) for n in range(3)], tmp_path, jobs_per_process=2)
    assert pids["pid/0"] == pids["pid/1"] != pids["pid/2"] and os.getpid() not in pids.values()


def test_workers_are_checked() -> None:
    with pytest.raises(ValueError, match="workers must be at least 1, got 0"):
        run_jobs([], Path("."), workers=0)
    with pytest.raises(ValueError, match="jobs_per_process must be at least 1, got 0"):
        run_jobs([], Path("."), jobs_per_process=0)
    assert default_workers() >= 1
