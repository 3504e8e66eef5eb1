"""Tables and wall times of the NAS-proxy study and the GAN study (issue 16), from one study store.

    python experiments/run_tasks.py --study nas --runs-dir bench/out/nas_gan
    python experiments/run_tasks.py --study gan --seeds 3 --runs-dir bench/out/nas_gan
    python bench/nas_gan_studies.py                      # the tables of that store, as Markdown
    python bench/nas_gan_studies.py --runs-dir DIR --csv-dir bench

Reads the store through `analysis.results` and `analysis.nas`; prints the NAS proxy's rank correlations with their
bootstrap intervals, the seconds per architecture of each score and the proxy-led search, then the GAN study's
table (final test accuracy mean +- sd over seeds per teacher) and every study's minutes (start to stop of its runs,
with the runs each resumed from; other work on the same cores inflates them; target for the NAS study: 1.5 hours on
2 cores). Writes the tables as CSVs and the headline figures to bench/results.json.
"""
from __future__ import annotations


import pandas as pd
from record import command_line, entry, merge_results, study_arguments
from willis_studies import markdown, plus_minus

from analysis import nas, results

NAS_TARGET_MINUTES = 90.0


def correlation_markdown(table: pd.DataFrame) -> str:
    """One row per (NAS run, proxy, subset): Spearman and Kendall with their 95% intervals."""
    rows = []
    for (run_id, dataset, proxy, subset), part in table.groupby(["run_id", "dataset", "proxy", "subset"], sort=False):
        cells = {r.kind: f"{r.statistic:.3f} [{r.low:.3f}, {r.high:.3f}]" for r in part.itertuples()}
        rows.append([run_id, dataset, proxy, subset, str(part.n.iloc[0]), cells.get("spearman", "-"),
                     cells.get("kendall", "-")])
    return markdown(["NAS run", "dataset", "proxy", "architectures", "n", "Spearman rho [95% CI]",
                     "Kendall tau [95% CI]"], rows)


def cost_markdown(table: pd.DataFrame) -> str:
    """One row per (NAS run, score): seconds per architecture, speed-up over one real epoch, rho against it."""
    rows = [[r.run_id, r.score, str(r.architectures), f"{r.seconds_each:.2f}", f"{r.speed_up:.1f}x",
             "-" if pd.isna(r.spearman_vs_real) else f"{r.spearman_vs_real:.3f}"] for r in table.itertuples()]
    return markdown(["NAS run", "score", "architectures", "seconds each", "speed-up over 1 real epoch",
                     "Spearman vs 1 real epoch"], rows)


def group_markdown(table: pd.DataFrame, by: str) -> str:
    """One row per (NAS run, group, proxy): Spearman within the group with its 95% interval and median scores."""
    rows = [[r.run_id, str(getattr(r, by)), r.proxy, str(r.architectures),
             f"{r.spearman:.3f} [{r.low:.3f}, {r.high:.3f}]", f"{r.proxy_median:.3f}", f"{r.real_median:.3f}"]
            for r in table.itertuples()]
    return markdown(["NAS run", by, "proxy", "n", "Spearman rho [95% CI]", "median proxy", "median real epoch"],
                    rows)


def search_markdown(table: pd.DataFrame) -> str:
    """One row per NAS run: the proxy-led search against the best of every architecture."""
    rows = [[r.run_id, str(r.top_k), f"{r.chosen} ({r.chosen_accuracy:.4f})", f"{r.best} ({r.best_accuracy:.4f})",
             f"{r.proxy_route_seconds / 60:.1f}", f"{r.full_route_seconds / 60:.1f}", f"{100 * r.seconds_saved:.0f}%"]
            for r in table.itertuples()]
    return markdown(["NAS run", "top k trained", "chosen (accuracy)", "best of all (accuracy)", "proxy route min",
                     "full route min", "saved"], rows)


def gan_markdown(table: pd.DataFrame) -> str:
    """One row per (shape, teacher) of the GAN study."""
    rows = [[r.experiment, r.teacher, str(r.seeds), plus_minus(r.accuracy_mean, r.accuracy_sd, 4),
             f"{r.wall_minutes:.1f}"] for r in table.itertuples()]
    return markdown(["shape", "teacher", "seeds", "final test accuracy", "min per run"], rows)


