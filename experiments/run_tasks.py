"""Run the curriculum study: experiments A, B, C x teacher-input variants, one Sacred run per cell.

    python experiments/run_tasks.py                      # full study (A/B/C x learned/random_fixed/random)
    python experiments/run_tasks.py --profile smoke      # the same grid with the `smoke` config: minutes
    python experiments/run_tasks.py --only a --variants learned,random --outer-steps 300
    python experiments/run_tasks.py --dry-run            # print the plan, run nothing

Cells run one after another in this process; each is recorded in the file store (`runs/` or --runs-dir).
The exit code is 0 only when every cell completed.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

from experiments.mnist_experiment import ex
from experiments.observers import attach_observers
from gtn_core.config import VARIANTS

EXPERIMENTS = {"a": "experiment_a", "b": "experiment_b", "c": "experiment_c"}
PROFILES = ("full", "smoke")


@dataclass(frozen=True)
class Cell:
    """One run of the grid."""

    experiment: str
    variant: str
    seed: int

    def named_configs(self, profile: str) -> list[str]:
        """Sacred named configs: the experiment's shape, then `smoke` for the smoke profile."""
        return [EXPERIMENTS[self.experiment]] + (["smoke"] if profile == "smoke" else [])


def parse_list(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    """Split a comma-separated option and reject values outside `allowed`."""
    values = [value.strip() for value in text.split(",") if value.strip()]
    unknown = [value for value in values if value not in allowed]
    if unknown or not values:
        raise argparse.ArgumentTypeError(f"{what} {text!r}: expected a comma-separated subset of {', '.join(allowed)}")
    return values


def positive_int(text: str) -> int:
    """argparse type for counts that must be >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line of the study runner."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=PROFILES, default="full")
    parser.add_argument("--only", type=lambda t: parse_list(t, tuple(EXPERIMENTS), "--only"), default=list(EXPERIMENTS))
    parser.add_argument("--variants", type=lambda t: parse_list(t, VARIANTS, "--variants"), default=list(VARIANTS))
    parser.add_argument("--seeds", type=positive_int, default=1, help="seeds 0..N-1 per cell")
    parser.add_argument("--outer-steps", type=positive_int, default=None, help="override outer_steps")
    parser.add_argument("--dataset", choices=("mnist", "fashion_mnist"), default="mnist")
    parser.add_argument("--runs-dir", default=None, help="file store (default: $GTN_RUNS_DIR or runs/)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    return parser


def plan(args: argparse.Namespace) -> list[Cell]:
    """Every cell of the requested grid, experiments outermost."""
    return [Cell(experiment, variant, seed) for experiment in args.only for variant in args.variants
            for seed in range(args.seeds)]


def run_cell(cell: Cell, args: argparse.Namespace) -> tuple[str, float | None]:
    """Run one cell through Sacred; return its status and final test accuracy."""
    updates = {"variant": cell.variant, "seed": cell.seed, "dataset": args.dataset}
    if args.outer_steps is not None:
        updates["outer_steps"] = args.outer_steps
    run = ex.run(named_configs=cell.named_configs(args.profile), config_updates=updates)
    return run.status, run.result


def main(argv: list[str] | None = None) -> int:
    """Run the grid and print a summary; non-zero exit when any cell failed."""
    args = build_parser().parse_args(argv)
    cells = plan(args)
    print(f"{len(cells)} cells, profile {args.profile}, dataset {args.dataset}")
    if args.dry_run:
        for cell in cells:
            print(f"  {cell.experiment} {cell.variant} seed={cell.seed}")
        return 0
    attach_observers(ex, args.runs_dir)
    summary = []
    for cell in cells:
        started = time.perf_counter()
        try:
            status, accuracy = run_cell(cell, args)
        except Exception as error:  # one failing cell must not stop the study; Sacred recorded it as FAILED
            status, accuracy = f"FAILED ({type(error).__name__}: {error})", None
        summary.append((cell, status, accuracy, time.perf_counter() - started))
    print(f"\n{'cell':<24}{'status':<12}{'test_acc':>10}{'wall_s':>10}")
    for cell, status, accuracy, seconds in summary:
        shown = "-" if accuracy is None else f"{accuracy:.4f}"
        print(f"{cell.experiment + ' ' + cell.variant + ' s' + str(cell.seed):<24}{status:<12}{shown:>10}{seconds:>10.0f}")
    return 0 if all(status == "COMPLETED" for _, status, _, _ in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
