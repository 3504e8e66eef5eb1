"""Run a study: a grid of tracked, resumable Sacred runs, then (GoodAI's study) the shuffle ablation.

    python experiments/run_tasks.py                      # --study goodai: A/B/C x learned/random_fixed/random, seed 0
    python experiments/run_tasks.py --profile smoke      # the same grid with tiny `smoke` networks: ~1 min
    python experiments/run_tasks.py --only a --variants learned,random --seeds 3 --outer-steps 300
    python experiments/run_tasks.py --study curricula --seeds 3   # the paper's four curricula at B's shape
    python experiments/run_tasks.py --study baselines --seeds 3   # GTN vs real data, tuned SGD, distillation
    python experiments/run_tasks.py --workers 2          # cells in 2 processes, the cores divided between them
    python experiments/run_tasks.py --ray local          # cells as Ray tasks (or --ray ADDRESS of a cluster)
    python experiments/run_tasks.py --dry-run            # the plan, what is already done, and why a stored run differs

Studies (`--only` picks the shapes: goodai a,b,c by default, the others b):
- goodai: teacher-input variants (`--variants`) of a GTN with the full curriculum, then one shuffle_ablation.py run
  per finished teacher;
- curricula: a GTN with curriculum full, shuffled_batch, all_shuffled (learned inputs) and none (variant random);
- baselines: the GTN (full, learned), real data with learned lr/momentum, distillation (mnist_experiment.py) and
  plain SGD with a tuned constant lr and momentum (tuned_sgd.py).
Runs are recorded in the file store (`runs/`, $GTN_RUNS_DIR or --runs-dir) and, with --mongo URL, in MongoDB too.
Resume: a cell whose run is already COMPLETED in the store with the same config is skipped (the GTN cell of
the baselines study is the curricula study's `full` cell), so stopping a study (Ctrl-C) and starting it again only
runs what is missing. A cell whose newest run with the same config is INTERRUPTED or FAILED and left a training
checkpoint (training.pt) continues from it (`resume_from`, shown by --dry-run as "resume from run N (step S)");
other unfinished runs are run again. With --mongo URL the plan is read from that MongoDB (tracking.stores) rather
than the file store, so a study spread over machines, or one whose file store is gone, resumes from MongoDB alone:
checkpoints and teachers come from GridFS. One failing cell does not stop the others; the exit
code is 0 only when every cell completed.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import islice
from multiprocessing import get_context
from pathlib import Path

from sacred.utils import SacredInterrupt
from tqdm import tqdm

from experiments.observers import attach_observers, check_writable
from gtn_core.checkpoint import training_state_step
from gtn_core.config import VARIANTS
from tracking.settings import default_runs_dir, redact
from tracking.stored_config import config_differences, same_config
from tracking.stores import FileStore, MongoStore, RunRecord, Store, StoreError

EXPERIMENTS = {"a": "experiment_a", "b": "experiment_b", "c": "experiment_c", "paper": "paper"}
PROFILES = ("full", "smoke")
TRAINING, ABLATION = "experiments.mnist_experiment", "experiments.shuffle_ablation"
TUNED_SGD = "experiments.tuned_sgd"
EXPERIMENT_NAMES = {TRAINING: "gtn_mnist", ABLATION: "gtn_shuffle_ablation", TUNED_SGD: "gtn_tuned_sgd"}
# Each study's arms: (label, experiment module, config updates); goodai's arms are the --variants.
STUDY_ARMS = {
    "curricula": [("full", TRAINING, {"curriculum": "full", "variant": "learned"}),
                  ("shuffled_batch", TRAINING, {"curriculum": "shuffled_batch", "variant": "learned"}),
                  ("all_shuffled", TRAINING, {"curriculum": "all_shuffled", "variant": "learned"}),
                  ("none", TRAINING, {"curriculum": "none", "variant": "random"})],
    "baselines": [("full", TRAINING, {"curriculum": "full", "variant": "learned"}),
                  ("real_data", TRAINING, {"teacher": "real_data"}),
                  ("tuned_sgd", TUNED_SGD, {}),
                  ("distillation", TRAINING, {"teacher": "distillation"})],
}
STUDIES = ("goodai", *STUDY_ARMS)
DEFAULT_SHAPES = {"goodai": ["a", "b", "c"], "curricula": ["b"], "baselines": ["b"]}
# They change how a run looks or where it starts, not what it computes.
IGNORED_KEYS = ("progress", "data_root", "checkpoint_every", "resume_from", "resume_store")
RESUMABLE_STATUSES = ("INTERRUPTED", "FAILED")


@dataclass(frozen=True)
class Task:
    """One Sacred run to make: which experiment module, with which named configs and updates."""

    label: str
    module: str
    named_configs: tuple[str, ...]
    updates: dict = field(hash=False)


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


def parse_list(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    """Split a comma-separated option and reject values outside `allowed`."""
    values = [value.strip() for value in text.split(",") if value.strip()]
    if not values or any(value not in allowed for value in values):
        raise argparse.ArgumentTypeError(f"{what} {text!r}: expected a comma-separated subset of {', '.join(allowed)}")
    return values


def positive_int(text: str) -> int:
    """argparse type for counts that must be >= 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    """The command line of the study runner."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", choices=STUDIES, default="goodai", help="which study's grid (default goodai)")
    parser.add_argument("--profile", choices=PROFILES, default="full")
    parser.add_argument("--only", type=lambda t: parse_list(t, tuple(EXPERIMENTS), "--only"), default=None,
                        help="shapes to run, e.g. a,c (default: goodai a,b,c; curricula and baselines b)")
    parser.add_argument("--variants", type=lambda t: parse_list(t, VARIANTS, "--variants"), default=list(VARIANTS),
                        help="teacher-input variants of the goodai study")
    parser.add_argument("--seeds", type=positive_int, default=1, help="seeds 0..N-1 per cell")
    parser.add_argument("--outer-steps", type=positive_int, default=None, help="override outer_steps")
    parser.add_argument("--dataset", choices=("mnist", "fashion_mnist"), default="mnist")
    parser.add_argument("--workers", type=positive_int, default=max(1, (os.cpu_count() or 1) // 2),
                        help="cells run at once, each in its own process (default: cores // 2)")
    parser.add_argument("--ray", metavar="ADDRESS", default=None, help="dispatch cells to Ray: 'local' or a cluster address")
    parser.add_argument("--mongo", metavar="URL", default=None, help="also log every run to this MongoDB")
    parser.add_argument("--runs-dir", type=Path, default=None, help="file store (default: $GTN_RUNS_DIR or runs/)")
    parser.add_argument("--no-ablation", action="store_true", help="train the grid only")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and what is already done, run nothing")
    return parser


def study_arms(args: argparse.Namespace) -> list[tuple[str, str, dict]]:
    """The study's arms: (label, experiment module, config updates)."""
    if args.study == "goodai":
        return [(variant, TRAINING, {"variant": variant}) for variant in args.variants]
    return STUDY_ARMS[args.study]


