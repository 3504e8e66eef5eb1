"""Tables of the strength study (issue 18): the shuffle drop of teacher snapshots per configuration lever.

    python experiments/run_tasks.py --study strength --seeds 3 --runs-dir bench/stores/strength
    python bench/strength_study.py                       # the tables of that store (kept in git), as Markdown
    python bench/strength_study.py --runs-dir DIR --csv-dir bench

Reads the store through `analysis.results` and `analysis.strength`; prints every arm at its last snapshot (drop,
Wilcoxon test, final test accuracy and its cost against `cosine`), then one table per hypothesis (each arm against
today's defaults, `cosine`): at every snapshot the drop (learned - shuffled mean accuracy) mean +- sd over seeds,
the learned-order accuracy, the Wilcoxon signed-rank p-value over every seed's paired learners and the effect size
r; then the arm with the largest final drop, against the target (a drop of at least 10 points with p < 0.01 over 3
seeds), the arm closest to GoodAI's drop, the drop with the learned schedule moved with the batches, and the inner
lr / momentum each arm's final teachers learned per step. Writes bench/strength.csv and the headline figures to
bench/results.json.
"""
from __future__ import annotations


import pandas as pd
from record import command_line, entry, merge_results, study_arguments
from willis_studies import markdown, plus_minus

from analysis import results, strength
from experiments.studies import STUDY_OUTER_STEPS

HYPOTHESES = {"1. meta-training length and outer-lr schedule": ("cosine", "constant"),
              "2. one learned inner lr/momentum for all steps": ("cosine", "shared"),
              "3. teacher inputs U(0, 1)": ("cosine", "uniform01"),
              "4a. GoodAI's KL inner loss (cross-entropy / 10: a 10x smaller initial inner lr)": ("cosine", "kl_loss"),
              "4b. GoodAI's outer lr for the generator's weights (0.01; ours 0.001)": ("cosine", "generator_lr"),
              "GoodAI's three choices together": ("cosine", "goodai")}
TARGET_DROP, TARGET_P = 0.10, 0.01


def hypothesis_markdown(table: pd.DataFrame, arms: tuple[str, str]) -> str:
    """One row per snapshot step of one dataset's `table`: the drop and learned-order accuracy of the baseline arm
    (`arms[0]`) beside those of the lever's arm (`arms[1]`), each with its seed count, Wilcoxon p and effect r."""
    def cells(row) -> list[str]:
        if row is None:
            return ["-"] * 5
        return [str(row.seeds), plus_minus(row.drop_mean, row.drop_sd), plus_minus(row.learned_mean, row.learned_sd),
                "-" if pd.isna(row.wilcoxon_p) else f"{row.wilcoxon_p:.2g}",
                "-" if pd.isna(row.effect_size_r) else f"{row.effect_size_r:.2f}"]
    by_arm = {arm: {r.source_step: r for r in table[table.arm == arm].itertuples()} for arm in arms}
    steps = sorted(set(by_arm[arms[0]]) | set(by_arm[arms[1]]))
    rows = [[str(step), *cells(by_arm[arms[0]].get(step)), *cells(by_arm[arms[1]].get(step))] for step in steps]
    header = [f"{arm} {column}" for arm in arms for column in ("seeds", "drop", "learned-order accuracy", "p", "r")]
    return markdown(["outer step", *header], rows)


def summary_markdown(summary: pd.DataFrame) -> str:
    """One row per (dataset, arm) at its last snapshot: drop, orders' accuracies, test, final accuracy and cost."""
    rows = [[r.dataset, r.arm, str(r.source_step), str(r.seeds), plus_minus(r.drop_mean, r.drop_sd),
             plus_minus(r.learned_mean, r.learned_sd), f"{r.shuffled_mean:.3f}", f"{r.wilcoxon_p:.2g} ({r.pairs})",
             f"{r.effect_size_r:.2f}", plus_minus(r.final_accuracy_mean, r.final_accuracy_sd, digits=4),
             "-" if pd.isna(r.accuracy_cost) else f"{r.accuracy_cost:+.4f}", f"{r.wall_minutes:.0f}"]
            for r in summary.itertuples()]
    return markdown(["dataset", "arm", "outer step", "seeds", "shuffle drop", "learned-order accuracy",
                     "shuffled accuracy", "Wilcoxon p (pairs)", "effect r", "final test accuracy",
                     "accuracy cost vs cosine", "wall min per cell"], rows)


