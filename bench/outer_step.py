"""Seconds per outer step and peak memory, per unroll shape, backend and checkpointing.

    python bench/outer_step.py                  # every cell, 5 timed steps each (after 1 warm-up step)
    python bench/outer_step.py --steps 3 --shapes a,k64_b128 --backends func --checkpoint both

Shapes: experiments A (B=32, K=20), B (32, 10), C (16, 10) and the long unrolls K=32 / K=64 at B=128.
Checkpointing (`checkpoint_unroll`, recompute-in-backward) exists for the func backend only. Each cell runs in
its own process so peak RSS (ru_maxrss, which includes the ~0.25 GB of normalised MNIST held in memory) belongs
to that cell alone. Prints a Markdown table and merges the figures into bench/results.json.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys

from record import command_line, entry, merge_results

SHAPES = {"a": (32, 20), "b": (32, 10), "c": (16, 10), "k32_b128": (128, 32), "k64_b128": (128, 64)}  # (B, K)
BACKENDS = ("func", "higher")
RSS_TARGET_MB = {("k64_b128", True): 2048}  # issue target: K=64, B=128 within 2 GB with checkpointing


def measure(shape: str, backend: str, checkpoint: bool, steps: int) -> dict:
    """Time `steps` outer steps of one cell in this process; return the figures."""
    import time

    import torch

    from gtn_core.config import GTNConfig
    from gtn_core.data import default_data_root, load_dataset
    from gtn_core.device import resolve_device
    from gtn_core.seeds import seeded_generator
    from gtn_core.teachers import GTN
    from gtn_core.meta import meta_step, to_real_data

    batch_size, inner_steps = SHAPES[shape]
    cfg = GTNConfig(batch_size=batch_size, inner_steps=inner_steps, unroll_backend=backend,
                    checkpoint_unroll=checkpoint)
    device = resolve_device(cfg.device)
    data = to_real_data(load_dataset("mnist", default_data_root()), device)
    gtn = GTN(cfg).to(device)
    optimizer = torch.optim.Adam(gtn.param_groups(cfg))
    generator = seeded_generator(cfg.seed, stream=1)
    times = []
    for _ in range(steps + 1):  # the first step warms up allocators and kernels
        started = time.perf_counter()
        meta_step(gtn, optimizer, cfg, data, [generator])
        times.append(time.perf_counter() - started)
    times = times[1:]
    return {"shape": shape, "backend": backend, "checkpoint": checkpoint, "median_s": statistics.median(times),
            "min_s": min(times), "max_s": max(times), "steps": steps, "threads": torch.get_num_threads(),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "device": str(device),
            "torch": torch.__version__}


def cell_key(row: dict) -> str:
    """exp_a_func, k64_b128_func_ckpt, ..."""
    shape = f"exp_{row['shape']}" if len(row["shape"]) == 1 else row["shape"]
    return f"{shape}_{row['backend']}" + ("_ckpt" if row["checkpoint"] else "")


def result_entries(rows: list[dict], command: str) -> list[dict]:
    """bench/results.json entries for the measured rows (plus the headline names the issue uses)."""
    entries = []
    for row in rows:
        key = cell_key(row)
        entries.append(entry(f"outer_step_{key}_s", round(row["median_s"], 3), "s", None, command))
        entries.append(entry(f"peak_rss_{key}_mb", round(row["peak_rss_mb"]), "MB",
                             RSS_TARGET_MB.get((row["shape"], row["checkpoint"])), command))
        if row["backend"] == "func" and row["checkpoint"] == (row["shape"].startswith("k")):
            # Headlines: the default func unroll for experiments, the checkpointed one for long unrolls.
            short = key.removesuffix("_func").replace("_func_", "_")
            entries.append(entry(f"outer_step_{short}_s", round(row["median_s"], 3), "s", None, command))
            entries.append(entry(f"peak_rss_{short}_mb", round(row["peak_rss_mb"]), "MB",
                                 RSS_TARGET_MB.get((row["shape"], row["checkpoint"])), command))
    return entries


def cells(shapes: list[str], backends: list[str], checkpoint: str) -> list[tuple[str, str, bool]]:
    """Every (shape, backend, checkpoint) to measure; checkpointing only with the func backend."""
    flags = {"off": (False,), "on": (True,), "both": (False, True)}[checkpoint]
    return [(s, b, c) for s in shapes for b in backends for c in flags if not (c and b != "func")]


def main(argv: list[str] | None = None) -> None:
    """Run every requested cell in a fresh process, print the table, update results.json."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--checkpoint", choices=("off", "on", "both"), default="both")
    parser.add_argument("--one", nargs=3, metavar=("SHAPE", "BACKEND", "CHECKPOINT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps {args.steps}: expected a positive integer")
    if args.one:
        print(json.dumps(measure(args.one[0], args.one[1], args.one[2] == "1", args.steps)))
        return
    shapes, backends = args.shapes.split(","), args.backends.split(",")
    for value, allowed in [(s, SHAPES) for s in shapes] + [(b, BACKENDS) for b in backends]:
        if value not in allowed:
            parser.error(f"{value!r}: expected one of {', '.join(allowed)}")
    rows = []
    for shape, backend, checkpoint in cells(shapes, backends, args.checkpoint):
        out = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--one", shape, backend,
                              str(int(checkpoint))], check=True, capture_output=True, text=True, env=os.environ)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"{cell_key(rows[-1])}: {rows[-1]['median_s']:.2f} s/step, {rows[-1]['peak_rss_mb']:.0f} MB",
              file=sys.stderr)
    print(f"torch {rows[0]['torch']}, {rows[0]['threads']} threads, {os.cpu_count()} cores, device {rows[0]['device']}, "
          f"{args.steps} timed steps per cell\n")
    print("| shape | B | K | backend | checkpoint | median s/step | min | max | peak RSS MB |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        batch_size, inner_steps = SHAPES[row["shape"]]
        print(f"| {row['shape'].upper()} | {batch_size} | {inner_steps} | {row['backend']} | "
              f"{'yes' if row['checkpoint'] else 'no'} | {row['median_s']:.2f} | {row['min_s']:.2f} | "
              f"{row['max_s']:.2f} | {row['peak_rss_mb']:.0f} |")
    merge_results(result_entries(rows, command_line("bench/outer_step.py", argv)))


if __name__ == "__main__":
    main()