def training_tasks(args: argparse.Namespace) -> list[Task]:
    """One task per (shape, arm, seed) of the study's grid, shapes outermost."""
    smoke = ("smoke",) if args.profile == "smoke" else ()
    tasks = []
    for experiment in args.only or DEFAULT_SHAPES[args.study]:
        for arm, module, arm_updates in study_arms(args):
            for seed in range(args.seeds):
                updates = {**arm_updates, "seed": seed, "dataset": args.dataset}
                if args.outer_steps is not None and module == TRAINING:
                    updates["outer_steps"] = args.outer_steps
                # smoke first: its tiny networks stay, the experiment's batch size and step count win
                tasks.append(Task(f"{experiment} {arm} s{seed}", module, (*smoke, EXPERIMENTS[experiment]), updates))
    return tasks


def ablation_task(training: Task, run_id: str, store: Store, args: argparse.Namespace) -> Task:
    """The shuffle-ablation run for the finished training run `run_id` of `store`."""
    smoke = ("smoke",) if args.profile == "smoke" else ()
    updates = {"source_run_id": run_id, "source_store": store.location}
    return Task(f"{training.label} shuffle", ABLATION, smoke, updates)


def runs_dir_of(args: argparse.Namespace) -> Path:
    """The file store of this study."""
    return args.runs_dir or default_runs_dir()


