"""The tuned-SGD baseline: plain SGD on K real batches of B with the best constant lr and momentum of a grid.

Each (lr, momentum) of the grid trains `repeats` fresh learners on K real batches of B (the training run's shape
and learner) and scores them on `validation_size` training images held out from those batches; the best point by
mean validation accuracy is then scored on the test set by `test_repeats` fresh learners. Every grid point is logged
(`validation_accuracy`, one value per point, in grid order; `learner_test_accuracy`, one per test learner) and
kept in the run's info (`grid`); the result is the mean test accuracy of the chosen point.

    python experiments/tuned_sgd.py with experiment_b
    python experiments/tuned_sgd.py with experiment_a seed=2 'lrs=[0.1, 0.3]' 'momenta=[0.0, 0.9]'
    python experiments/tuned_sgd.py with smoke
    python experiments/tuned_sgd.py print_config
"""
from __future__ import annotations

import statistics
import warnings

warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

from sacred import Experiment
from sacred.utils import apply_backspaces_and_linefeeds

from experiments.dataclass_config import DataclassConfig, core_config
from experiments.observers import attach_observers, mongo_option
from experiments.shapes import SMOKE, add_shape_configs
from gtn_core.data import default_data_root, load_dataset
from gtn_core.device import resolve_device
from gtn_core.meta import to_real_data
from gtn_core.sgd_grid import SGDGridConfig, score_on_test, search_grid

ex = Experiment("gtn_tuned_sgd", additional_cli_options=[mongo_option])
ex.captured_out_filter = apply_backspaces_and_linefeeds
ex.configurations.append(DataclassConfig(SGDGridConfig()))
# smoke: the training smoke profile's shape and learner, two grid values each and two learners per point.
add_shape_configs(ex, smoke={**{key: SMOKE[key] for key in ("batch_size", "inner_steps", "learner")},
                             "lrs": [0.03, 0.3], "momenta": [0.0, 0.9], "repeats": 2, "test_repeats": 2,
                             "validation_size": 1000})


@ex.config
def config():
    dataset = "mnist"  # mnist | fashion_mnist
    data_root = None  # None: $GTN_DATA_DIR or <repo>/data
    progress = True  # print each grid point's validation accuracy


@ex.main
def main(_run, _config, dataset, data_root, progress):
    """Search the grid on the validation split, score the best point on the test set, return its mean accuracy."""
    grid = core_config(_config, SGDGridConfig)
    device = resolve_device(grid.device)
    data = to_real_data(load_dataset(dataset, data_root or default_data_root()), device)
    points = []
    for point in search_grid(grid, data):
        points.append(point)
        _run.log_scalar("validation_accuracy", point.mean, len(points))
        if progress:
            print(f"lr {point.lr:g} momentum {point.momentum:g}: validation {point.mean:.4f}")
    best = max(points, key=lambda point: point.mean)
    tested = score_on_test(grid, data, best)
    for repeat, score in enumerate(tested.accuracies):
        _run.log_scalar("learner_test_accuracy", score, repeat)
    _run.info.update(grid=[{"lr": p.lr, "momentum": p.momentum, "validation_accuracy": p.mean} for p in points],
                     best_lr=best.lr, best_momentum=best.momentum, validation_accuracy=best.mean,
                     test_accuracy_sd=statistics.stdev(tested.accuracies) if len(tested.accuracies) > 1 else 0.0,
                     teacher="tuned_sgd", device=str(device))
    return tested.mean


if __name__ == "__main__":
    attach_observers(ex)
    ex.run_commandline()
