"""Summarise finished training runs of a Sacred file store as Markdown: accuracy curves, time to 0.95 / 0.97.

    python bench/curves.py bench/out/acceptance_runs            # every run in that store
    python bench/curves.py runs --every 100

Wall time counts training and evaluation (the sum of the logged `step_seconds` and `eval_seconds`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

THRESHOLDS = (0.95, 0.97)


def load_runs(store: Path) -> list[dict]:
    """config, status and metrics of every training run (one with test accuracies) in a file store, by run id."""
    from tracking.stores import FileStore

    runs = []
    files = FileStore(store)
    for record in files.records(missing_ok=True):
        metrics = {name: {"steps": steps, "values": values}
                   for name, (steps, values) in files.metric_series(record.run_id).items()}
        if "test_accuracy" not in metrics:
            continue  # an ablation run, or a training run stopped before its first evaluation
        runs.append({"id": record.run_id, "config": record.config, "status": record.status, "metrics": metrics})
    if not runs:
        raise SystemExit(f"{store}: no runs found (expected numbered run folders of a Sacred file store)")
    return runs


def elapsed_at(metrics: dict, step: int) -> float:
    """Seconds of training plus evaluation up to and including outer step `step`."""
    train = sum(v for s, v in zip(metrics["step_seconds"]["steps"], metrics["step_seconds"]["values"]) if s <= step)
    evals = sum(v for s, v in zip(metrics["eval_seconds"]["steps"], metrics["eval_seconds"]["values"]) if s <= step)
    return train + evals


def first_reaching(metrics: dict, threshold: float) -> tuple[int, float] | None:
    """(outer step, wall seconds) of the first evaluation at or above `threshold`."""
    accuracy = metrics["test_accuracy"]
    for step, value in zip(accuracy["steps"], accuracy["values"]):
        if value >= threshold:
            return step, elapsed_at(metrics, step)
    return None


def describe(run: dict, every: int) -> str:
    """A Markdown block for one run."""
    cfg, metrics = run["config"], run["metrics"]
    accuracy = metrics["test_accuracy"]
    last_step = metrics["step_seconds"]["steps"][-1]
    eval_share = elapsed_at(metrics, last_step) and sum(metrics["eval_seconds"]["values"]) / elapsed_at(metrics, last_step)
    lines = [f"### run {run['id']}: {cfg['variant']}, batch {cfg['batch_size']}, {cfg['inner_steps']} inner steps "
             f"({run['status']}, bn_mode={cfg['bn_mode']}, seed {cfg['seed']})", "",
             f"- outer steps run: {last_step}; wall {elapsed_at(metrics, last_step) / 60:.1f} min "
             f"(evaluation {100 * eval_share:.0f}% of it)",
             f"- final test accuracy: {accuracy['values'][-1]:.4f}; best: {max(accuracy['values']):.4f}"]
    for threshold in THRESHOLDS:
        hit = first_reaching(metrics, threshold)
        lines.append(f"- first >= {threshold}: " + (f"step {hit[0]}, {hit[1] / 60:.1f} min" if hit else "not reached"))
    lines += ["", "| outer step | " + " | ".join(str(s) for s in accuracy["steps"] if s % every == 0) + " |",
              "|---" * (1 + sum(1 for s in accuracy["steps"] if s % every == 0)) + "|",
              "| test acc | " + " | ".join(f"{v:.3f}" for s, v in zip(accuracy["steps"], accuracy["values"])
                                          if s % every == 0) + " |", ""]
    return "\n".join(lines)


def main() -> None:
    """Print one Markdown block per run of the store."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", type=Path)
    parser.add_argument("--every", type=int, default=100, help="outer steps between table columns")
    args = parser.parse_args()
    for run in load_runs(args.store):
        print(describe(run, args.every))


if __name__ == "__main__":
    main()
