"""Tables and wall times of the paper's comparisons: the curricula study and the baselines study.

    python experiments/run_tasks.py --study curricula --seeds 3 --runs-dir bench/out/paper_studies
    python experiments/run_tasks.py --study baselines --seeds 3 --runs-dir bench/out/paper_studies
    python bench/paper_studies.py                                  # the tables of that store, as Markdown
    python bench/paper_studies.py --runs-dir DIR --csv bench/paper_studies.csv

Reads the store through `analysis.results` (the newest COMPLETED run per cell and seed), prints one Markdown table
per study (final test accuracy mean +- sd over seeds, seeds, minutes per run; the curricula beside the paper's
Fig. 1c values) and each study's total. Minutes per run are the run's own time from its metrics (outer steps plus
evaluations, so a paused or queued process does not count; the tuned-SGD runs, which log no step times, from start
to stop); other work on the same cores still inflates them. Writes every row to a CSV and the headline figures to
bench/results.json.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from analysis import results
from record import command_line, entry, merge_results

from analysis.results import (TRAINING, TUNED_SGD, FileStore, baselines_table, curricula_table, load_metrics, load_runs,
                              select_runs)

REPO = Path(__file__).resolve().parent.parent


def own_seconds(store: FileStore, runs: pd.DataFrame) -> pd.Series:
    """Each run's outer-step plus evaluation seconds from its metrics; its start-to-stop time when it logs none."""
    metrics = load_metrics(store, runs.run_id, names=["step_seconds", "eval_seconds"])
    totals = metrics.groupby("run_id").value.sum()
    return runs.run_id.map(totals).fillna(runs.wall_seconds)


def study_rows(runs_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(curricula table, baselines table) of a store's COMPLETED runs at shapes where each study ran."""
    store = FileStore(runs_dir)
    runs = select_runs(load_runs(store), names=(TRAINING, TUNED_SGD), dataset="mnist")
    runs = runs.assign(wall_seconds=own_seconds(store, runs))
    return curricula_table(runs), baselines_table(runs)


def markdown(table: pd.DataFrame, arm: str, reference: str | None = None) -> str:
    """One Markdown table: arm, seeds, accuracy mean +- sd, (reference), minutes per run."""
    header = f"| shape | {arm} | seeds | final test accuracy (mean +- sd) |" + (" paper |" if reference else "") + \
        " min per run |"
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for row in table.itertuples():
        sd = "" if pd.isna(row.accuracy_sd) else f" +- {row.accuracy_sd:.4f}"
        cells = [row.experiment, getattr(row, arm), str(row.seeds), f"{row.accuracy_mean:.4f}{sd}"]
        if reference:
            value = getattr(row, reference)
            cells.append("-" if pd.isna(value) else f"{value:.3f}")
        cells.append(f"{row.wall_minutes:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Print both studies' tables, write the CSV and the results.json entries."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", type=Path, default=REPO / "bench" / "out" / "paper_studies")
    parser.add_argument("--csv", type=Path, default=REPO / "bench" / "paper_studies.csv")
    args = parser.parse_args(argv)
    curricula, baselines = study_rows(args.runs_dir)
    print("Curricula\n\n" + markdown(curricula, "curriculum", "paper_accuracy"))
    print("\nBaselines\n\n" + markdown(baselines, "teacher"))
    rows = pd.concat([curricula.assign(study="curricula", arm=curricula.curriculum),
                      baselines.assign(study="baselines", arm=baselines.teacher)])
    columns = ["study", "experiment", "arm", "seeds", "accuracy_mean", "accuracy_sd", "wall_minutes"]
    rows[columns + ["paper_accuracy"]].to_csv(args.csv, index=False, float_format="%.5f")
    command = command_line("bench/paper_studies.py", argv)
    entries = [entry(f"{row.study}_{row.experiment.lower()}_{row.arm}_accuracy", round(row.accuracy_mean, 4), "accuracy",
                     None, command, note=f"mean over {row.seeds} seed(s)") for row in rows.itertuples()]
    for study, table in (("curricula", curricula), ("baselines", baselines)):
        total = float((table.wall_minutes * table.seeds).sum())
        print(f"{study}: {total:.0f} min of runs")
        entries.append(entry(f"{study}_study_run_minutes", round(total, 1), "min", None, command,
                             note="sum of the runs' wall times"))
    entries += paper_shape_entries(args.runs_dir, command)
    merge_results(entries)


def paper_shape_entries(runs_dir: Path, command: str) -> list[dict]:
    """The best test accuracy and minutes of the newest full-curriculum run at the paper's shape, if any."""
    store = results.open_store(runs_dir=runs_dir)
    runs = results.select_runs(results.load_runs(store), teacher="gtn", curriculum="full")
    runs = runs[runs.experiment == "paper"]
    if runs.empty:
        return []
    run = runs.iloc[-1]
    curve = results.load_metrics(store, [run.run_id], names=["test_accuracy"])
    print(f"paper shape: run {run.run_id}, {run.outer_steps} outer steps, best {curve.value.max():.4f}, "
          f"{run.wall_seconds / 60:.1f} min")
    return [entry("paper_shape_best_accuracy", round(float(curve.value.max()), 4), "accuracy", 0.989, command,
                  note=f"run {run.run_id}: {run.outer_steps} outer steps in {run.wall_seconds / 60:.1f} min on 2 "
                       "cores; target: the paper's value after 2,000 outer steps")]


if __name__ == "__main__":
    main()
