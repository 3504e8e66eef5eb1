"""Run a study: a grid of tracked, resumable Sacred runs, then (GoodAI's study) the shuffle ablation.

    python experiments/run_tasks.py                      # --study goodai: A/B/C x learned/random_fixed/random, seed 0
    python experiments/run_tasks.py --profile smoke      # the same grid with tiny `smoke` networks: ~1 min
    python experiments/run_tasks.py --only a --variants learned,random --seeds 3 --outer-steps 300
    python experiments/run_tasks.py --study curricula --seeds 3   # the paper's four curricula at B's shape
    python experiments/run_tasks.py --study baselines --seeds 3   # GTN vs real data, tuned SGD, distillation
    python experiments/run_tasks.py --study normalisation --seeds 3   # the learner's normalisation, at B's shape
    python experiments/run_tasks.py --study nas          # GTN data as an architecture-search proxy
    python experiments/run_tasks.py --study gan --seeds 3   # a DCGAN's data vs GTN, real data, distillation (A)
    python experiments/run_tasks.py --study strength --seeds 3 --arms cosine,constant   # the shuffle drop over 2,000 steps
    python experiments/run_tasks.py --workers 2          # cells in 2 processes, the cores divided between them
    python experiments/run_tasks.py --ray local          # cells as Ray tasks (or --ray ADDRESS of a cluster)
    python experiments/run_tasks.py --only a --ranks 2 --meta-batch 2 --workers 1   # each cell on 2 torchrun ranks
    python experiments/run_tasks.py --dry-run            # the plan, what is already done, and why a stored run differs

Studies (`--only` picks the shapes: goodai a,b,c by default, nas and gan a, strength c, the others b; `--arms`
picks arms):
- goodai: teacher-input variants (`--variants`) of a GTN with the full curriculum, then one shuffle_ablation.py run
  per finished teacher;
- curricula: a GTN with curriculum full, shuffled_batch, all_shuffled (learned inputs) and none (variant random);
- baselines: the GTN (full, learned), real data with learned lr/momentum, distillation (mnist_experiment.py) and
  plain SGD with a tuned constant lr and momentum (tuned_sgd.py);
- nas: a GTN teacher at A's shape, then nas_proxy.py on it (64 architectures: the GTN proxy, K real batches and
  one epoch of real data, rank correlations);
- gan: a conditional DCGAN (gan_experiment.py) first, then at A's shape (200 outer steps) the GTN, real data,
  distillation, the GAN's generator as a teacher and a GTN initialised from it;
- normalisation: the learner normalised by batch / weight / weight_mean_only / none (200 outer steps), then
  transfer.py and robustness.py of the seed-0 batch and weight_mean_only teachers (and the real-data learners
  of every preset once);
- strength: at C's shape for 2,000 outer steps with a teacher snapshot every 200, the shuffle ablation of every
  snapshot, for today's defaults (cosine) and one of GoodAI's choices per arm: constant lr (constant), one learned
  lr/momentum for all steps (shared), U(0, 1) inputs (uniform01), their KL-divergence inner loss (kl_loss: a 10x
  smaller initial inner lr), their outer lr 0.01 for the generator's weights (generator_lr), and the first three
  together (goodai).
Runs are recorded in the file store (`runs/`, $GTN_RUNS_DIR or --runs-dir) and, with --mongo URL, in MongoDB too.
Resume: a cell whose run is already COMPLETED in the store with the same config is skipped (the GTN cell of
the baselines study is the curricula study's `full` cell), so stopping a study (Ctrl-C) and starting it again only
runs what is missing. A cell whose newest run with the same config is INTERRUPTED or FAILED and left a training
checkpoint (training.pt) continues from it (`resume_from`, shown by --dry-run as "resume from run N (step S)"), and
so does a NAS proxy run from the rows it scored (nas_rows.json: "architectures done: S"); other unfinished runs are
run again. With --mongo URL the plan is read from that MongoDB (tracking.stores) rather
than the file store, so a study spread over machines, or one whose file store is gone, resumes from MongoDB alone:
checkpoints and teachers come from GridFS. With --ranks N each training cell runs as N torchrun processes that
split its meta-batch (`--meta-batch`, a multiple of N; the ranks do not change what a cell computes, so runs of
either kind count as done for the other). One failing cell does not stop the others; the exit code is 0 only
when every cell completed.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from experiments.launch import Outcome, run_all
from experiments.observers import check_writable
from experiments.studies import EXPERIMENTS, PROFILES, STUDIES, evaluation_tasks, training_tasks
from experiments.study_plan import (GAN, TRAINING, RunRecord, Task, completed_evaluation, completed_run,
                                    dry_run_line, expected_config, plan, teacher_missing,
                                    teacher_reference)
from gtn_core.config import VARIANTS
from tracking.settings import default_runs_dir, redact
from tracking.stores import FileStore, MongoStore, Store, StoreError

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


def arm_list(text: str) -> list[str]:
    """argparse type of --arms: a comma-separated, non-empty list (each study checks the names)."""
    values = [value.strip() for value in text.split(",") if value.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"--arms {text!r}: expected a comma-separated list of the study's arms")
    return values


def build_parser() -> argparse.ArgumentParser:
    """The command line of the study runner."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", choices=STUDIES, default="goodai", help="which study's grid (default goodai)")
    parser.add_argument("--profile", choices=PROFILES, default="full")
    parser.add_argument("--only", type=lambda t: parse_list(t, tuple(EXPERIMENTS), "--only"), default=None,
                        help="shapes to run, e.g. a,c (default: goodai a,b,c; curricula and baselines b)")
    parser.add_argument("--variants", type=lambda t: parse_list(t, VARIANTS, "--variants"), default=list(VARIANTS),
                        help="teacher-input variants of the goodai study")
    parser.add_argument("--arms", type=arm_list, default=None,
                        help="only these arms of the study, e.g. cosine,constant (default: all)")
    parser.add_argument("--seeds", type=positive_int, default=1, help="seeds 0..N-1 per cell")
    parser.add_argument("--outer-steps", type=positive_int, default=None, help="override outer_steps")
    parser.add_argument("--dataset", choices=("mnist", "fashion_mnist"), default="mnist")
    parser.add_argument("--workers", type=positive_int, default=max(1, (os.cpu_count() or 1) // 2),
                        help="cells run at once, each in its own process (default: cores // 2)")
    parser.add_argument("--ranks", type=positive_int, default=1,
                        help="run each training cell as N torchrun processes (gloo on CPU) that share its meta-batch")
    parser.add_argument("--meta-batch", type=positive_int, default=None,
                        help="override meta_batch: learners per outer step over all ranks (a multiple of --ranks)")
    parser.add_argument("--ray", metavar="ADDRESS", default=None, help="dispatch cells to Ray: 'local' or a cluster address")
    parser.add_argument("--mongo", metavar="URL", default=None, help="also log every run to this MongoDB")
    parser.add_argument("--runs-dir", type=Path, default=None, help="file store (default: $GTN_RUNS_DIR or runs/)")
    parser.add_argument("--no-ablation", action="store_true",
                        help="train the grid only (no shuffle ablation, transfer or robustness runs)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and what is already done, run nothing")
    return parser


def check_ranks(tasks: list[Task], ranks: int) -> None:
    """SystemExit naming the first training cell whose meta_batch the ranks do not divide, before any work."""
    for task in tasks:
        meta_batch = expected_config(task).get("meta_batch", 1) if task.module == TRAINING else ranks
        if meta_batch % ranks:
            raise SystemExit(f"--ranks {ranks}: cell {task.label!r} has meta_batch={meta_batch}; expected a multiple "
                             f"of the ranks (the learners of an outer step are split among them: --meta-batch)")


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

    def grow(self, tasks: int) -> None:
        """Count `tasks` more to run (a finished teacher's evaluations)."""
        self.bar.total += tasks
        self.left += tasks
        self.bar.refresh()
        self._show()

    def _show(self) -> None:
        self.bar.set_postfix(running=min(self.running, self.left), failed=self.failed)

    def close(self) -> None:
        """Finish the bar."""
        self.bar.close()


def run_phase(tasks: list[Task], args: argparse.Namespace, desc: str,
              then: Callable[[Outcome], list[Task]] | None = None) -> tuple[list[Outcome], int]:
    """Run the tasks that are not done yet, with a progress bar, `then(outcome)` naming the tasks to run next after
    each one (at the front of the queue); return every outcome and how many tasks were left unstarted (a stop)."""
    queue = deque(tasks)
    if not queue:
        return [], 0
    progress = GridProgress(len(queue), 1 if args.workers == 1 and not args.ray else args.workers, desc)
    outcomes = []
    try:
        for outcome in run_all(queue, args, runs_dir_of(args)):
            progress.update(outcome)
            outcomes.append(outcome)
            following = then(outcome) if then is not None else []
            queue.extendleft(reversed(following))
            progress.grow(len(following))
    finally:
        progress.close()
    return outcomes, len(queue)


def describe_result(outcome: Outcome) -> str:
    """The summary's result column: final test accuracy, the ablation medians, or an evaluation's headline."""
    result = outcome.result
    if isinstance(result, float):
        return f"{result:.4f}"
    if not isinstance(result, dict) or not result:
        return outcome.error[:60] or "-"
    if "median_learned" in result:
        return f"learned {result['median_learned']:.4f} / shuffled {result['median_shuffled']:.4f}"
    if "gtn_proxy" in result:  # the NAS proxy
        return (f"Spearman GTN proxy {result['gtn_proxy']['spearman_all']['statistic']:.3f}, real proxy "
                f"{result['real_proxy']['spearman_all']['statistic']:.3f}")
    if "d_loss" in result:  # the GAN
        return f"d_loss {result['d_loss']:.3f}, g_loss {result['g_loss']:.3f}"
    key, value = next(iter(result.items()))  # transfer: mean accuracies; robustness: mean curves
    return f"{len(result)} means, {key} " + (f"{value[0]:.4f} clean, {value[-1]:.4f} strongest"
                                              if isinstance(value, list) else f"{value:.4f}")


def print_summary(outcomes: list[Outcome]) -> None:
    """The final table: cell, status, result, wall time; then the whole error of each cell that did not complete."""
    print(f"\n{'cell':<34}{'status':<11}{'run':>5}  {'wall_s':>7}  result")
    for outcome in outcomes:
        wall = "earlier" if outcome.reused else f"{outcome.seconds:.0f}"
        print(f"{outcome.task.label:<34}{outcome.status:<11}{outcome.run_id or '-':>5}  {wall:>7}  "
              f"{describe_result(outcome)}")
    for outcome in outcomes:
        if outcome.status != "COMPLETED" and outcome.error:
            print(f"{outcome.task.label}: {outcome.error}")


def reused(task: Task, run: RunRecord) -> Outcome:
    """The Outcome of a task whose run an earlier invocation completed."""
    return Outcome(task, "COMPLETED", run.run_id, run.result, 0.0, reused=True)


def main(argv: list[str] | None = None) -> int:
    """Run the grid, each finished teacher's evaluations as soon as it completes; print a summary; exit 1 when any
    run failed or a stop signal left cells to run."""
    args = build_parser().parse_args(argv)
    if not args.dry_run:
        check_writable(runs_dir_of(args))  # before any cell starts
    store = planning_store(args)
    runs = store.records(missing_ok=True)
    args.gan_source = {}
    if args.study == "gan":
        args.gan_source = gan_phase(args, store, runs)
        if args.gan_source is None:
            return 1
    grid = training_tasks(args)
    check_ranks(grid, args.ranks)
    study = plan(grid, runs, store)
    done, todo = study.done, study.todo
    print(f"study {args.study}: {len(grid)} training cells ({len(done)} already done, {len(todo)} to run), profile {args.profile}, "
          f"dataset {args.dataset}, runs read from the {store.label}, file store {runs_dir_of(args)}"
          + (f", mongo {redact(args.mongo)}" if args.mongo else ""))
    if args.dry_run:
        for task in grid:
            print(f"  {task.label:<26} " + dry_run_line(task, study, runs))
        return 0
    earlier, waiting = ([], []) if args.no_ablation else teacher_evaluations([task for task, _ in done], args, store)
    if earlier or waiting:
        print(f"evaluations of teachers finished earlier: {len(earlier) + len(waiting)} runs ({len(earlier)} already "
              f"done, {len(waiting)} to run)")
    ran, left = run_study(waiting, todo, args, store)
    outcomes = [reused(task, run) for task, run in [*done, *earlier]] + ran
    if all(outcome.reused for outcome in outcomes):
        print("nothing to run: every cell is already COMPLETED in the store")
    print_summary(outcomes)
    interrupted = any(outcome.status == "INTERRUPTED" for outcome in outcomes)
    if interrupted or left:
        print(f"stopped {'by a signal' if interrupted else 'early (a worker process died)'}: {left} run(s) not "
              "started (cells or evaluations); run the same command again to resume the interrupted cells from their "
              "checkpoints and run the rest")
    return 0 if all(outcome.status == "COMPLETED" for outcome in outcomes) and not (interrupted or left) else 1


def run_study(evaluations: list[Task], todo: list[Task], args: argparse.Namespace, store: Store
              ) -> tuple[list[Outcome], int]:
    """Run the evaluations of teachers finished earlier, then the training cells of `todo`; as each teacher
    completes, its own evaluations (shuffle ablations, transfer, robustness) go to the front of the queue, so a
    stopped study leaves whole teachers evaluated rather than every teacher trained and none evaluated (on Ray
    they join the back). An evaluation whose teacher file is missing (`teacher_missing`) is reported FAILED
    without running. Every outcome, and how many runs a stop left unstarted."""
    missing, cells = [], {task.label for task in todo}

    def evaluations_of(outcome: Outcome) -> list[Task]:
        if outcome.task.label not in cells or outcome.status != "COMPLETED" or args.no_ablation:
            return []
        return on_hand(teacher_evaluations([outcome.task], args, store)[1], missing)
    ran, left = run_phase(on_hand(evaluations, missing) + todo, args, "cells", evaluations_of)
    return missing + ran, left


def gan_phase(args: argparse.Namespace, store: Store, runs: list[RunRecord]) -> dict | None:
    """The GAN study's first cell: the conditional DCGAN its `gan` arms learn from (trained unless the store holds
    it); the keys naming it ({gan_run_id, gan_store}), or None when it failed or the study only plans."""
    task = Task("gan (DCGAN)", GAN, ("smoke",) if args.profile == "smoke" else (), {"dataset": args.dataset})
    done = completed_run(task, runs)
    if done is None and args.dry_run:
        print("  the GAN cell is to run first; its teacher arms are planned after it")
        return {"gan_run_id": "(to run)"}
    if done is None:
        outcome = run_phase([task], args, "GAN")[0][0]
        if outcome.status != "COMPLETED":
            print(f"the GAN cell ended {outcome.status}: {outcome.error[:200]}", file=sys.stderr)
            return None
        run_id = outcome.run_id
    else:
        run_id = done.run_id
    return {"gan_run_id": run_id, **({"gan_store": store.location} if isinstance(store, MongoStore) else {})}


def on_hand(evaluations: list[Task], outcomes: list[Outcome]) -> list[Task]:
    """The evaluations whose teacher file is on hand; each other one goes to `outcomes` as FAILED, not run."""
    runnable = []
    for task in evaluations:
        missing = teacher_missing(task)
        if missing is None:
            runnable.append(task)
        else:
            outcomes.append(Outcome(task, "FAILED", error=missing))
    return runnable


def teacher_evaluations(tasks: list[Task], args: argparse.Namespace, store: Store
                        ) -> tuple[list[tuple[Task, RunRecord]], list[Task]]:
    """The evaluations (shuffle ablation, transfer, robustness) of the teachers of the training `tasks` that are
    COMPLETED in `store`: (those already done there, with their runs; those to run). Each names its teacher's
    teacher.pt in this study's file store if it holds the teacher, else in `store` (GridFS in MongoDB)."""
    runs = store.records(missing_ok=True)
    local = FileStore(runs_dir_of(args))
    local_runs = local.records(missing_ok=True) if isinstance(store, MongoStore) else []
    done, todo = [], []
    for task in tasks:
        teacher = completed_run(task, runs) if task.module == TRAINING else None
        if teacher is None:
            continue
        for evaluation in evaluation_tasks(task, teacher_reference(teacher, store, local, local_runs), args):
            existing = completed_evaluation(evaluation, teacher, runs, store)
            done.append((evaluation, existing)) if existing is not None else todo.append(evaluation)
    return done, todo


if __name__ == "__main__":
    sys.exit(main())
