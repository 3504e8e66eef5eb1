"""A run killed half-way and resumed against the same run uninterrupted: every logged value and the teacher.

    python bench/resume_equivalence.py                       # Experiment C learned, seed 0, killed near step 200
    python bench/resume_equivalence.py --experiment a --kill-at 100

Three Sacred runs of `experiments/mnist_experiment.py with experiment_<x> variant=learned` into a fresh file store
(default bench/out/resume_equivalence): (1) uninterrupted; (2) the same config, sent SIGTERM as soon as its
training.pt reaches `--kill-at` outer steps (it checkpoints and ends INTERRUPTED); (3) `resume_from` run 2, to the
end. (1) and (2) run side by side with one thread each, (3) with one thread too (float results depend on the
thread count). The stitched curve of 2+3 (`analysis.results.load_metrics`, which follows `resume_from`) is then
compared with run 1's at every step for every metric except the wall-clock ones, and the final teachers tensor by
tensor. Prints a Markdown summary and merges the figures into bench/results.json.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from record import command_line, entry, merge_results

REPO = Path(__file__).resolve().parent.parent
TIMINGS = ("step_seconds", "eval_seconds")  # wall-clock series: never equal between two runs


def launch(store: Path, experiment: str, *updates: str) -> subprocess.Popen:
    """Start one training run of the experiment with one torch thread."""
    env = {**os.environ, "GTN_RUNS_DIR": str(store), "OMP_NUM_THREADS": "1"}
    env.pop("GTN_MONGO_URL", None)
    return subprocess.Popen([sys.executable, str(REPO / "experiments" / "mnist_experiment.py"), "with",
                             f"experiment_{experiment}", "variant=learned", "progress=False", *updates],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def checkpoint_step(path: Path) -> int:
    """The outer step of a training.pt, 0 while there is none (or it is being replaced)."""
    from gtn_core.checkpoint import training_state_step

    try:
        return training_state_step(path) if path.is_file() else 0
    except ValueError:
        return 0


def main(argv: list[str] | None = None) -> None:
    """Run the three runs, compare, report."""
    from analysis import results

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", choices=("a", "b", "c"), default="c")
    parser.add_argument("--kill-at", type=int, default=200, help="SIGTERM once training.pt holds this many steps")
    parser.add_argument("--runs-dir", type=Path, default=REPO / "bench" / "out" / "resume_equivalence")
    args = parser.parse_args(argv)
    if args.runs_dir.exists():
        shutil.rmtree(args.runs_dir)  # the comparison reads run ids 1-3
    started = time.perf_counter()
    whole = launch(args.runs_dir, args.experiment)
    time.sleep(5)  # run 1 takes id 1
    killed = launch(args.runs_dir, args.experiment, "checkpoint_every=1")
    while checkpoint_step(args.runs_dir / "2" / "training.pt") < args.kill_at and killed.poll() is None:
        time.sleep(0.5)
    killed.send_signal(signal.SIGTERM)
    _, err = killed.communicate()
    if killed.returncode == 0:
        raise SystemExit(f"run 2 finished before step {args.kill_at}: {err[-500:]}")
    stopped_at = checkpoint_step(args.runs_dir / "2" / "training.pt")
    resumed = launch(args.runs_dir, args.experiment, "checkpoint_every=1", "resume_from=2")
    for process in (whole, resumed):
        _, err = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"a run failed: {err[-2000:]}")
    seconds = time.perf_counter() - started

    store = results.open_store(runs_dir=args.runs_dir)
    runs = results.load_runs(store)
    assert list(runs.status) == ["COMPLETED", "INTERRUPTED", "COMPLETED"], list(runs.status)
    metrics = results.load_metrics(store, ["1", "3"])
    metrics = metrics[~metrics.name.isin(TIMINGS)]
    reference = metrics[metrics.run_id == "1"].drop(columns="run_id").reset_index(drop=True)
    stitched = metrics[metrics.run_id == "3"].drop(columns="run_id").reset_index(drop=True)
    same_steps = reference[["name", "step"]].equals(stitched[["name", "step"]])
    differing = int((reference.value != stitched.value).sum()) if same_steps else None
    teachers = [torch.load(args.runs_dir / run / "teacher.pt", weights_only=False)["state_dict"] for run in "13"]
    unequal = [name for name, value in teachers[0].items() if not torch.equal(teachers[1][name], value)]
    final = runs.final_accuracy.tolist()
    print(f"Experiment {args.experiment.upper()} learned, seed 0: run 2 killed (SIGTERM) after its checkpoint at "
          f"step {stopped_at} of {runs.outer_steps.iloc[0]}, resumed as run 3\n")
    print("| | uninterrupted (run 1) | killed + resumed (runs 2+3, stitched) |\n|---|---|---|")
    print(f"| logged values compared (every metric but wall times, every step) | {len(reference)} | {len(stitched)} |")
    print(f"| steps per metric | {reference.groupby('name').step.nunique().max()} | "
          f"{stitched.groupby('name').step.nunique().max()} |")
    print(f"| values that differ | - | {differing if same_steps else 'steps differ'} |")
    print(f"| final test accuracy | {final[0]:.4f} | {final[2]:.4f} |")
    print(f"| teacher tensors that differ | - | {len(unequal)} of {len(teachers[0])} |")
    print(f"\nwall time of the whole benchmark: {seconds / 60:.1f} min (runs 1 and 2 side by side, 1 thread each)")
    command = command_line("bench/resume_equivalence.py", argv)
    merge_results([
        entry(f"resume_equivalence_exp_{args.experiment}_differing_values", differing, "values", 0, command,
              note=f"stitched killed-at-{stopped_at}-and-resumed run vs uninterrupted, {len(reference)} values"),
        entry(f"resume_equivalence_exp_{args.experiment}_differing_teacher_tensors", len(unequal), "tensors", 0,
              command, note=f"of {len(teachers[0])} teacher tensors"),
    ])


if __name__ == "__main__":
    main()
