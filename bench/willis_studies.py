"""Tables and wall times of the normalisation study and its transfer and robustness evaluations (after Willis 2021).

    python experiments/run_tasks.py --study normalisation --seeds 3 --runs-dir bench/out/willis
    python experiments/run_tasks.py --study normalisation --dataset fashion_mnist --runs-dir bench/out/willis
    python bench/willis_studies.py                       # the tables of that store, as Markdown
    python bench/willis_studies.py --runs-dir DIR --csv-dir bench

Reads the store through `analysis.results` and `analysis.willis`; prints, per dataset, the normalisation table
(final and best test accuracy mean +- sd over seeds, diverged runs, meta-loss spread, minutes per run), the
transfer table beside Willis's, the robustness table (accuracy mean +- sd per mode at each strength) and the wall
time of the evaluations (target: transfer + robustness under 1 hour on 2 cores once the teachers exist). Minutes
are each run's start-to-stop time, so other work on the same cores inflates them. Writes the tables as CSVs and
the headline figures to bench/results.json.
"""
from __future__ import annotations


import pandas as pd
from record import command_line, entry, merge_results, study_arguments

from analysis import results, willis



def plus_minus(mean: float, sd: float, digits: int = 3) -> str:
    """'0.931 +- 0.004' (no sd for a single value)."""
    if pd.isna(mean):
        return "-"
    return f"{mean:.{digits}f}" + ("" if pd.isna(sd) else f" +- {sd:.{digits}f}")


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def normalisation_markdown(table: pd.DataFrame) -> str:
    """One row per (dataset, normalisation)."""
    rows = [[r.dataset, r.normalisation, f"{r.completed}/{r.seeds}", str(r.diverged),
             plus_minus(r.accuracy_mean, r.accuracy_sd, 4), f"{r.best_accuracy_mean:.4f}",
             f"{r.meta_loss_spread:.4f}", f"{r.wall_minutes:.1f}"] for r in table.itertuples()]
    return markdown(["dataset", "learner normalisation", "completed/seeds", "diverged", "final test accuracy",
                     "best (mean)", "meta-loss sd, last 50 steps", "min per run"], rows)


def transfer_markdown(table: pd.DataFrame) -> str:
    """One row per (dataset, teacher normalisation, preset): ours and Willis's short / vanilla / gtn."""
    def willis_cell(row) -> str:
        values = (row.willis_short_gtn, row.willis_vanilla, row.willis_gtn)
        return "-" if pd.isna(values[0]) else " / ".join(f"{v:.2f}" for v in values)
    rows = [[r.dataset, r.normalisation, r.preset, plus_minus(r.short_gtn_mean, r.short_gtn_sd),
             plus_minus(r.vanilla_mean, r.vanilla_sd), plus_minus(r.gtn_mean, r.gtn_sd), willis_cell(r)]
            for r in table.itertuples()]
    return markdown(["dataset", "teacher's learner", "preset", "short_gtn (first 5 steps)", "vanilla (1 epoch Adam)",
                     "gtn (10 steps)", "Willis 10_gtn / vanilla / gtn"], rows)


def robustness_markdown(table: pd.DataFrame) -> str:
    """One row per (dataset, teacher normalisation, corruption, mode): accuracy at each strength."""
    rows = []
    for (dataset, normalisation, corruption, mode), part in table.groupby(
            ["dataset", "normalisation", "corruption", "mode"], sort=False):
        cells = [f"{r.strength:g}: {plus_minus(r.accuracy_mean, r.accuracy_sd, 2)}" for r in part.itertuples()]
        rows.append([dataset, normalisation, corruption, mode, "; ".join(cells)])
    return markdown(["dataset", "teacher's learner", "corruption", "learners", "accuracy at each strength"], rows)


def evaluation_minutes(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: minutes of the COMPLETED transfer and robustness runs (each summed from start to stop) and the
    wall-clock span from the first start to the last stop (`wall`: they run two at a time on 2 workers)."""
    evaluations = runs[runs.name.isin([willis.TRANSFER, willis.ROBUSTNESS]) & (runs.status == "COMPLETED")]
    teachers = runs.set_index("run_id").dataset
    dataset = evaluations.config.map(lambda config: teachers.get(str(config.get("source_run_id"))))
    evaluations = evaluations.assign(dataset=dataset, minutes=evaluations.wall_seconds / 60)
    table = evaluations.groupby(["dataset", "name"]).minutes.sum().unstack(fill_value=0.0)
    spans = evaluations.groupby("dataset").apply(
        lambda group: (group.stop_time.max() - group.start_time.min()).total_seconds() / 60, include_groups=False)
    return table.assign(wall=spans)


def main(argv: list[str] | None = None) -> None:
    """Print the tables, write the CSVs and the results.json entries."""
    args = study_arguments(__doc__, "willis", argv)
    store = results.open_store(runs_dir=args.runs_dir)
    runs = results.load_runs(store)
    teachers = willis.normalisation_runs(runs)
    metrics = results.load_metrics(store, teachers.run_id, names=["test_accuracy", "meta_loss", "step_seconds"])
    normalisation = willis.normalisation_table(teachers, metrics)
    transfer = willis.transfer_table(willis.load_transfer(store, runs))
    robustness = willis.robustness_table(willis.load_robustness(store, runs))
    print("Normalisation\n\n" + normalisation_markdown(normalisation))
    print("\nTransfer\n\n" + transfer_markdown(transfer))
    print("\nRobustness\n\n" + robustness_markdown(robustness))
    minutes = evaluation_minutes(runs)
    print("\nEvaluation minutes (each run start to stop, summed; wall: first start to last stop)\n\n"
          + minutes.round(1).to_string())
    for name, table in (("willis_normalisation", normalisation), ("willis_transfer", transfer),
                        ("willis_robustness", robustness)):
        table.to_csv(args.csv_dir / f"{name}.csv", index=False, float_format="%.5f")
    command = command_line("bench/willis_studies.py", argv)
    entries = [entry(f"normalisation_{r.dataset}_{r.normalisation}_accuracy", round(float(r.accuracy_mean), 4),
                     "accuracy", None, command, note=f"B's shape, 200 outer steps, mean over {r.completed} seed(s), "
                                                     f"{r.diverged} diverged") for r in normalisation.itertuples()]
    for dataset, row in minutes.iterrows():
        entries.append(entry(f"transfer_robustness_{dataset}_minutes", round(float(row.wall), 1), "min", 60.0,
                             command, note="transfer (every preset, 3 modes) + robustness of the batch and "
                                           "weight_mean_only teachers: first start to last stop, 2 runs at a time "
                                           f"({row[willis.TRANSFER] + row[willis.ROBUSTNESS]:.1f} min of runs); "
                                           "other work on the cores inflates it"))
    merge_results(entries, args.results)


if __name__ == "__main__":
    main()
