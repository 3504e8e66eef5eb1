"""How well a cheap proxy ranks architectures: rank correlations with bootstrap intervals, and a proxy-led search."""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Correlation:
    """A rank correlation over `n` architectures with its bootstrap 95% interval."""

    statistic: float
    low: float
    high: float
    n: int


def _checked(proxy: Sequence[float], target: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    proxy, target = np.asarray(proxy, dtype=float), np.asarray(target, dtype=float)
    if proxy.shape != target.shape or proxy.ndim != 1 or proxy.size < 3:
        raise ValueError(f"proxy {proxy.shape} and target {target.shape}: expected two equal 1-D sequences of at "
                         "least 3 scores")
    if not (np.isfinite(proxy).all() and np.isfinite(target).all()):
        raise ValueError("proxy and target: expected finite scores")
    return proxy, target


def _spearman(x, y) -> float:
    return stats.spearmanr(x, y).statistic


def _kendall(x, y) -> float:
    return stats.kendalltau(x, y).statistic


STATISTICS = {"spearman": _spearman, "kendall": _kendall}


def rank_correlation(proxy: Sequence[float], target: Sequence[float], kind: str = "spearman",
                     resamples: int = 2000, seed: int = 0) -> Correlation:
    """Spearman's rho or Kendall's tau (scipy) of `proxy` against `target`, with a paired percentile bootstrap 95%
    interval over architectures (scipy.stats.bootstrap)."""
    if kind not in STATISTICS:
        raise ValueError(f"kind={kind!r}: expected one of {', '.join(STATISTICS)}")
    proxy, target = _checked(proxy, target)
    statistic = STATISTICS[kind](proxy, target)
    # Constant scores have no rank correlation (scipy gives nan): reported without an interval.
    if np.ptp(proxy) == 0 or np.ptp(target) == 0:
        return Correlation(float(statistic), float("nan"), float("nan"), proxy.size)
    with warnings.catch_warnings():
        # A resample of a few architectures can repeat one of them only (a constant input, a nan statistic): the
        # interval is then nan, which is what a handful of architectures deserves; with dozens it does not occur.
        warnings.simplefilter("ignore", (stats.ConstantInputWarning, stats.DegenerateDataWarning))
        result = stats.bootstrap((proxy, target), STATISTICS[kind], paired=True, vectorized=False,
                                 n_resamples=resamples, method="percentile", rng=np.random.default_rng(seed))
    interval = result.confidence_interval
    return Correlation(float(statistic), float(interval.low), float(interval.high), proxy.size)


def top_fraction(proxy: Sequence[float], fraction: float = 0.5) -> np.ndarray:
    """Indices of the best `fraction` of architectures by `proxy` (at least 3), best first."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction!r}: expected a value in (0, 1]")
    order = np.argsort(-np.asarray(proxy, dtype=float), kind="stable")
    return order[:max(3, int(round(fraction * len(order))))]


@dataclass(frozen=True)
class SearchResult:
    """A proxy-led search: the best of the top k by the proxy, fully trained, against the best of all."""

    chosen: int
    chosen_accuracy: float
    best: int
    best_accuracy: float
    proxy_route_seconds: float
    full_route_seconds: float


def search_by_proxy(proxy: Sequence[float], full: Sequence[float], proxy_seconds: Sequence[float],
                    full_seconds: Sequence[float], k: int) -> SearchResult:
    """Rank every architecture by `proxy`, fully train the top `k`, keep the best: its full accuracy and the
    seconds that route spent (every proxy plus k full trainings) against fully training all of them."""
    proxy, full = _checked(proxy, full)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= proxy.size:
        raise ValueError(f"k={k!r}: expected an int in 1..{proxy.size}")
    top = np.argsort(-proxy, kind="stable")[:k]
    chosen = int(top[np.argmax(full[top])])
    best = int(np.argmax(full))
    return SearchResult(chosen, float(full[chosen]), best, float(full[best]),
                        float(np.sum(proxy_seconds) + np.sum(np.asarray(full_seconds)[top])),
                        float(np.sum(full_seconds)))
