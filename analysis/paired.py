"""Paired comparisons of ablation learners (the same initialisation and curriculum, learned vs shuffled order)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats


def paired_test(learned, shuffled) -> dict:
    """Wilcoxon signed-rank test (scipy) of paired accuracies: pairs, the median paired drop (learned - shuffled),
    the two-sided p-value and the effect size r = |z| / sqrt(pairs) (z from the normal approximation), positive when
    the learned order wins (the median drop's sign)."""
    learned, shuffled = np.asarray(learned, dtype=float), np.asarray(shuffled, dtype=float)
    if learned.shape != shuffled.shape or learned.ndim != 1:
        raise ValueError(f"learned {learned.shape} and shuffled {shuffled.shape}: expected two equal 1-D arrays")
    differences = learned - shuffled
    result = {"pairs": int(differences.size), "median_drop": float(np.median(differences)) if differences.size else
              math.nan, "wilcoxon_p": math.nan, "effect_size_r": math.nan}
    if differences.size < 2 or not np.any(differences):
        return result  # no test without pairs that differ
    test = stats.wilcoxon(learned, shuffled, method="approx")
    # Two-sided, scipy's z is that of the smaller signed-rank sum (never positive): the sign comes from the drop.
    sign = math.copysign(1.0, result["median_drop"]) if result["median_drop"] else 0.0
    result.update(wilcoxon_p=float(test.pvalue),
                  effect_size_r=sign * abs(float(test.zstatistic)) / math.sqrt(differences.size))
    return result


def ablation_tests(ablation: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """`paired_test` per group of `by` over the ablation's learners (rows of `results.load_ablation`), each pair
    matched by (ablation run, repeat)."""
    rows = []
    for key, group in ablation.groupby(by, dropna=False):
        pairs = group.pivot_table(index=["run_id", "repeat"], columns="order", values="accuracy").dropna()
        if not {"learned", "shuffled"} <= set(pairs.columns):
            continue
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))),
                     **paired_test(pairs.learned, pairs.shuffled)})
    return pd.DataFrame(rows, columns=[*by, "pairs", "median_drop", "wilcoxon_p", "effect_size_r"])


def order_drops(learners: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group of `by` (one teacher each: its ablation learners, rows of `results.load_ablation`): the mean
    accuracy in the learned and the shuffled order, the drop (learned - shuffled means) and `ablation_tests`."""
    if learners.empty:
        return pd.DataFrame(columns=[*by, "learned_accuracy", "shuffled_accuracy", "drop", "pairs", "median_drop",
                                     "wilcoxon_p", "effect_size_r"])
    means = learners.pivot_table(index=by, columns="order", values="accuracy", aggfunc="mean") \
        .rename(columns=lambda order: f"{order}_accuracy").reset_index()
    means["drop"] = means.learned_accuracy - means.shuffled_accuracy
    return means.merge(ablation_tests(learners, by), on=by, how="left")


def drop_summary(learners: pd.DataFrame, by: list[str], teacher: list[str]) -> pd.DataFrame:
    """Per group of `by`, over its teachers (`by` + `teacher` names one, with its "seed"): seeds, the drop's mean
    and sd, the learned-order accuracy's mean and sd, the shuffled mean, and the Wilcoxon test over every teacher's
    paired learners together (p, effect size r); ValueError when `teacher` lacks "seed"."""
    if "seed" not in teacher:
        raise ValueError(f"teacher={teacher!r}: expected the columns naming a teacher, \"seed\" among them")
    per_teacher = order_drops(learners, [*by, *teacher])
    stats_ = per_teacher.groupby(by).agg(
        seeds=("seed", "nunique"), drop_mean=("drop", "mean"), drop_sd=("drop", "std"),
        learned_mean=("learned_accuracy", "mean"), learned_sd=("learned_accuracy", "std"),
        shuffled_mean=("shuffled_accuracy", "mean")).reset_index()
    return stats_.merge(ablation_tests(learners, by), on=by, how="left")
