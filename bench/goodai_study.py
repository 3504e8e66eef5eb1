"""Tables of GoodAI's study over seeds and datasets (issue 18): MNIST and Fashion-MNIST side by side.

    python experiments/run_tasks.py --seeds 1 --workers 2 --runs-dir bench/stores/goodai              # A/B/C, seed 0
    python experiments/run_tasks.py --only c --seeds 3 --workers 2 --runs-dir bench/stores/goodai     # C, 3 seeds
    python experiments/run_tasks.py --dataset fashion_mnist --seeds 1 --workers 2 --runs-dir bench/stores/goodai
    python experiments/run_tasks.py --dataset fashion_mnist --only c --seeds 3 --workers 2 --runs-dir bench/stores/goodai
    python bench/goodai_study.py                         # the tables of that store (kept in git), as Markdown

Reads the store through `analysis.results` and `analysis.goodai`; prints per dataset one row per (experiment,
variant): seeds, final test accuracy mean +- sd, the shuffle drop of the final teachers (learned - shuffled mean
accuracy of their 100 + 100 paired learners) mean +- sd over seeds, the shuffled mean, the Wilcoxon signed-rank p
over every seed's pairs and the effect size r, beside GoodAI's published MNIST values; then the minutes the study's
runs took (each run's start to stop, summed: training and ablations). Writes bench/goodai_study.csv and the
headline figures to bench/results.json.
"""
from __future__ import annotations

import pandas as pd
from record import command_line, entry, merge_results, study_arguments
from willis_studies import markdown, plus_minus

from analysis import goodai, results


def dataset_markdown(table: pd.DataFrame) -> str:
    """One row per (experiment, variant) of one dataset."""
    rows = [[r.experiment, r.variant, str(r.seeds), plus_minus(r.final_mean, r.final_sd, 4),
             plus_minus(r.drop_mean, r.drop_sd), "-" if pd.isna(r.shuffled_mean) else f"{r.shuffled_mean:.3f}",
             "-" if pd.isna(r.wilcoxon_p) else f"{r.wilcoxon_p:.2g} ({int(r.pairs)} pairs)",
             "-" if pd.isna(r.effect_size_r) else f"{r.effect_size_r:.2f}",
             "-" if pd.isna(r.reference_accuracy) else f"{r.reference_accuracy:.3f}",
             "-" if pd.isna(r.reference_shuffled_median) else f"{r.reference_shuffled_median:.2f}"]
            for r in table.itertuples()]
    return markdown(["experiment", "variant", "seeds", "final test accuracy", "shuffle drop", "shuffled mean",
                     "Wilcoxon p", "effect r", "GoodAI accuracy", "GoodAI shuffled median"], rows)


def study_minutes(runs: pd.DataFrame, cells: pd.DataFrame, ablation: pd.DataFrame) -> pd.Series:
    """Minutes per dataset: the chosen training runs and the ablations of their teachers, start to stop, summed."""
    ablated = ablation[ablation.source_run_id.isin(cells.run_id)][["run_id", "dataset"]].drop_duplicates()
    ablated = ablated.merge(runs[["run_id", "wall_seconds"]], on="run_id")
    return pd.concat([cells[["dataset", "wall_seconds"]], ablated[["dataset", "wall_seconds"]]]) \
        .groupby("dataset").wall_seconds.sum() / 60


def main(argv: list[str] | None = None) -> None:
    """Print the tables, write the CSV and the results.json entries."""
    args = study_arguments(__doc__, "goodai", argv, committed=True)
    store = results.open_store(runs_dir=args.runs_dir)
    runs = results.load_runs(store)
    cells = results.select_runs(runs, teacher="gtn", curriculum="full", normalisation=results.DEFAULT_NORMALISATION)
    if cells.empty:
        raise SystemExit(f"no GoodAI-study runs in the {store.label}: python experiments/run_tasks.py --runs-dir "
                         f"{args.runs_dir}")
    ablation = results.load_ablation(store, runs)
    table = goodai.seed_table(cells, ablation)
    minutes = study_minutes(runs, cells, ablation)
    for dataset, rows in table.groupby("dataset", sort=False):
        print(f"\n{dataset}: {minutes[dataset]:.0f} minutes of runs\n\n" + dataset_markdown(rows))
    table.to_csv(args.csv_dir / "goodai_study.csv", index=False, float_format="%.5f")
    command = command_line("bench/goodai_study.py", argv)
    merge_results([entry(f"goodai_{r.dataset}_{r.experiment}_{r.variant}_shuffle_drop", round(float(r.drop_mean), 4),
                         "accuracy", None, command, note=f"{r.seeds} seed(s), final accuracy {r.final_mean:.4f}, "
                                                         f"Wilcoxon p {r.wilcoxon_p:.2g} over {r.pairs} pairs")
                   for r in table.itertuples() if not pd.isna(r.drop_mean)], args.results)


if __name__ == "__main__":
    main()
