"""The NAS proxy: the search space (deterministic, valid, within budget), rank statistics against hand-checked
rankings, the proxy-led search, the Sacred experiment on a smoke teacher, and the smoke study read back by
analysis.nas and the report."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from analysis import nas, results
from conftest import report_on
from experiments import mnist_experiment, nas_proxy, stopping
from experiments.observers import AtomicFileStorageObserver
from experiments.study_plan import NAS_PROXY, progress_of
from gtn_core.data import default_data_root, prepare
from gtn_core.evaluations.ranking import rank_correlation, search_by_proxy, top_fraction
from gtn_core.learners import init_learner
from gtn_core.learners.search_space import MAX_MULTIPLY_ADDS, family_of, multiply_adds, sample_architecture
from gtn_core.learners.presets import PRESETS
from tracking.stores import FileStore

REPO = Path(__file__).resolve().parents[1]


def test_sample_architecture_is_deterministic_valid_and_within_budget():
    images = torch.rand(2, 1, 28, 28) * 2 - 1
    seen = set()
    for seed in range(1000):
        cfg = sample_architecture(seed)
        assert cfg == sample_architecture(seed)
        assert multiply_adds(cfg) <= MAX_MULTIPLY_ADDS
        learner = init_learner(cfg, torch.Generator().manual_seed(seed))
        learner.train()
        with torch.no_grad():
            assert learner(images).shape == (2, 10)
        seen.add((len(cfg.channels), cfg.head, cfg.normalisation))
    assert len(seen) >= 24  # every depth, head and normalisation appears
    assert family_of(sample_architecture(3)).count(",") == 2
    with pytest.raises(ValueError, match="seed=-1: expected a non-negative integer"):
        sample_architecture(-1)


def test_multiply_adds_counts_convs_and_linears():
    # goodai: conv 1->32 at 28x28 (3x3), conv 32->64 at 14x14, linear 64*7*7 -> 10
    assert multiply_adds(PRESETS["goodai"]) == 28 * 28 * 9 * 32 + 14 * 14 * 9 * 32 * 64 + 64 * 49 * 10
    assert multiply_adds(PRESETS["linear"]) == 784 * 256 + 256 * 128 + 128 * 10


def test_rank_correlations_match_hand_computed_values():
    proxy, target = [1, 2, 3, 4, 5], [1, 3, 2, 4, 5]
    # Spearman: 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 2 / 120; Kendall: (9 concordant - 1 discordant) / 10.
    assert rank_correlation(proxy, target).statistic == pytest.approx(0.9)
    assert rank_correlation(proxy, target, "kendall").statistic == pytest.approx(0.8)
    assert rank_correlation(proxy, [5, 4, 3, 2, 1]).statistic == pytest.approx(-1.0)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(60, generator=generator).tolist()
    noisy = [value + 0.5 * float(torch.randn(1, generator=generator)) for value in x]
    result = rank_correlation(x, noisy, resamples=500)
    assert result.low < result.statistic < result.high and result.n == 60 and 0.7 < result.statistic < 1
    with pytest.raises(ValueError, match="kind='pearson': expected one of spearman, kendall"):
        rank_correlation(x, noisy, "pearson")
    with pytest.raises(ValueError, match="expected two equal 1-D sequences"):
        rank_correlation([1, 2, 3], [1, 2])


def test_the_proxy_led_search_trains_the_top_k_and_counts_its_seconds():
    proxy, full = [0.9, 0.1, 0.8, 0.5], [0.95, 0.99, 0.97, 0.96]
    result = search_by_proxy(proxy, full, [1, 1, 1, 1], [10, 20, 30, 40], k=2)
    assert (result.chosen, result.chosen_accuracy, result.best, result.best_accuracy) == (2, 0.97, 1, 0.99)
    assert (result.proxy_route_seconds, result.full_route_seconds) == (4 + 10 + 30, 100)
    assert list(top_fraction(proxy, 0.5)) == [0, 2, 3]  # at least 3
    with pytest.raises(ValueError, match="k=5: expected an int in 1..4"):
        search_by_proxy(proxy, full, [1] * 4, [1] * 4, k=5)


def test_nas_proxy_experiment_scores_every_architecture_on_a_smoke_teacher(tmp_path, mnist_ready):
    env = {**os.environ, "GTN_RUNS_DIR": str(tmp_path), "OMP_NUM_THREADS": "1"}

    def run(script, *words):
        return subprocess.run([sys.executable, f"experiments/{script}", "with", "smoke", "progress=False", *words],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=600)

    assert run("mnist_experiment.py").returncode == 0
    bad = run("nas_proxy.py", "source_run_id=1", "top_k=9")
    assert bad.returncode != 0 and "top_k=9" in bad.stderr
    done = run("nas_proxy.py", "source_run_id=1")
    assert done.returncode == 0, done.stderr[-3000:]
    record = next(r for r in FileStore(tmp_path).records() if r.name == "gtn_nas_proxy" and r.status == "COMPLETED")
    rows = json.loads((tmp_path / record.run_id / "info.json").read_text())["rows"]
    assert [r["architecture"] for r in rows] == [0, 1, 2, 3]
    assert all(0 <= r[key] <= 1 for r in rows for key in ("gtn_proxy", "real_proxy", "real"))
    assert sum("real_long" in r for r in rows) == 2
    assert set(record.result["gtn_proxy"]) == {"spearman_all", "kendall_all", "spearman_top_half", "kendall_top_half"}


def test_an_interrupted_nas_run_resumed_scores_the_rest_as_an_uninterrupted_run(tmp_path, monkeypatch, mnist_ready):
    store = tmp_path / "runs"
    observer = AtomicFileStorageObserver(str(store))
    experiments = (mnist_experiment.ex, nas_proxy.ex)
    for ex in experiments:
        ex.observers.append(observer)
    try:
        mnist_experiment.ex.run(named_configs=["smoke"], config_updates={"progress": False})  # run 1: the teacher

        def nas(**updates):
            return nas_proxy.ex.run(named_configs=["smoke"], config_updates={
                "progress": False, "source_run_id": "1", "source_store": str(store), **updates})

        whole = nas()  # run 2
        save_rows = nas_proxy.save_rows

        def save_then_stop(run, rows, folder):
            save_rows(run, rows, folder)
            if len(rows) == 2:
                signal.raise_signal(signal.SIGTERM)
        with monkeypatch.context() as patch:
            patch.setattr(nas_proxy, "save_rows", save_then_stop)
            with pytest.raises(stopping.Interrupted, match="after architecture 1: 2 rows .* resume_from=3"):
                nas()  # run 3
        record = next(r for r in FileStore(store).records() if r.run_id == "3")
        assert record.status == "INTERRUPTED" and progress_of(FileStore(store), record, NAS_PROXY) == 2
        kept = json.loads((store / "3" / "nas_rows.json").read_text())["rows"]
        resumed = nas(resume_from="3")  # run 4
        assert resumed.info["resumed_from"] == {"run": "3", "architectures": 2}
        assert resumed.info["rows"][:2] == kept  # their seconds included

        def scores(rows):
            return [{key: value for key, value in row.items() if not key.endswith("seconds")} for row in rows]
        assert scores(resumed.info["rows"]) == scores(whole.info["rows"])
        statistics = [{name: value["statistic"] for name, value in run.result["gtn_proxy"].items()}
                      for run in (resumed, whole)]  # their intervals are NaN with 4 architectures
        assert statistics[0] == statistics[1]
        with pytest.raises(ValueError, match="resume_from='4': its 4 rows already cover all 4"):
            nas(resume_from="4")
        with pytest.raises(ValueError, match="resume_from='3': .* top_k: 2 -> 1"):
            nas(resume_from="3", top_k=1)
        with pytest.raises(ValueError, match="resume_from='1': .*'gtn_mnist'"):
            nas(resume_from="1")
    finally:
        for ex in experiments:
            ex.observers.remove(observer)


@pytest.fixture(scope="module")
def nas_study(tmp_path_factory):
    """The smoke NAS study (a C-shaped teacher, then the proxy run ranking 4 architectures) in a file store."""
    prepare("mnist", default_data_root())  # a no-op when `make` prepared it
    runs_dir = tmp_path_factory.mktemp("nas-runs")
    words = ["--study", "nas", "--profile", "smoke", "--only", "c", "--workers", "1", "--runs-dir", str(runs_dir)]
    env = {**os.environ, "GTN_RUNS_DIR": str(runs_dir)}
    done = subprocess.run([sys.executable, "experiments/run_tasks.py", *words], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return SimpleNamespace(runs_dir=runs_dir, stdout=done.stdout)


def test_the_nas_study_trains_a_teacher_then_ranks_architectures_with_it(nas_study):
    runs = FileStore(nas_study.runs_dir).records()
    teacher = next(r for r in runs if r.name == "gtn_mnist")
    proxy = next(r for r in runs if r.name == "gtn_nas_proxy")
    assert proxy.status == "COMPLETED" and proxy.config["source_run_id"] == teacher.run_id
    assert "Spearman GTN proxy" in nas_study.stdout


def test_the_nas_tables_read_every_architecture_and_the_runs_own_statistics(nas_study):
    store = results.open_store(runs_dir=nas_study.runs_dir)
    runs = results.load_runs(store)
    proxy = FileStore(nas_study.runs_dir).records()[-1]
    architectures = nas.load_architectures(store, runs)
    assert list(architectures.columns) == nas.ARCHITECTURE_COLUMNS and architectures.architecture.tolist() == [0, 1, 2, 3]
    assert set(architectures.source_run_id) == {runs[runs.name == results.TRAINING].run_id.iloc[0]}
    assert architectures.real_long.notna().sum() == 2 and set(architectures.dataset) == {"mnist"}
    correlations = nas.correlation_table(store, runs)
    spearman = correlations[(correlations.kind == "spearman") & (correlations.subset == "all")].set_index("proxy")
    assert spearman.statistic.to_dict() == {"gtn_proxy": proxy.result["gtn_proxy"]["spearman_all"]["statistic"],
                                            "real_proxy": proxy.result["real_proxy"]["spearman_all"]["statistic"]}
    assert set(zip(correlations.proxy, correlations.subset, correlations.kind)) == {
        (p, subset, kind) for p in nas.PROXIES for subset in ("all", "top_half") for kind in ("spearman", "kendall")}
    cost = nas.cost_table(architectures, store, runs).set_index("score")
    assert list(cost.index) == list(nas.SCORES) and cost.architectures.tolist() == [4, 4, 4, 2]
    assert cost.speed_up["real"] == 1 and cost.speed_up["gtn_proxy"] == pytest.approx(
        architectures.real_seconds.mean() / architectures.gtn_seconds.mean())
    search = nas.search_table(store, runs).iloc[0]
    assert search.top_k == 2 and search.best_accuracy == architectures.real.max() >= search.chosen_accuracy
    assert search.accuracy_lost == search.best_accuracy - search.chosen_accuracy
    whole = architectures.assign(head="all")  # one group holding every architecture: the run's own statistic
    grouped = nas.group_correlations(whole, "head").set_index("proxy")
    assert grouped.spearman.to_dict() == pytest.approx(spearman.statistic.to_dict())
    assert grouped.architectures.tolist() == [4, 4] and grouped.real_median.iloc[0] == architectures.real.median()


def test_the_report_plots_the_nas_proxies_and_writes_their_tables(nas_study, tmp_path):
    figures, page = report_on(nas_study.runs_dir, tmp_path, ("nas_proxy",), min_width=600)
    assert len(pd.read_csv(figures / "nas_correlations.csv")) == 8
    assert len(pd.read_csv(figures / "nas_cost.csv")) == 4 and len(pd.read_csv(figures / "nas_search.csv")) == 1
    assert "no GAN-study runs in this store" in page
