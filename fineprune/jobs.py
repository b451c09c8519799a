"""Independent jobs whose results are kept as they finish: a long run that resumes, on one machine
or on a cluster.

A job is a picklable call (a module-level function and its arguments) with a key, the name of its
result file, and a fingerprint, everything its result depends on. `run_jobs` skips every job
whose result file already holds the same fingerprint, runs the others, and writes each result the
moment it arrives (atomically, see `files.replacing`), so an interrupted run loses only the jobs
still running. It reports jobs done, left and the time to go.

The jobs run on Dask's distributed engine (`dask.distributed`): by default a local cluster of
`workers` processes started for the run, each with an equal share of the cores and of the memory;
with `scheduler`, a running cluster at that address (`dask scheduler` and `dask worker ADDRESS`
on the machines; every worker needs the package installed and the data and models at the paths
the jobs name). A worker that dies, or that its nanny restarts for growing past its memory limit,
has its job run again elsewhere. That limit matters here: TensorFlow gives back only part of the
memory each model took until its process ends (one process running the comparison's cells grew
by about 240 MB a cell and was killed for lack of memory after 102 cells on a 24 GiB machine).

A run of a few jobs with one worker and no scheduler stays in the calling process.
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from fineprune.errors import InputError
from fineprune.files import replacing
from fineprune.progress import Progress, silent


@dataclass(frozen=True)
class Job:
    """`function(*args)` returns a JSON-serialisable result, stored in `folder/key.json`."""

    key: str  # a relative path without suffix, e.g. "sunglasses/magnitude/seed_0"
    function: Callable[..., Any]
    args: tuple[Any, ...]
    fingerprint: dict[str, Any] = field(default_factory=dict)  # a stored result with another one is redone


def result_path(folder: Path, job: Job) -> Path:
    return folder / f"{job.key}.json"


def stored_record(folder: Path, job: Job) -> dict[str, Any] | None:
    """What the job's result file holds ("fingerprint", "result", "seconds"), or None if it is
    missing or unreadable."""
    try:
        record = json.loads(result_path(folder, job).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def stored_result(folder: Path, job: Job) -> Any | None:
    """The job's stored result if its file exists and has the job's fingerprint, else None."""
    record = stored_record(folder, job)
    if record is None or record.get("fingerprint") != json.loads(json.dumps(job.fingerprint)):
        return None
    return record.get("result")


IN_PROCESS_JOBS = 10  # at most this many jobs, with one worker and no scheduler, run in the calling process
MEMORY_SHARE = 0.75  # of the machine's memory, split between the local workers; a worker past it is restarted


def default_workers() -> int:
    """One worker per pair of cores (each job's TensorFlow uses two threads), at least one."""
    return max(1, (os.cpu_count() or 2) // 2)


def run_jobs(jobs: list[Job], folder: Path, workers: int = 1, fresh: bool = False, progress: Progress = silent,
             scheduler: str | None = None) -> dict[str, Any]:
    """Every job's result by key: stored ones read back (unless `fresh`), the others run on a local
    cluster of `workers` processes, or on the cluster whose scheduler is at `scheduler` (a few jobs
    with one worker: in this process), and stored as each finishes."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
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

    if scheduler is None and (len(pending) <= 1 or (workers == 1 and len(pending) <= IN_PROCESS_JOBS)):
        for job in pending:
            keep(job, *_timed(job.function, job.args))
    elif pending:
        _run_on_cluster(pending, workers, scheduler, keep, progress)
    return results


def _run_on_cluster(jobs: list[Job], workers: int, scheduler: str | None,
                    keep: Callable[[Job, Any, float], None], progress: Progress) -> None:
    """`jobs` on a Dask cluster (a local one of `workers` processes, or the one at `scheduler`),
    each result kept as it arrives; a job's error is raised here."""
    from distributed import as_completed

    with _quiet_logger("distributed"), _client(workers, scheduler) as client:  # its log lines are not progress
        if "dashboard" in client.scheduler_info().get("services", {}):
            progress(f"Dask dashboard: {client.dashboard_link}")
        futures = {client.submit(_timed, job.function, job.args, key=f"{job.key}-{id(job)}", pure=False): job
                   for job in jobs}
        try:
            for future in as_completed(futures):
                result, seconds = future.result()
                keep(futures.pop(future), result, seconds)
                # Let the result go: while a future is held, a worker that dies or is restarted past
                # its memory limit has every finished job it holds computed again.
                future.release()
        except BaseException:
            client.cancel(list(futures))
            raise


@contextmanager
def _client(workers: int, scheduler: str | None) -> Iterator[Any]:
    """A Dask client, closed after the block: of the scheduler at `scheduler`, or of a new local
    cluster of `workers` processes (one thread each, TensorFlow's threads and the memory split
    between them), shut down with it."""
    import dask
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="5s")
        except (OSError, TimeoutError, ValueError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise InputError(f"--scheduler {scheduler}: no Dask scheduler answers there ({reason})") from None
        with client:
            yield client
        return
    from distributed.system import MEMORY_LIMIT  # the machine's memory, or its container's limit

    threads = max(1, (os.cpu_count() or 2) // workers)
    memory = int(MEMORY_LIMIT * MEMORY_SHARE / workers)
    with dask.config.set({"distributed.worker.memory.target": False, "distributed.worker.memory.spill": False,
                          "distributed.worker.memory.pause": False, "distributed.worker.memory.terminate": 0.95,
                          "distributed.scheduler.allowed-failures": 3}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, memory_limit=memory,
                               dashboard_address=":0" if _has_dashboard() else None, silence_logs=logging.ERROR,
                               env={"OMP_NUM_THREADS": str(threads), "FINEPRUNE_WORKER_THREADS": str(threads),
                                    "TF_CPP_MIN_LOG_LEVEL": "3"})
    with cluster, Client(cluster) as client:
        yield client


@contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """Only critical messages from the logger `name` (and below it) within the block."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _has_dashboard() -> bool:
    """Whether Dask can serve its dashboard here (it needs bokeh, which this project does not install)."""
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True


_threads_set = False  # whether this process has set TensorFlow's threads for its jobs


def _tensorflow_threads() -> None:
    """In a local worker, before its first job: its TensorFlow uses its share of the cores
    (FINEPRUNE_WORKER_THREADS, set by `_client`), so that the workers share the machine. Elsewhere
    TensorFlow keeps its own default."""
    global _threads_set
    threads = os.environ.get("FINEPRUNE_WORKER_THREADS")
    if threads is None or _threads_set:
        return
    _threads_set = True
    from fineprune import cli

    cli.quiet_tensorflow()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(int(threads))
    tf.config.threading.set_inter_op_parallelism_threads(int(threads))


def _timed(function: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, float]:
    """`function(*args)` and the seconds it took (in a worker, its threads set first)."""
    _tensorflow_threads()
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
