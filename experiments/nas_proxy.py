"""GTN data as a neural-architecture-search proxy (Such et al. 2019, section 4), against an equally cheap real one.

For a finished GTN teacher (a training run of `mnist_experiment.py`) and `architectures` architectures drawn from
the search space (gtn_core.learners.search_space, architecture i = `sample_architecture(arch_seed + i)`):
(a) the GTN proxy: validation accuracy after the teacher's K steps (mean of `gtn_repeats` initialisations);
(b) the target: validation accuracy after `real_epochs` epochs of Adam (batch 128) on real data, and for the first
    `long_count` architectures after `long_epochs` epochs as well;
(c) the cheap real proxy: K real batches of B with Adam (the GTN proxy's budget in steps and images).
Scores are on the last `validation_size` training images, held out from every real-data learner (never the test
set; the teacher itself was meta-trained on the whole training set). The run's info holds one row per
architecture (its config, family, multiply-adds, each score and its seconds); the result holds Spearman's rho and
Kendall's tau of each proxy against (b), over all architectures and over the top 50% by the proxy, with bootstrap
95% intervals, and the proxy-led search: the top `top_k` by the GTN proxy fully trained against the best of all.

The rows scored so far are the artifact `nas_rows.json`, rewritten after every architecture. SIGTERM or SIGINT
(Ctrl-C) stops the run after the current architecture (INTERRUPTED, exit non-zero); `resume_from=<run id>` (an
INTERRUPTED or FAILED run of this config, of this file store or of `resume_store`) keeps its rows, their seconds
included, and scores the rest: every architecture's scores come from its own seeded streams, so they are those of an
uninterrupted run. `run_tasks.py --study nas` resumes such a run by itself.

    python experiments/nas_proxy.py with source_run_id=3
    python experiments/nas_proxy.py with source_run_id=3 architectures=32 long_count=0
    python experiments/nas_proxy.py with source_run_id=3 resume_from=5     # continue interrupted run 5
    python experiments/nas_proxy.py with smoke source_run_id=1
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

from sacred import Experiment
from sacred.utils import apply_backspaces_and_linefeeds
from tqdm import tqdm

from experiments.observers import attach_observers
from experiments.source_teacher import load_source_teacher
from experiments.stopping import Interrupted, StopSignals, file_store_of
from gtn_core.config import config_to_dict
from gtn_core.device import resolve_device
from gtn_core.evaluate import accuracy, meta_test
from gtn_core.evaluations.ranking import rank_correlation, search_by_proxy, top_fraction
from gtn_core.evaluations.training_modes import VanillaTraining, check_count, train_on_real_data
from gtn_core.learners.search_space import family_of, multiply_adds, sample_architecture
from gtn_core.seeds import NAS, seeded_generator, sub_stream
from tracking.stored_config import IGNORED_KEYS, config_differences
from tracking.stores import find_run, open_location

ex = Experiment("gtn_nas_proxy")
ex.captured_out_filter = apply_backspaces_and_linefeeds


@ex.config
def config():
    source_run_id = None  # id of a COMPLETED mnist_experiment run (a GTN teacher) of source_store
    source_store = None  # a file store's folder or a mongodb:// URL; None: $GTN_RUNS_DIR or runs/
    architectures = 64  # architectures drawn from the search space
    arch_seed = 0  # architecture i is sample_architecture(arch_seed + i)
    gtn_repeats = 2  # initialisations averaged by the GTN proxy
    real_epochs = 1.0  # the target: epochs of Adam on real data
    long_epochs = 5.0  # the longer target, for the first long_count architectures
    long_count = 8
    real_batch_size = 128
    real_lr = 1e-3
    validation_size = 10000  # the last N training images: held out from real-data training, score every learner
    top_k = 5  # the proxy-led search fully trains the top k by the GTN proxy
    data_root = None
    device = "auto"
    progress = True
    seed = 0
    resume_from = None  # id of an INTERRUPTED/FAILED run of this config (of resume_store): keep its rows, score the rest
    resume_store = None  # a file store's folder or a mongodb:// URL; None: this run's file store


@ex.named_config
def smoke():
    architectures = 4
    gtn_repeats = 1
    real_epochs = 0.02
    long_epochs = 0.04
    long_count = 2
    validation_size = 500
    top_k = 2


def score(learner, state, images, labels, cfg) -> float:
    """Validation accuracy with the teacher's BatchNorm mode and chunking."""
    return accuracy(learner, state, images, labels, cfg.bn_mode, cfg.eval_batch_size)