def study_minutes(store: results.Store, runs: pd.DataFrame) -> dict[str, float]:
    """Minutes (sum of start-to-stop, with the runs each resumed from) of the COMPLETED runs of each study: nas (its
    teacher and the proxy runs), gan (the DCGAN and the GAN study's teacher arms)."""
    completed = runs[runs.status == "COMPLETED"]
    teachers = {source for source, _ in nas.teachers_of(store, runs).values()}
    gan_arms = set(results.gan_runs(results.select_runs(runs, latest=False)).run_id)
    studies = {"nas": completed[(completed.name == nas.NAS_PROXY) | completed.run_id.isin(teachers)],
               "gan": completed[completed.run_id.isin(gan_arms) | (completed.name == "gtn_gan")]}
    minutes = {study: part.wall_seconds.sum() / 60 for study, part in studies.items()}
    return {study: value for study, value in minutes.items() if value > 0}


def main(argv: list[str] | None = None) -> None:
    """Print the tables, write the CSVs and the results.json entries."""
    args = study_arguments(__doc__, "nas_gan", argv)
    store = results.open_store(runs_dir=args.runs_dir)
    runs = results.load_runs(store)
    runs = runs.assign(wall_seconds=results.chain_wall_seconds(store, runs))  # a resumed run's cost, whole
    command = command_line("bench/nas_gan_studies.py", argv)
    entries, tables = [], {}
    architectures = nas.load_architectures(store, runs)
    if architectures.empty:
        print("no NAS-proxy runs in the store: python experiments/run_tasks.py --study nas")
    else:
        tables["nas_correlations"] = correlations = nas.correlation_table(store, runs)
        tables["nas_cost"] = cost = nas.cost_table(architectures, store, runs)
        tables["nas_search"] = search = nas.search_table(store, runs)
        tables["nas_by_normalisation"] = by_norm = nas.group_correlations(architectures, "normalisation")
        tables["nas_architectures"] = architectures
        print("NAS proxy: rank correlations against one real epoch\n\n" + correlation_markdown(correlations))
        print("\nCost per architecture\n\n" + cost_markdown(cost))
        print("\nProxy-led search\n\n" + search_markdown(search))
        print("\nWithin each learner normalisation\n\n" + group_markdown(by_norm, "normalisation"))
        newest = correlations[(correlations.run_id == correlations.run_id.iloc[-1]) &
                              (correlations.kind == "spearman")]
        for row in newest.itertuples():
            entries.append(entry(f"nas_{row.proxy}_spearman_{row.subset}", round(float(row.statistic), 4), "rho",
                                 None, command, note=f"{row.n} architectures, bootstrap 95% interval "
                                                     f"[{row.low:.3f}, {row.high:.3f}]"))
        speed = cost[(cost.run_id == cost.run_id.iloc[-1]) & (cost.score == "gtn_proxy")].speed_up.iloc[0]
        entries.append(entry("nas_gtn_proxy_speed_up", round(float(speed), 2), "x", None, command,
                             note="seconds of one real epoch over seconds of the GTN proxy, per architecture"))
    gan_table = results.baselines_table(results.select_runs(runs, latest=False), arms=results.gan_runs)
    if gan_table.empty:
        print("\nno GAN-study runs in the store: python experiments/run_tasks.py --study gan --seeds 3")
    else:
        tables["gan_study"] = gan_table
        print("\nGAN study\n\n" + gan_markdown(gan_table))
        entries += [entry(f"gan_study_{r.experiment}_{r.teacher}_accuracy", round(float(r.accuracy_mean), 4),
                          "accuracy", None, command, note=f"mean over {r.seeds} seed(s)")
                    for r in gan_table.itertuples()]
    minutes = study_minutes(store, runs)
    print("\nStudy minutes (start to stop, summed over runs)\n\n" +
          "\n".join(f"{study}: {value:.1f}" for study, value in minutes.items()))
    if "nas" in minutes:
        entries.append(entry("nas_study_minutes", round(minutes["nas"], 1), "min", NAS_TARGET_MINUTES, command,
                             note="the teacher's training plus the NAS-proxy run, start to stop"))
    if "gan" in minutes:
        entries.append(entry("gan_study_minutes", round(minutes["gan"], 1), "min", None, command,
                             note="the DCGAN plus every teacher arm, summed start to stop (cells ran 2 at a time)"))
    for name, table in tables.items():
        table.drop(columns=[c for c in ("config",) if c in table]).to_csv(
            args.csv_dir / f"{name}.csv", index=False, float_format="%.5f")
    merge_results(entries, args.results)


if __name__ == "__main__":
    main()
