"""GoodAI's study (`run_tasks.py`: A/B/C x learned / random_fixed / random, each teacher's shuffle ablation) over
seeds and datasets, as one tidy table beside GoodAI's published MNIST values.

    from analysis import goodai, results
    store = results.open_store(runs_dir="bench/stores/goodai")
    runs = results.load_runs(store)
    cells = results.select_runs(runs, teacher="gtn", curriculum="full", normalisation="batch")
    goodai.seed_table(cells, results.load_ablation(store, runs))
"""
from __future__ import annotations

import pandas as pd

from analysis import paired, results

KEYS = ["dataset", "experiment", "variant"]


def seed_table(cells: pd.DataFrame, ablation: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, experiment, variant) of the training runs `cells`: seeds, final test accuracy mean and sd,
    the shuffle drop of their final teachers (learned - shuffled mean accuracy) mean and sd over seeds, the learned
    and shuffled means, and the Wilcoxon test over every seed's paired learners (p, effect size r); GoodAI's
    published accuracy and shuffled median beside the MNIST rows (none published for other datasets)."""
    if cells.empty:
        raise ValueError("no GoodAI-study training runs: expected COMPLETED GTN runs (python experiments/run_tasks.py)")
    final = cells.groupby(KEYS).agg(seeds=("seed", "nunique"), final_mean=("final_accuracy", "mean"),
                                    final_sd=("final_accuracy", "std")).reset_index()
    learners = ablation[ablation.source_run_id.isin(cells.run_id)]
    drops = paired.drop_summary(learners, KEYS, ["seed", "source_run_id"]).rename(columns={"seeds": "ablated_seeds"})
    table = final.merge(drops, on=KEYS, how="left")
    reference = results.REFERENCE.assign(dataset="mnist")
    table = table.merge(reference, on=KEYS, how="left")
    order = {variant: i for i, variant in enumerate(results.VARIANT_ORDER)}
    return table.assign(_order=table.variant.map(order)).sort_values(["dataset", "experiment", "_order"]) \
        .drop(columns="_order").reset_index(drop=True)