def planning_store(args: argparse.Namespace) -> Store:
    """Where the study looks for finished and resumable cells: the MongoDB of --mongo (shared by every machine of
    a study), else the file store; a MongoDB that cannot be reached is reported and the file store used instead."""
    if args.mongo:
        try:
            return MongoStore(args.mongo)
        except StoreError as error:
            print(f"warning: {error}; planning from the file store {runs_dir_of(args)} instead", file=sys.stderr)
    return FileStore(runs_dir_of(args))


def expected_config(task: Task) -> dict:
    """The full Sacred config `task` would run with (built without running anything)."""
    ex = importlib.import_module(task.module).ex
    # Sacred has no public "resolve the config" call; _create_run builds the run without starting it.
    return dict(ex._create_run(config_updates=dict(task.updates), named_configs=list(task.named_configs)).config)


def completed_run(task: Task, runs: Iterable[RunRecord]) -> RunRecord | None:
    """The newest COMPLETED run of the store with the task's experiment and config."""
    wanted = expected_config(task)
    matches = [run for run in runs if run.name == EXPERIMENT_NAMES[task.module] and run.status == "COMPLETED"
               and same_config(run.config, wanted, IGNORED_KEYS)]
    return matches[-1] if matches else None


def checkpoint_step(store: Store, run: RunRecord) -> int | None:
    """The outer step of the run's training.pt (from GridFS in MongoDB); None when it has none or it is unreadable."""
    try:
        with store.local_artifact(run.run_id, "training.pt") as path:
            return training_state_step(path)
    except (KeyError, ValueError):
        return None  # no checkpoint, or a truncated one: the cell is run again


def resumable_run(task: Task, runs: Iterable[RunRecord], store: Store) -> tuple[RunRecord, int] | None:
    """(run, checkpoint step) when the task's newest same-config run is INTERRUPTED/FAILED with a usable training.pt."""
    wanted = expected_config(task)
    matches = [run for run in runs if run.name == EXPERIMENT_NAMES[task.module]
               and same_config(run.config, wanted, IGNORED_KEYS)]
    if not matches or matches[-1].status not in RESUMABLE_STATUSES:
        return None
    step = checkpoint_step(store, matches[-1])
    if step is None or not 0 < step < wanted.get("outer_steps", 0):
        return None
    return matches[-1], step


def execute(task: Task, runs_dir: str, mongo_url: str | None, threads: int, progress: bool) -> Outcome:
    """Run one task through Sacred in this process; never raises (a failure is an Outcome)."""
    import torch

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


