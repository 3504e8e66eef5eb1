"""Running a study's cells: in this process, in a pool of processes, on Ray, each one process or torchrun ranks.

`execute` never raises: what became of a cell is its Outcome. With `ranks` > 1 a training cell is launched as
`python -m torch.distributed.run --standalone --nproc_per_node R experiments/mnist_experiment.py with ...` (gloo
on CPU; rank 0 records the run) and its Outcome read back from the file store.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from sacred.utils import SacredInterrupt

from experiments.observers import attach_observers
from experiments.study_plan import EXPERIMENT_NAMES, TRAINING, Task, expected_config
from tracking.stored_config import IGNORED_KEYS, same_config
from tracking.stores import FileStore

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Outcome:
    """What became of a task."""

    task: Task
    status: str
    run_id: str | None = None
    result: object = None
    seconds: float = 0.0
    error: str = ""
    reused: bool = False  # completed in an earlier invocation (resume)


def execute(task: Task, runs_dir: str, mongo_url: str | None, threads: int, progress: bool, ranks: int = 1) -> Outcome:
    """Run one task through Sacred in this process (a training task with `ranks` > 1: as torchrun ranks); never
    raises (a failure is an Outcome)."""
    import torch

    if ranks > 1 and task.module == TRAINING:
        return execute_ranks(task, runs_dir, mongo_url, threads, ranks)
    torch.set_num_threads(threads)
    started = time.perf_counter()
    try:
        ex = importlib.import_module(task.module).ex
        attach_observers(ex, runs_dir, mongo_url)
        run = ex.run(named_configs=list(task.named_configs), config_updates={**task.updates, "progress": progress})
        return Outcome(task, run.status, str(run._id), run.result, time.perf_counter() - started)
    except Exception as error:  # one failing cell must not stop the study; Sacred recorded the run as FAILED
        status = error.STATUS if isinstance(error, SacredInterrupt) else "FAILED"  # a stop signal: INTERRUPTED
        return Outcome(task, status, None, None, time.perf_counter() - started, f"{type(error).__name__}: {error}")


def sacred_updates(updates: dict) -> list[str]:
    """`key=value` words of a Sacred command line for config updates (values as Python literals)."""
    return [f"{key}={value!r}" for key, value in updates.items()]


class ForwardTerm:
    """While active (in the main thread), SIGTERM to this process is passed on to `pid` (torchrun passes it to its
    ranks, whose runs checkpoint and end INTERRUPTED); SIGINT from a terminal reaches the ranks by itself."""

    def __init__(self, pid: int) -> None:
        self.pid, self.previous = pid, {}

    def _handle(self, number, frame) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)

    def __enter__(self) -> "ForwardTerm":
        if threading.current_thread() is threading.main_thread():
            self.previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, self._handle),
                             signal.SIGINT: signal.signal(signal.SIGINT, lambda number, frame: None)}
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)


def execute_ranks(task: Task, runs_dir: str, mongo_url: str | None, threads: int, ranks: int) -> Outcome:
    """Launch a training task as `ranks` torchrun processes of `threads // ranks` threads each and read its Outcome
    (status, run id, result) back from the file store: the run rank 0 recorded with the task's config."""
    started = time.perf_counter()
    store = FileStore(runs_dir)
    before = {record.run_id for record in store.records(missing_ok=True)}
    env = {**os.environ, "GTN_RUNS_DIR": str(runs_dir), "OMP_NUM_THREADS": str(max(1, threads // ranks))}
    env.pop("GTN_MONGO_URL", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
               str(REPO_ROOT / "experiments" / "mnist_experiment.py"), "with", *task.named_configs,
               *sacred_updates({**task.updates, "progress": False}), *(["--mongo", mongo_url] if mongo_url else [])]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    with ForwardTerm(process.pid):
        _, err = process.communicate()
    wanted = expected_config(task)
    runs = [record for record in store.records(missing_ok=True) if record.run_id not in before
            and record.name == EXPERIMENT_NAMES[TRAINING] and same_config(record.config, wanted, IGNORED_KEYS)]
    seconds = time.perf_counter() - started
    if not runs:
        tail = " | ".join(line for line in err.splitlines()[-5:] if line.strip())
        return Outcome(task, "FAILED", None, None, seconds, f"torchrun exited {process.returncode} before rank 0 "
                       f"recorded a run: {tail}")
    run = runs[-1]
    error = "" if run.status == "COMPLETED" else f"torchrun exited {process.returncode}"
    return Outcome(task, run.status, run.run_id, run.result, seconds, error)


class StudyStop:
    """While active, SIGTERM or SIGINT stop the study: no further cell starts, and SIGTERM is passed on to the
    worker processes (SIGINT from a terminal reaches them by itself), whose runs checkpoint and end INTERRUPTED."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: int | None = None
        self.workers: list[int] = []
        self.previous: dict = {}

    def _handle(self, number, frame) -> None:
        self.received = number
        if number == signal.SIGTERM:
            for pid in self.workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)

    def __enter__(self) -> "StudyStop":
        if threading.current_thread() is threading.main_thread():  # only the main thread may take signals
            self.previous = {number: signal.signal(number, self._handle) for number in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)


def run_all(tasks: deque[Task] | list[Task], args: argparse.Namespace, runs_dir: Path) -> Iterator[Outcome]:
    """Run tasks in this process, a process pool or Ray (each training task on `args.ranks` torchrun ranks),
    yielding outcomes as they finish. A deque of tasks may grow while they run: the caller can add tasks between
    outcomes (a finished teacher's evaluations, at the front), and in this process or the pool they start as
    workers free up (Ray has every task submitted already, so they join the back). Tasks not started after a stop
    signal, or after a pool worker died, stay in the deque. Each pool cell gets its share of the cores the running
    cells leave free: `cores // workers`, or more when fewer cells are left (the GAN study's single GAN cell gets
    every core)."""
    queue = tasks if isinstance(tasks, deque) else deque(tasks)
    cores = os.cpu_count() or 1
    common = (str(runs_dir), args.mongo)
    ranks = getattr(args, "ranks", 1)
    if args.ray:
        yield from _run_on_ray(queue, args, common)
    elif args.workers == 1:
        with StudyStop() as stop:
            while queue:
                outcome = execute(queue.popleft(), *common, cores, sys.stderr.isatty(), ranks)
                yield outcome
                # In this process the run's own handler takes the signal; either way no further cell starts.
                if stop.received is not None or outcome.status == "INTERRUPTED":
                    break
    else:
        yield from _run_in_pool(queue, args, common, cores, ranks)


def _run_in_pool(queue: deque[Task], args: argparse.Namespace, common: tuple, cores: int, ranks: int
                 ) -> Iterator[Outcome]:
    """`run_all` in a process pool of `args.workers`. At most one cell per worker is submitted at a time: the
    executor queues submitted cells where cancel() no longer reaches them, so after a stop signal they would still
    start. A broken pool (a worker killed outright) takes no further cell."""
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool, StudyStop() as stop:
        running: dict = {}  # future -> (its task, its threads)
        broken = False
        while True:
            while stop.received is None and not broken and queue and len(running) < args.workers:
                threads = share_of_cores(cores, [t for _, t in running.values()], args.workers, len(queue))
                task = queue.popleft()
                running[pool.submit(execute, task, *common, threads, False, ranks)] = (task, threads)
            stop.workers = list(pool._processes)  # the executor has no public list of its worker pids
            if not running:
                return
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                broken = broken or isinstance(future.exception(), BrokenProcessPool)
                yield _outcome(future, running.pop(future)[0], stop)


def share_of_cores(cores: int, running: list[int], workers: int, queued: int) -> int:
    """Threads for the next cell of a pool: the cores the `running` cells (their thread counts) leave free, split
    among the cells that can still start beside them (at most `workers` in all, and no more than are `queued`)."""
    free = cores - sum(running)
    starting = max(1, min(workers - len(running), queued))
    return max(1, free // starting)


def _outcome(future, task: Task, stop: StudyStop) -> Outcome:
    """A pool cell's Outcome; a worker killed outright (a stop signal that reached it while it was still starting,
    before the run installed its handlers; the pool then stops the others too) is INTERRUPTED after a stop,
    FAILED otherwise."""
    try:
        return future.result()
    except BrokenProcessPool as error:
        status = "INTERRUPTED" if stop.received is not None else "FAILED"
        return Outcome(task, status, error=f"its worker process ended abruptly ({error})")


def _run_on_ray(queue: deque[Task], args: argparse.Namespace, common: tuple) -> Iterator[Outcome]:
    try:
        import ray
    except ImportError as error:
        raise SystemExit("--ray needs Ray, which is not installed: pip install 'ray[default]'") from error
    ray.init(address=None if args.ray == "local" else args.ray, ignore_reinit_error=True, log_to_driver=False)
    threads = max(1, int(ray.cluster_resources().get("CPU", 1)) // max(1, args.workers))
    remote = ray.remote(num_cpus=threads)(execute)
    pending = []
    while queue or pending:
        while queue:  # Ray schedules them by the cores they ask for
            pending.append(remote.remote(queue.popleft(), *common, threads, False, getattr(args, "ranks", 1)))
        done, pending = ray.wait(pending, num_returns=1)
        yield ray.get(done[0])
