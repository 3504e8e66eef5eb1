"""The NAS-proxy study (Such et al. 2019, section 4; `experiments/nas_proxy.py`) as tidy pandas DataFrames.

    from analysis import nas, results
    store = results.open_store(runs_dir="runs")
    runs = results.load_runs(store)
    architectures = nas.load_architectures(store, runs)   # one row per (run, architecture): scores and seconds
    nas.correlation_table(store, runs)                     # Spearman / Kendall of each proxy, with 95% intervals
    nas.cost_table(architectures, store, runs)             # seconds per architecture of each score, speed-ups
    nas.search_table(store, runs)                          # the proxy-led search against the best of all
    nas.group_correlations(architectures, "normalisation")  # Spearman of each proxy within each normalisation

A NAS run names its teacher as the shuffle ablation does (`source_run_id` in `source_store`), resolved by
`results.source_of`; each row carries the teacher's id and dataset. The correlations are the run's own result
(computed by `gtn_core.evaluations.ranking` when it ran), never recomputed here; `group_correlations` computes the
same statistic within each group of architectures (a breakdown the run does not hold).
"""
from __future__ import annotations

import pandas as pd

from analysis import results
from gtn_core.evaluations.ranking import rank_correlation
from tracking.stores import find_run

NAS_PROXY = "gtn_nas_proxy"
PROXIES = ("gtn_proxy", "real_proxy")  # the GTN's K steps, and K real Adam batches of B (the same budget)
# Each architecture's scores, cheapest first, and the column of the seconds each took.
SECONDS = {"gtn_proxy": "gtn_seconds", "real_proxy": "real_proxy_seconds", "real": "real_seconds",
           "real_long": "real_long_seconds"}
SCORES = tuple(SECONDS)
ARCHITECTURE_COLUMNS = ["run_id", "source_run_id", "dataset", "architecture", "family", "depth", "head",
                        "normalisation", "multiply_adds",
                        *[column for item in SECONDS.items() for column in item]]
CORRELATION_COLUMNS = ["run_id", "dataset", "proxy", "subset", "kind", "statistic", "low", "high", "n"]