def run_all(tasks: list[Task], args: argparse.Namespace) -> Iterator[Outcome]:
    """Run tasks in this process, a process pool or Ray, yielding outcomes as they finish."""
    cores = os.cpu_count() or 1
    threads = max(1, cores // args.workers)
    common = (str(runs_dir_of(args)), args.mongo)
    if args.ray:
        yield from _run_on_ray(tasks, args, common)
    elif args.workers == 1:
        with StudyStop() as stop:
            for task in tasks:
                outcome = execute(task, *common, threads, progress=sys.stderr.isatty())
                yield outcome
                # In this process the run's own handler takes the signal; either way no further cell starts.
                if stop.received is not None or outcome.status == "INTERRUPTED":
                    break
    else:
        # At most one cell per worker is submitted at a time: the executor queues submitted cells where cancel()
        # no longer reaches them, so after a stop signal they would still start.
        queue = iter(tasks)
        with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool, StudyStop() as stop:
            running = {pool.submit(execute, task, *common, threads, False) for task in islice(queue, args.workers)}
            stop.workers = list(pool._processes)  # the executor has no public list of its worker pids
            while running:
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield future.result()
                    task = next(queue, None) if stop.received is None else None
                    if task is not None:  # cells not started after a stop stay to do for the next invocation
                        running.add(pool.submit(execute, task, *common, threads, False))
                        stop.workers = list(pool._processes)


def _run_on_ray(tasks: list[Task], args: argparse.Namespace, common: tuple) -> Iterator[Outcome]:
    try:
        import ray
    except ImportError as error:
        raise SystemExit("--ray needs Ray, which is not installed: pip install 'ray[default]'") from error
    ray.init(address=None if args.ray == "local" else args.ray, ignore_reinit_error=True, log_to_driver=False)
    threads = max(1, int(ray.cluster_resources().get("CPU", 1)) // max(1, args.workers))
    remote = ray.remote(num_cpus=threads)(execute)
    pending = [remote.remote(task, *common, threads, False) for task in tasks]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        yield ray.get(done[0])


class GridProgress:
    """A tqdm bar over the tasks: done / running / failed and the ETA."""

    def __init__(self, total: int, running: int, desc: str) -> None:
        self.bar = tqdm(total=total, desc=desc, unit="run")
        self.failed, self.running, self.left = 0, running, total
        self._show()

    def update(self, outcome: Outcome) -> None:
        """Count one finished task."""
        self.failed += outcome.status != "COMPLETED"
        self.left -= 1
        self.bar.update(1)
        self._show()

    def _show(self) -> None:
        self.bar.set_postfix(running=min(self.running, self.left), failed=self.failed)

    def close(self) -> None:
        """Finish the bar."""
        self.bar.close()


def run_phase(tasks: list[Task], args: argparse.Namespace, desc: str) -> list[Outcome]:
    """Run the tasks that are not done yet, with a progress bar; return every outcome."""
    if not tasks:
        return []
    progress = GridProgress(len(tasks), 1 if args.workers == 1 and not args.ray else args.workers, desc)
    outcomes = []
    try:
        for outcome in run_all(tasks, args):
            progress.update(outcome)
            outcomes.append(outcome)
    finally:
        progress.close()
    return outcomes


def describe_result(outcome: Outcome) -> str:
    """The summary's result column: final test accuracy, or the ablation medians."""
    result = outcome.result
    if isinstance(result, dict):
        return f"learned {result['median_learned']:.4f} / shuffled {result['median_shuffled']:.4f}"
    if isinstance(result, float):
        return f"{result:.4f}"
    return outcome.error[:60] or "-"


def print_summary(outcomes: list[Outcome]) -> None:
    """The final table: cell, status, result, wall time."""
    print(f"\n{'cell':<28}{'status':<11}{'run':>5}  {'wall_s':>7}  result")
    for outcome in outcomes:
        wall = "earlier" if outcome.reused else f"{outcome.seconds:.0f}"
        print(f"{outcome.task.label:<28}{outcome.status:<11}{outcome.run_id or '-':>5}  {wall:>7}  "
              f"{describe_result(outcome)}")


IDENTITY_KEYS = ("batch_size", "inner_steps", "seed", "dataset")  # what names a cell, with the task's own updates


def why_not(task: Task, runs: list[RunRecord]) -> str:
    """Why the newest COMPLETED stored run of the same cell (shape, seed, arm) does not count: every differing key."""
    wanted = expected_config(task)
    identity = (*IDENTITY_KEYS, *task.updates)
    cell = [run for run in runs if run.name == EXPERIMENT_NAMES[task.module] and run.status == "COMPLETED"
            and not config_differences(run.config, {key: wanted[key] for key in identity if key in wanted})]
    if not cell:
        return ""
    run = cell[-1]
    return f" (stored run {run.run_id} differs: {'; '.join(config_differences(run.config, wanted, IGNORED_KEYS))})"


def reused(task: Task, run: RunRecord) -> Outcome:
    """The Outcome of a task whose run an earlier invocation completed."""
    return Outcome(task, "COMPLETED", run.run_id, run.result, 0.0, reused=True)


@dataclass
class Plan:
    """What a study invocation finds in its store: cells done (with their run), cells to run, and of those the
    ones continued from a checkpoint (label -> (run id, step))."""

    done: list[tuple[Task, RunRecord]]
    todo: list[Task]
    resumes: dict[str, tuple[str, int]]


def plan(tasks: list[Task], runs: list[RunRecord], store: Store) -> Plan:
    """Split tasks into done and to do, the latter with `resume_from` (and, in MongoDB, `resume_store`) where a
    checkpoint is left."""
    result = Plan([], [], {})
    for task in tasks:
        run = completed_run(task, runs)
        if run is not None:
            result.done.append((task, run))
            continue
        resumable = resumable_run(task, runs, store)
        if resumable is None:
            result.todo.append(task)
            continue
        source, step = resumable
        where = {"resume_store": store.location} if isinstance(store, MongoStore) else {}
        result.todo.append(Task(task.label, task.module, task.named_configs,
                                {**task.updates, "resume_from": source.run_id, **where}))
        result.resumes[task.label] = (source.run_id, step)
    return result


def dry_run_line(task: Task, study: Plan, runs: list[RunRecord]) -> str:
    """One --dry-run line: done (run N), resume from run N (step S), or to run (and why a stored run differs)."""
    done = {t.label: run for t, run in study.done}
    if task.label in done:
        return f"done (run {done[task.label].run_id})"
    if task.label in study.resumes:
        source, step = study.resumes[task.label]
        return f"resume from run {source} (step {step})"
    return "to run" + why_not(task, runs)


def main(argv: list[str] | None = None) -> int:
    """Run the grid, then the ablations; print a summary; exit 1 when any run failed."""
    args = build_parser().parse_args(argv)
    if not args.dry_run:
        check_writable(runs_dir_of(args))  # before any cell starts
    store = planning_store(args)
    runs = store.records(missing_ok=True)
    grid = training_tasks(args)
    study = plan(grid, runs, store)
    done, todo = study.done, study.todo
    print(f"study {args.study}: {len(grid)} training cells ({len(done)} already done, {len(todo)} to run), profile {args.profile}, "
          f"dataset {args.dataset}, runs read from the {store.label}, file store {runs_dir_of(args)}"
          + (f", mongo {redact(args.mongo)}" if args.mongo else ""))
    if args.dry_run:
        for task in grid:
            print(f"  {task.label:<26} " + dry_run_line(task, study, runs))
        return 0
    trained = run_phase(todo, args, "training")
    outcomes = [reused(task, run) for task, run in done] + trained
    stopped = any(outcome.status == "INTERRUPTED" for outcome in outcomes)
    if args.study == "goodai" and not args.no_ablation and not stopped:
        outcomes += ablation_phase(grid, args, store)
    if all(outcome.reused for outcome in outcomes):
        print("nothing to run: every cell is already COMPLETED in the store")
    print_summary(outcomes)
    if stopped or len(trained) < len(todo):
        print(f"stopped by a signal: {len(todo) - len(trained)} cell(s) not started; run the same command again to "
              "resume the interrupted cells from their checkpoints and run the rest")
    return 0 if all(outcome.status == "COMPLETED" for outcome in outcomes) and len(trained) == len(todo) else 1


def ablation_phase(grid: list[Task], args: argparse.Namespace, store: Store) -> list[Outcome]:
    """The shuffle ablation of every teacher of the grid that is COMPLETED in `store` and has none there yet (its
    teacher.pt read from that store: GridFS in MongoDB)."""
    runs = store.records(missing_ok=True)
    teachers = [(task, completed_run(task, runs)) for task in grid if task.module == TRAINING]
    tasks = [ablation_task(task, run.run_id, store, args) for task, run in teachers if run is not None]
    study = plan(tasks, runs, store)
    if tasks:
        print(f"shuffle ablation: {len(tasks)} teachers ({len(study.done)} already done, {len(study.todo)} to run)")
    return [reused(task, run) for task, run in study.done] + run_phase(study.todo, args, "ablation")


if __name__ == "__main__":
    sys.exit(main())