def schedule_ablation_markdown(moved: pd.DataFrame) -> str:
    """One row per (dataset, arm, snapshot): the drop with the schedule kept and moved, each with its p."""
    rows = [[r.dataset, r.arm, str(r.source_step), str(r.seeds), plus_minus(r.learned_mean, float("nan")),
             plus_minus(r.kept_drop_mean, r.kept_drop_sd), f"{r.kept_wilcoxon_p:.2g}",
             plus_minus(r.moved_drop_mean, r.moved_drop_sd), f"{r.moved_wilcoxon_p:.2g}"]
            for r in moved.itertuples()]
    return markdown(["dataset", "arm", "outer step", "seeds", "learned-order accuracy", "drop, schedule kept", "p",
                     "drop, schedule moved", "p"], rows)


def schedule_markdown(schedules: pd.DataFrame) -> str:
    """One row per (dataset, outer steps, arm): the mean over seeds of each inner step's lr / momentum."""
    means = schedules.groupby([*strength.KEYS, "inner_step"], sort=False)[["lr", "momentum"]].mean().reset_index()
    steps = sorted(means.inner_step.unique())
    rows = [[dataset, str(outer_steps), arm,
             *[f"{r.lr:.3g} / {r.momentum:.2f}" for r in group.sort_values("inner_step").itertuples()]]
            for (dataset, _, outer_steps, arm), group in means.groupby(strength.KEYS, sort=False)]
    return markdown(["dataset", "outer steps", "arm", *[f"step {step}" for step in steps]], rows)


def length_suffix(outer_steps: int) -> str:
    """'' for the study's own length (2,000 outer steps), '_<N>steps' for another, so that results keep both."""
    return "" if outer_steps == STUDY_OUTER_STEPS["strength"] else f"_{outer_steps}steps"


def main(argv: list[str] | None = None) -> None:
    """Print the tables, write the CSV and the results.json entries."""
    args = study_arguments(__doc__, "strength", argv, committed=True)
    store = results.open_store(runs_dir=args.runs_dir)
    runs = results.load_runs(store)
    teachers = strength.strength_runs(runs)
    ablation = results.load_ablation(store, runs, snapshots=True, moved_schedule=True)
    table = strength.drop_table(teachers, ablation)
    if table.empty:
        raise SystemExit(f"no strength-study runs in the {store.label}: python experiments/run_tasks.py "
                         "--study strength --seeds 3")
    print("\nevery arm at its last snapshot (final test accuracy: all 10,000 test images; cost: cosine's minus the "
          "arm's)\n\n" + summary_markdown(strength.final_summary(teachers, ablation)))
    for (dataset, outer_steps), measured in table.groupby(["dataset", "outer_steps"], sort=False):
        for title, arms in HYPOTHESES.items():
            if arms[1] in set(measured.arm):
                print(f"\n{title} ({dataset}, {outer_steps} outer steps)\n\n" + hypothesis_markdown(measured, arms))
    final = strength.last_snapshots(table)
    best = final.sort_values("drop_mean", ascending=False).iloc[0]
    met = best.drop_mean >= TARGET_DROP and best.wilcoxon_p < TARGET_P and best.seeds >= 3
    print(f"\nlargest final drop: {best.arm} ({best.dataset}) {best.drop_mean:.3f} at step {best.source_step} of "
          f"{best.outer_steps}, p {best.wilcoxon_p:.2g}, {best.seeds} seeds: "
          f"target (>= {TARGET_DROP}, p < {TARGET_P}, 3 seeds) " + ("met" if met else "not met"))
    for r in strength.closest_to_goodai(table).itertuples():
        print(f"closest to GoodAI's drop ({r.goodai_drop:.3f} at accuracy {r.goodai_accuracy:.3f}, {r.dataset} "
              f"{r.experiment}): {r.arm}, drop {plus_minus(r.drop_mean, r.drop_sd)} at learned-order accuracy "
              f"{plus_minus(r.learned_mean, r.learned_sd)} (step {r.source_step}, {r.seeds} seed(s))")
    moved = strength.schedule_table(teachers, ablation)
    if not moved.empty:
        print("\nthe shuffle drop with the learned per-step lr/momentum kept in time order and moved with the batches\n\n"
              + schedule_ablation_markdown(moved))
    schedules = strength.learned_schedules(store, teachers)
    print("\nthe learned inner lr / momentum per step (mean over seeds), final teachers\n\n" + schedule_markdown(schedules))
    table.to_csv(args.csv_dir / "strength.csv", index=False, float_format="%.5f")
    command = command_line("bench/strength_study.py", argv)
    merge_results([entry(f"strength_{r.dataset}_{r.arm}{length_suffix(r.outer_steps)}_final_drop",
                         round(float(r.drop_mean), 4), "accuracy", TARGET_DROP, command,
                         note=f"outer step {r.source_step}, {r.seeds} seed(s), "
                              f"Wilcoxon p {r.wilcoxon_p:.2g} over {r.pairs} pairs")
                   for r in final.itertuples()], args.results)


if __name__ == "__main__":
    main()