def timed(function):
    """(function(), seconds it took)."""
    started = time.perf_counter()
    value = function()
    return value, time.perf_counter() - started


ROWS = "nas_rows.json"


def save_rows(run, rows: list[dict], folder: str) -> None:
    """Attach the rows scored so far as the artifact nas_rows.json (replacing the previous one)."""
    path = Path(folder) / ROWS
    path.write_text(json.dumps({"rows": rows}))
    run.add_artifact(str(path), ROWS, content_type="application/json")


def read_rows(path: Path) -> list[dict]:
    """The rows of a nas_rows.json; ValueError naming the file when it is not one."""
    try:
        rows = json.loads(Path(path).read_text())["rows"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a readable {ROWS} ({error})") from None
    if not isinstance(rows, list) or [row.get("architecture") for row in rows] != list(range(len(rows))):
        raise ValueError(f"{path}: expected the rows of architectures 0, 1, ... in order")
    return rows


def rows_done(path: Path) -> int:
    """How many architectures a nas_rows.json holds (the study runner's progress of a NAS run)."""
    return len(read_rows(path))


def resumed_rows(run, config: dict, run_id, resume_store) -> list[dict]:
    """The rows run `run_id` scored (of `resume_store`, else this run's file store); ValueError naming the run when it
    is no NAS proxy run of this config or left no rows."""
    with contextlib.closing(open_location(resume_store or file_store_of(run))) as store:
        source = find_run(store, run_id)
        if source.name != ex.path:
            raise ValueError(f"resume_from={run_id!r}: run {source.run_id} of the {store.label} is a {source.name!r} "
                             f"run; expected a {ex.path!r} run of this config")
        differences = config_differences(source.config, config, IGNORED_KEYS)
        if differences:
            raise ValueError(f"resume_from={run_id!r}: run {source.run_id} of the {store.label} differs from this "
                             f"config: {'; '.join(differences)}")
        try:
            with store.local_artifact(source.run_id, ROWS) as path:
                return read_rows(path)
        except (KeyError, ValueError) as error:
            raise ValueError(f"resume_from={run_id!r}: {error.args[0]}") from None


def correlations(rows: list[dict], proxy: str, target: str) -> dict:
    """Spearman and Kendall of a proxy column against a target column, over all rows and the top 50% by the proxy."""
    scores = [r[proxy] for r in rows]
    result = {}
    for subset, indices in (("all", range(len(rows))), ("top_half", top_fraction(scores, 0.5))):
        chosen = [rows[i] for i in indices]
        for kind in ("spearman", "kendall"):
            value = rank_correlation([r[proxy] for r in chosen], [r[target] for r in chosen], kind)
            result[f"{kind}_{subset}"] = dataclasses.asdict(value)
    return result


def score_architecture(index: int, arch, teacher, cfg, data, routes: dict, gtn_repeats: int, long: bool,
                       seed: int) -> dict:
    """One architecture's row: its description, both proxies and the real-data target(s), each with its seconds."""
    fit_images, fit_labels, val_images, val_labels = data

    def stream(part: int):
        return seeded_generator(seed, stream=sub_stream(NAS, 100 * index + part))

    def real_score(route: str, part: int) -> tuple[float, float]:
        return timed(lambda: score(*train_on_real_data(arch, fit_images, fit_labels, routes[route], stream(part)),
                                   val_images, val_labels, cfg))

    gtn_scores, gtn_seconds = [], 0.0
    for repeat in range(gtn_repeats):
        value, seconds = timed(lambda: score(*meta_test(teacher, cfg, stream(repeat), learner_cfg=arch),
                                             val_images, val_labels, cfg))
        gtn_scores.append(value)
        gtn_seconds += seconds
    row = {"architecture": index, "family": family_of(arch), "multiply_adds": multiply_adds(arch),
           "config": config_to_dict(arch), "gtn_proxy": statistics.fmean(gtn_scores), "gtn_seconds": gtn_seconds}
    row["real_proxy"], row["real_proxy_seconds"] = real_score("cheap", 50)
    row["real"], row["real_seconds"] = real_score("real", 60)
    if long:
        row["real_long"], row["real_long_seconds"] = real_score("long", 70)
    return row


@ex.main
def main(_run, _config, source_run_id, source_store, architectures, arch_seed, gtn_repeats, real_epochs, long_epochs,
         long_count, real_batch_size, real_lr, validation_size, top_k, data_root, device, progress, seed, resume_from,
         resume_store):
    """Score every architecture by both proxies and the real-data targets (or the rest, resuming); return the rank
    statistics."""
    for name, value in (("architectures", architectures), ("gtn_repeats", gtn_repeats),
                        ("validation_size", validation_size), ("top_k", top_k)):
        check_count(name, value)
    if architectures < 3 or top_k > architectures or not 0 <= long_count <= architectures:
        raise ValueError(f"architectures={architectures}, top_k={top_k}, long_count={long_count}: expected at least "
                         "3 architectures, top_k and long_count at most that many")
    rows = [] if resume_from is None else resumed_rows(_run, dict(_config), resume_from, resume_store)
    if len(rows) >= architectures:
        raise ValueError(f"resume_from={resume_from!r}: its {len(rows)} rows already cover all {architectures} "
                         "architectures; nothing left to score")
    teacher, cfg, data, dataset = load_source_teacher(source_run_id, source_store, data_root, resolve_device(device))
    if validation_size >= data.train_images.shape[0]:
        raise ValueError(f"validation_size={validation_size}: expected fewer than the "
                         f"{data.train_images.shape[0]} training images")
    fit_images, fit_labels = data.train_images[:-validation_size], data.train_labels[:-validation_size]
    split = (fit_images, fit_labels, data.train_images[-validation_size:], data.train_labels[-validation_size:])
    batches = -(-fit_images.shape[0] // cfg.batch_size)
    routes = {"real": VanillaTraining(real_epochs, real_batch_size, real_lr),
              "long": VanillaTraining(long_epochs, real_batch_size, real_lr),
              "cheap": VanillaTraining(cfg.inner_steps / batches, cfg.batch_size, real_lr)}  # K Adam steps of B
    if rows:
        _run.info["resumed_from"] = {"run": str(resume_from), "architectures": len(rows)}
    with tempfile.TemporaryDirectory() as folder, StopSignals() as signals:
        for index in tqdm(range(len(rows), architectures), initial=len(rows), total=architectures,
                          desc="architectures", disable=not progress):
            arch = sample_architecture(arch_seed + index, cfg.learner)
            rows.append(score_architecture(index, arch, teacher, cfg, split, routes, gtn_repeats,
                                           index < long_count, seed))
            save_rows(_run, rows, folder)
            for key in ("gtn_proxy", "real_proxy", "real"):
                _run.log_scalar(key, rows[-1][key], index)
            if signals.received is not None and len(rows) < architectures:
                raise Interrupted(f"{signals.received} after architecture {index}: {len(rows)} rows written to "
                                  f"{ROWS}; continue with resume_from={_run._id}")
    search = search_by_proxy([r["gtn_proxy"] for r in rows], [r["real"] for r in rows],
                             [r["gtn_seconds"] for r in rows], [r["real_seconds"] for r in rows], top_k)
    result = {"gtn_proxy": correlations(rows, "gtn_proxy", "real"),
              "real_proxy": correlations(rows, "real_proxy", "real"), "search": dataclasses.asdict(search),
              "seconds": {key: sum(r[key] for r in rows) for key in ("gtn_seconds", "real_proxy_seconds",
                                                                      "real_seconds")}}
    long_rows = [r for r in rows if "real_long" in r]
    if len(long_rows) >= 3:
        result["real_vs_long"] = dataclasses.asdict(rank_correlation([r["real"] for r in long_rows],
                                                                     [r["real_long"] for r in long_rows]))
    _run.info.update(rows=rows, dataset=dataset, inner_steps=cfg.inner_steps, batch_size=cfg.batch_size)
    return result


if __name__ == "__main__":
    attach_observers(ex)
    ex.run_commandline()
