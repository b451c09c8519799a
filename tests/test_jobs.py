"""Tests for fineprune.jobs: results are kept as they finish, read back on the next run unless
their fingerprint changed, an interrupted run resumes, a local Dask cluster gives the same results,
a long run does not stay in one process, a worker that dies has its job run again (and only that
one), and a scheduler that does not answer is refused in one line."""

from __future__ import annotations

import json
import operator
import os
import time
from pathlib import Path

import pytest

from fineprune import jobs as jobs_module
from fineprune.errors import InputError
from fineprune.jobs import Job, default_workers, run_jobs, stored_record, stored_result

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


def die_once(marker: str) -> int:
    """A job whose first try kills the process running it, as a crash or an out-of-memory kill would."""
    if not Path(marker).exists():
        Path(marker).write_text("tried")
        os._exit(1)
    return os.getpid()


@pytest.mark.slow  # starts worker processes
def test_a_long_run_leaves_this_process_and_a_killed_worker_has_its_job_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More jobs than run in this process go to a local Dask cluster; a worker that dies mid-job
    (here on purpose; in a long run, killed for memory or restarted by its nanny past its memory
    limit) is replaced, and its job run again."""
    monkeypatch.setattr(jobs_module, "IN_PROCESS_JOBS", 1)
    marker = tmp_path / "tried"
    found = run_jobs([Job("pid/0", os.getpid, (), {"n": 0}), Job("pid/1", die_once, (str(marker),), {"n": 1})],
                     tmp_path / "cells", workers=1)
    assert marker.read_text() == "tried" and os.getpid() not in found.values()
    assert stored_result(tmp_path / "cells", Job("pid/1", die_once, (), {"n": 1})) == found["pid/1"]


def run_and_die_last(key: str, log: str, cells: str, jobs: int) -> str:
    """A job that notes in `log` each time it runs; the last of `jobs` to run, on its first try,
    waits until the others' results are kept (and a little for the client to let them go), then
    kills the process running it, as a nanny does to a worker past its memory limit."""
    ran = Path(log).read_text().split() if Path(log).exists() else []
    with open(log, "a") as file:
        file.write(key + "\n")
    if len(set(ran)) == jobs - 1:
        while not all(stored_record(Path(cells), Job(other, record, ())) for other in ran):
            time.sleep(0.05)
        time.sleep(2)  # the client lets a result go right after writing it; the scheduler hears within ms
        die_once(str(Path(log).with_suffix(".died")))
    return key


@pytest.mark.slow  # starts worker processes
def test_a_restarted_worker_does_not_run_finished_jobs_again(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A kept result is let go at once: a worker replaced later in a run (as its nanny replaces
    one past its memory limit, every ~60 cells of the comparison) must not compute again every
    job it had finished, only the one it was running."""
    monkeypatch.setattr(jobs_module, "IN_PROCESS_JOBS", 1)
    log, cells = tmp_path / "runs.log", tmp_path / "cells"
    keys = [f"count/{n}" for n in range(4)]
    found = run_jobs([Job(key, run_and_die_last, (key, str(log), str(cells), len(keys)), {"key": key})
                      for key in keys], cells, workers=1)
    runs = log.read_text().split()
    died = runs[len(keys) - 1]  # the last to run
    assert found == {key: key for key in keys} and log.with_suffix(".died").exists()
    assert sorted(runs) == sorted([*keys, died])  # the job that died ran twice, every other once


@pytest.mark.slow  # waits for a scheduler that never answers
def test_a_scheduler_where_nothing_listens_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError) as refused:
        run_jobs(jobs(1, 2), tmp_path, scheduler="tcp://127.0.0.1:9")
    message = str(refused.value)
    assert message.startswith("--scheduler tcp://127.0.0.1:9: no Dask scheduler answers there") and "\n" not in message
    assert CALLS == [] and not (tmp_path / "cell").exists()


def test_workers_are_checked() -> None:
    with pytest.raises(ValueError, match="workers must be at least 1, got 0"):
        run_jobs([], Path("."), workers=0)
    assert default_workers() >= 1