def nas_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The COMPLETED NAS-proxy runs, oldest first."""
    return runs[(runs.name == NAS_PROXY) & (runs.status == "COMPLETED")].sort_values("start_time", kind="stable")


def teachers_of(store: results.Store, runs: pd.DataFrame) -> dict[str, tuple[str | None, str | None]]:
    """Per COMPLETED NAS run: (its teacher's store id, None where the store lacks the teacher; the dataset, from the
    run's info)."""
    training = runs[runs.name == results.TRAINING].sort_values("start_time", kind="stable")
    teachers = list(training.itertuples())
    in_mongo = isinstance(store, results.MongoStore)
    return {run.run_id: (results.source_of(run, teachers, in_mongo), store.info(run.run_id).get("dataset"))
            for run in nas_runs(runs).itertuples()}


def load_architectures(store: results.Store, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per architecture of every COMPLETED NAS run: family (and its parts: conv depth, head, normalisation),
    multiply-adds, each score (`SCORES`; real_long NaN outside the long subset) and its seconds, with the run's id
    and its teacher's id and dataset."""
    frames = []
    for run_id, (source, dataset) in teachers_of(store, runs).items():
        rows = store.info(run_id).get("rows")
        if not rows:
            raise ValueError(f"{NAS_PROXY} run {run_id} of the {store.label} is COMPLETED but its info has no rows")
        frame = pd.DataFrame(rows)
        frames.append(frame.assign(run_id=run_id, source_run_id=source, dataset=dataset,
                                   depth=frame.config.map(lambda config: len(config["channels"])),
                                   head=frame.config.map(lambda config: config["head"]),
                                   normalisation=frame.config.map(lambda config: config["normalisation"])))
    if not frames:
        return pd.DataFrame(columns=ARCHITECTURE_COLUMNS)
    rows = pd.concat(frames, ignore_index=True).reindex(columns=ARCHITECTURE_COLUMNS)
    return rows.astype({column: "float64" for item in SECONDS.items() for column in item})


def correlation_table(store: results.Store, runs: pd.DataFrame) -> pd.DataFrame:
    """Per NAS run, proxy (`PROXIES`), subset (all, top_half by the proxy) and kind (spearman, kendall): the rank
    correlation against one real epoch with its bootstrap 95% interval and the architectures it counts (the run's
    result); the real epoch against the longer training (proxy "real", subset "long") where the run has it."""
    rows = []
    for run_id, (_, dataset) in teachers_of(store, runs).items():
        result = find_run(store, run_id).result
        for proxy in PROXIES:
            for key, value in result[proxy].items():
                kind, subset = key.split("_", 1)
                rows.append({"run_id": run_id, "dataset": dataset, "proxy": proxy, "subset": subset, "kind": kind,
                             **value})
        if "real_vs_long" in result:
            rows.append({"run_id": run_id, "dataset": dataset, "proxy": "real", "subset": "long", "kind": "spearman",
                         **result["real_vs_long"]})
    return pd.DataFrame(rows, columns=CORRELATION_COLUMNS)


def group_correlations(architectures: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per NAS run, value of the architecture column `by` (normalisation, head, depth) and proxy: Spearman's rho of
    the proxy against one real epoch within that group, with its bootstrap 95% interval, and the group's median
    scores."""
    rows = []
    for (run_id, group_value), group in architectures.groupby(["run_id", by], sort=True):
        for proxy in PROXIES:
            value = rank_correlation(group[proxy].tolist(), group.real.tolist()) if len(group) >= 3 else None
            rows.append({"run_id": run_id, by: group_value, "proxy": proxy, "architectures": len(group),
                         **{key: getattr(value, name, float("nan")) for key, name in
                            (("spearman", "statistic"), ("low", "low"), ("high", "high"))},
                         "proxy_median": group[proxy].median(), "real_median": group.real.median()})
    return pd.DataFrame(rows)


def cost_table(architectures: pd.DataFrame, store: results.Store, runs: pd.DataFrame) -> pd.DataFrame:
    """Per NAS run and score: architectures scored, mean seconds per architecture, the target's seconds over that
    (the speed-up of scoring by it instead of one real epoch) and its Spearman rho against the epoch (over all
    architectures, the longer training over its subset; 1 for the epoch itself)."""
    rho = correlation_table(store, runs)
    rho = rho[rho.kind == "spearman"].set_index(["run_id", "proxy", "subset"]).statistic
    against = {"gtn_proxy": ("gtn_proxy", "all"), "real_proxy": ("real_proxy", "all"), "real_long": ("real", "long")}
    rows = []
    for run_id, group in architectures.groupby("run_id", sort=False):
        target = group.real_seconds.mean()
        for score in SCORES:
            seconds = group[SECONDS[score]]
            rows.append({"run_id": run_id, "dataset": group.dataset.iloc[0], "score": score,
                         "architectures": int(seconds.notna().sum()), "seconds_each": seconds.mean(),
                         "speed_up": target / seconds.mean(),
                         "spearman_vs_real": 1.0 if score == "real" else rho.get((run_id, *against[score]),
                                                                                  float("nan"))})
    return pd.DataFrame(rows)


def search_table(store: results.Store, runs: pd.DataFrame) -> pd.DataFrame:
    """Per NAS run: the proxy-led search (the top k by the GTN proxy fully trained; `top_k` from the run's config)
    against the best of every architecture fully trained: both accuracies, the seconds of each route and the
    saving."""
    rows = []
    for run_id, (_, dataset) in teachers_of(store, runs).items():
        record = find_run(store, run_id)
        search = record.result["search"]
        rows.append({"run_id": run_id, "dataset": dataset, "top_k": record.config.get("top_k"), **search,
                     "accuracy_lost": search["best_accuracy"] - search["chosen_accuracy"],
                     "seconds_saved": 1 - search["proxy_route_seconds"] / search["full_route_seconds"]})
    return pd.DataFrame(rows)
