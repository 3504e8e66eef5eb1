"""What a training checkpoint costs: size and seconds of writing `training.pt`, against the outer steps it covers.

    python bench/checkpoint_overhead.py                    # Experiment A, learned inputs, checkpoint every 25 steps
    python bench/checkpoint_overhead.py --experiment c --repeats 10

Builds the training experiment's state after a few outer steps (Adam's moments filled in), then times, alternating
with outer steps, what a checkpoint does in a run: `save_training_state` into a temporary folder and the file
store's atomic copy (`experiments.observers.AtomicFileStorageObserver`: copy beside the target, then os.replace).
The overhead is the checkpoint's median seconds over `checkpoint_every` median outer steps (the default
`checkpoint_every` is the evaluation cadence, 25). Prints the figures and merges them into bench/results.json.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from record import command_line, entry, merge_results

SHAPES = {"a": (32, 20), "b": (32, 10), "c": (16, 10)}
TARGET_SHARE = 0.02  # issue target: under 2% of an outer step at Experiment A


def main(argv: list[str] | None = None) -> None:
    """Time checkpoints and outer steps alternately; report the share."""
    import torch

    from gtn_core.checkpoint import save_training_state
    from gtn_core.config import GTNConfig
    from gtn_core.data import default_data_root, load_dataset
    from gtn_core.meta import MetaTrainer, to_real_data
    from gtn_core.teachers import build_teacher

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", choices=sorted(SHAPES), default="a")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--every", type=int, default=GTNConfig.eval_every, help="outer steps per checkpoint")
    args = parser.parse_args(argv)
    batch_size, inner_steps = SHAPES[args.experiment]
    cfg = GTNConfig(batch_size=batch_size, inner_steps=inner_steps)
    data = to_real_data(load_dataset("mnist", default_data_root()), torch.device("cpu"))
    trainer = MetaTrainer(build_teacher(cfg), cfg, data)
    records = trainer.records()
    next(records)  # Adam's moments exist from the first step on
    steps, checkpoints = [], []
    with tempfile.TemporaryDirectory() as scratch, tempfile.TemporaryDirectory() as store:
        for _ in range(args.repeats):
            started = time.perf_counter()
            path = save_training_state(trainer.state_dict(), cfg, Path(scratch) / "training.pt")
            handle, temporary = tempfile.mkstemp(dir=store, prefix=".training.pt.")
            os.close(handle)
            shutil.copyfile(path, temporary)
            os.replace(temporary, Path(store) / "training.pt")
            checkpoints.append(time.perf_counter() - started)
            steps.append(next(records).step_seconds)
        size_mb = (Path(store) / "training.pt").stat().st_size / 2**20
    checkpoint, step = statistics.median(checkpoints), statistics.median(steps)
    share = checkpoint / (args.every * step)
    print(f"Experiment {args.experiment.upper()}: training.pt {size_mb:.1f} MB, checkpoint {checkpoint:.3f} s "
          f"(median of {args.repeats}), outer step {step:.2f} s; every {args.every} steps: {100 * share:.2f}% "
          f"of training time ({100 * checkpoint / step:.1f}% of one step)")
    command = command_line("bench/checkpoint_overhead.py", argv)
    name = f"checkpoint_exp_{args.experiment}"
    merge_results([entry(f"{name}_mb", round(size_mb, 1), "MB", None, command),
                   entry(f"{name}_s", round(checkpoint, 3), "s", None, command),
                   entry(f"{name}_share", round(share, 4), "fraction", TARGET_SHARE if args.experiment == "a" else None,
                         command, note=f"one checkpoint every {args.every} outer steps")])


if __name__ == "__main__":
    main()
