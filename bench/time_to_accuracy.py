"""Wall time for Experiment A `learned` to first reach 0.95 and 0.97 test accuracy, median over seeds.

    python bench/time_to_accuracy.py                                 # seeds 0-2 into bench/out/time_to_accuracy
    python bench/time_to_accuracy.py --reuse bench/out/full_study    # take seeds already run by the full study

Each seed is one Sacred run of `experiments/mnist_experiment.py with experiment_a variant=learned seed=S`, one
after the other with all cores. A seed whose COMPLETED run is already in the store, or in a `--reuse` store, and
whose config maps (through the experiment's `build_config`) to the core's defaults, is not trained again, so an
interrupted benchmark resumes. Test accuracy is measured on the full 10,000-image test set at the experiment's
evaluation cadence (`eval_every`, 25 outer steps by default), so a time is that of the first evaluation at or
above the threshold. Wall time is training plus evaluation (the logged `step_seconds` and `eval_seconds`; the
few seconds of process start and data loading are not counted). A seed that never reaches a threshold counts as
infinitely slow, so the median exists only when most seeds reach it. Prints a Markdown table and merges the
figures into bench/results.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
from pathlib import Path

from curves import first_reaching, load_runs
from record import command_line, entry, merge_results

from experiments.mnist_experiment import build_config
from tracking.stored_config import upgrade_config
from gtn_core.config import GTNConfig

REPO = Path(__file__).resolve().parent.parent
THRESHOLDS = {0.95: None, 0.97: 900.0}  # threshold -> target seconds (issue: 0.97 within 15 minutes)


def train_seed(runs_dir: Path, seed: int, outer_steps: int | None) -> int:
    """Train Experiment A `learned` for one seed into the store; the process's exit code."""
    command = [sys.executable, str(REPO / "experiments" / "mnist_experiment.py"), "with", "experiment_a",
               "variant=learned", f"seed={seed}", "progress=False"]
    if outer_steps is not None:
        command.append(f"outer_steps={outer_steps}")
    return subprocess.run(command, check=False, env={**os.environ, "GTN_RUNS_DIR": str(runs_dir)}).returncode


def is_default_run(cfg: dict, seeds: int, outer_steps: int | None) -> bool:
    """Whether a stored Sacred config is the core's default Experiment A `learned` run for one of the seeds."""
    if cfg.get("dataset") != "mnist" or cfg.get("seed") not in range(seeds):
        return False
    try:  # the experiment's own Sacred -> core mapping; keys added later count as their old behaviour
        stored = build_config(upgrade_config(cfg))
    except (KeyError, ValueError):
        return False
    defaults = GTNConfig()
    wanted = dataclasses.replace(defaults, batch_size=32, inner_steps=20, variant="learned", seed=cfg["seed"],
                                 outer_steps=outer_steps or defaults.outer_steps)
    return dataclasses.replace(stored, device=wanted.device) == wanted  # the device changes no figure here


def seed_runs(stores: list[Path], seeds: int, outer_steps: int | None) -> dict[int, dict]:
    """The newest COMPLETED default-config Experiment A `learned` run per seed, over the given stores."""
    chosen = {}
    for store in (store for store in stores if store.is_dir() and any(p.name.isdigit() for p in store.iterdir())):
        for run in load_runs(store):
            if run["status"] == "COMPLETED" and is_default_run(run["config"], seeds, outer_steps):
                chosen[run["config"]["seed"]] = run
    return chosen


def median_time(times: list[float | None]) -> float | None:
    """Median with 'not reached' as +inf; None when the median itself is not reached."""
    value = statistics.median([float("inf") if t is None else t for t in times])
    return None if value == float("inf") else value


def main(argv: list[str] | None = None) -> None:
    """Train what is missing, then report time to each threshold per seed and the median."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", type=Path, default=REPO / "bench" / "out" / "time_to_accuracy")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    parser.add_argument("--reuse", type=Path, action="append", default=[],
                        help="another store to take finished seeds from (read only; repeatable)")
    parser.add_argument("--outer-steps", type=int, default=None, help="override the experiment's outer_steps")
    parser.add_argument("--no-train", action="store_true", help="only report on the runs already in the stores")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds {args.seeds}: expected a positive integer")
    stores = [args.runs_dir, *args.reuse]
    for seed in range(args.seeds):
        if args.no_train or seed in seed_runs(stores, args.seeds, args.outer_steps):
            continue
        print(f"training seed {seed} into {args.runs_dir}", file=sys.stderr)
        if train_seed(args.runs_dir, seed, args.outer_steps) != 0:
            print(f"seed {seed} failed", file=sys.stderr)
    runs = seed_runs(stores, args.seeds, args.outer_steps)
    missing = sorted(set(range(args.seeds)) - set(runs))
    if missing:
        raise SystemExit(f"{', '.join(map(str, stores))}: no COMPLETED Experiment A learned run for seed(s) {missing}")
    command = command_line("bench/time_to_accuracy.py", argv)
    print(f"Experiment A learned, {args.seeds} seeds, stores {', '.join(map(str, stores))}\n")
    print("| seed | run | outer steps | best test acc | " + " | ".join(f"first >= {t}" for t in THRESHOLDS) + " |")
    print("|---" * (4 + len(THRESHOLDS)) + "|")
    hits = {threshold: [] for threshold in THRESHOLDS}
    bests = []
    for seed, run in sorted(runs.items()):
        accuracy = run["metrics"]["test_accuracy"]["values"]
        bests.append(max(accuracy))
        cells = []
        for threshold in THRESHOLDS:
            hit = first_reaching(run["metrics"], threshold)
            hits[threshold].append(hit[1] if hit else None)
            cells.append(f"step {hit[0]}, {hit[1] / 60:.1f} min" if hit else "not reached")
        print(f"| {seed} | {run['id']} | {run['config']['outer_steps']} | {max(accuracy):.4f} | "
              + " | ".join(cells) + " |")
    entries = [entry("best_test_acc_exp_a_learned", round(statistics.median(bests), 4), "accuracy", 0.97, command,
                     note=f"median over {args.seeds} seeds of the best evaluation")]
    for threshold, target in THRESHOLDS.items():
        value = median_time(hits[threshold])
        reached = sum(t is not None for t in hits[threshold])
        note = f"{reached} of {args.seeds} seeds reached it"
        entries.append(entry(f"time_to_{threshold}_exp_a_learned_s", None if value is None else round(value, 1), "s",
                             target, command, note=note))
        print(f"\nmedian time to {threshold}: " + ("not reached" if value is None else f"{value / 60:.1f} min")
              + f" ({note})")
    merge_results(entries)


if __name__ == "__main__":
    main()
