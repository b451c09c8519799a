"""Independent jobs whose results are kept as they finish: a long run that resumes and spreads.

A job is a picklable call (a module-level function and its arguments) with a key, the name of its
result file, and a fingerprint, everything its result depends on. `run_jobs` skips every job
whose result file already holds the same fingerprint, runs the others, in this process or in
`workers` spawned processes, and writes each result the moment it arrives (atomically, see
`files.replacing`), so an interrupted run loses only the jobs still running. It reports jobs done,
left and the time to go.

A long run never stays in one process: TensorFlow gives back only part of the memory each model
took until its process ends (one process running the comparison's cells grew by about 240 MB a
cell and was killed for lack of memory after 102 cells on a 24 GiB machine), so a worker process
is replaced after `jobs_per_process` jobs (a new pool for each batch of them), and only a run of
that many jobs or fewer, with one worker, stays in the calling process.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fineprune.files import replacing


@dataclass(frozen=True)
class Job:
    """`function(*args)` returns a JSON-serialisable result, stored in `folder/key.json`."""

    key: str  # a relative path without suffix, e.g. "sunglasses/magnitude/seed_0"
    function: Callable[..., Any]
    args: tuple[Any, ...]
    fingerprint: dict[str, Any] = field(default_factory=dict)  # a stored result with another one is redone


def result_path(folder: Path, job: Job) -> Path:
    return folder / f"{job.key}.json"


def stored_result(folder: Path, job: Job) -> Any | None:
    """The job's stored result if its file exists and has the job's fingerprint, else None."""
    path = result_path(folder, job)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if record.get("fingerprint") != json.loads(json.dumps(job.fingerprint)):
        return None
    return record.get("result")


JOBS_PER_PROCESS = 10  # a worker process is replaced after this many jobs (see the module's docstring)


def default_workers() -> int:
    """One worker per pair of cores (each job's TensorFlow uses two threads), at least one."""
    return max(1, (os.cpu_count() or 2) // 2)


def run_jobs(jobs: list[Job], folder: Path, workers: int = 1, fresh: bool = False,
             progress: Callable[[str], None] = lambda message: None,
             jobs_per_process: int = JOBS_PER_PROCESS) -> dict[str, Any]:
    """Every job's result by key: stored ones read back (unless `fresh`), the others run with
    `workers` processes, each replaced after `jobs_per_process` jobs (one worker and no more jobs
    than that: in this process), and stored as each finishes."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if jobs_per_process < 1:
        raise ValueError(f"jobs_per_process must be at least 1, got {jobs_per_process}")
    results: dict[str, Any] = {}
    pending = []
    for job in jobs:
        stored = None if fresh else stored_result(folder, job)
        if stored is None:
            pending.append(job)
        else:
            results[job.key] = stored
    if results:
        progress(f"{len(results)} of {len(jobs)} jobs already done in {folder}/; {len(pending)} to run")
    clock = _Clock(len(pending), workers)

    def keep(job: Job, result: Any, seconds: float) -> None:
        with replacing(result_path(folder, job)) as tmp:
            tmp.write_text(json.dumps({"key": job.key, "fingerprint": job.fingerprint, "seconds": seconds,
                                       "result": result}, indent=1))
        results[job.key] = result
        progress(clock.finished(job.key, seconds))

    if (workers == 1 and len(pending) <= jobs_per_process) or len(pending) <= 1:
        for job in pending:
            started = time.perf_counter()
            keep(job, job.function(*job.args), time.perf_counter() - started)
        return results
    threads = max(1, (os.cpu_count() or 2) // workers)
    batch = workers * jobs_per_process  # a fresh pool for each batch: its processes end with it
    for start in range(0, len(pending), batch):
        _run_in_pool(pending[start:start + batch], workers, threads, keep)
    return results


def _run_in_pool(jobs: list[Job], workers: int, threads: int, keep: Callable[[Job, Any, float], None]) -> None:
    """`jobs` in `workers` new processes, each result kept as it arrives. (The pool's own
    `max_tasks_per_child` would replace processes too, but hangs on Python 3.11: CPython issue 115634.)"""
    context = multiprocessing.get_context("spawn")  # a fresh TensorFlow per worker, never a forked one
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(threads,)) as pool:
        running: dict[Future, Job] = {pool.submit(_timed, job.function, job.args): job for job in jobs}
        try:
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    result, seconds = future.result()
                    keep(running.pop(future), result, seconds)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _start_worker(threads: int) -> None:
    """A worker's TensorFlow uses `threads` threads, so that the workers share the cores."""
    from fineprune import cli

    cli.quiet_tensorflow()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def _timed(function: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, float]:
    started = time.perf_counter()
    return function(*args), time.perf_counter() - started


@dataclass
class _Clock:
    """Jobs done, left and the time to go, from the mean time of the jobs this run finished."""

    total: int
    workers: int
    done: int = 0
    seconds: float = 0.0

    def finished(self, key: str, seconds: float) -> str:
        self.done += 1
        self.seconds += seconds
        left = self.total - self.done
        to_go = self.seconds / self.done * left / min(self.workers, max(left, 1))
        return (f"{self.done}/{self.total} done ({key}: {seconds:.0f} s), {left} left"
                + (f", about {_duration(to_go)} to go" if left else ""))


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
