"""Seconds per outer step and peak memory for experiments A, B, C with both unroll backends.

    python bench/outer_step.py                  # all cells, 5 timed steps each (after 1 warm-up step)
    python bench/outer_step.py --steps 10 --experiments a --backends func

Each cell runs in its own process so peak RSS (ru_maxrss, which includes the ~0.25 GB of normalised MNIST
held in memory) belongs to that cell alone. Prints a Markdown table and merges the figures into
bench/results.json as {"name", "value", "unit", "target", "command", "date"} entries.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

SHAPES = {"a": (32, 20), "b": (32, 10), "c": (16, 10)}  # (batch_size, inner_steps)
BACKENDS = ("func", "higher")
RESULTS = Path(__file__).resolve().parent / "results.json"


def measure(experiment: str, backend: str, steps: int) -> dict:
    """Time `steps` outer steps of one cell in this process; return the figures."""
    import time

    import torch

    from gtn_core.config import GTNConfig
    from gtn_core.data import default_data_root, load_dataset
    from gtn_core.device import resolve_device
    from gtn_core.gtn import GTN, seeded_generator
    from gtn_core.meta import meta_step, to_real_data

    batch_size, inner_steps = SHAPES[experiment]
    cfg = GTNConfig(batch_size=batch_size, inner_steps=inner_steps, unroll_backend=backend)
    device = resolve_device(cfg.device)
    data = to_real_data(load_dataset("mnist", default_data_root()), device)
    gtn = GTN(cfg).to(device)
    optimizer = torch.optim.Adam(gtn.param_groups(cfg))
    generator = seeded_generator(cfg.seed, stream=1)
    times = []
    for _ in range(steps + 1):  # the first step warms up allocators and kernels
        started = time.perf_counter()
        meta_step(gtn, optimizer, cfg, data, generator)
        times.append(time.perf_counter() - started)
    times = times[1:]
    return {"experiment": experiment, "backend": backend, "median_s": statistics.median(times),
            "min_s": min(times), "max_s": max(times), "steps": steps, "threads": torch.get_num_threads(),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "device": str(device),
            "torch": torch.__version__}


def result_entries(rows: list[dict], command: str) -> list[dict]:
    """bench/results.json entries for the measured rows."""
    date = datetime.date.today().isoformat()
    entries = []
    for row in rows:
        key = f"exp_{row['experiment']}_{row['backend']}"
        entries.append({"name": f"outer_step_{key}_s", "value": round(row["median_s"], 3), "unit": "s",
                        "target": None, "command": command, "date": date})
        entries.append({"name": f"peak_rss_{key}_mb", "value": round(row["peak_rss_mb"]), "unit": "MB",
                        "target": None, "command": command, "date": date})
    return entries


def merge_results(entries: list[dict], path: Path = RESULTS) -> None:
    """Replace same-named entries in results.json, keeping every other benchmark's figures."""
    existing = json.loads(path.read_text()) if path.exists() else []
    names = {entry["name"] for entry in entries}
    merged = [entry for entry in existing if entry["name"] not in names] + entries
    path.write_text(json.dumps(sorted(merged, key=lambda entry: entry["name"]), indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    """Run every requested cell in a fresh process, print the table, update results.json."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--experiments", default="a,b,c")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--one", nargs=2, metavar=("EXPERIMENT", "BACKEND"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps {args.steps}: expected a positive integer")
    if args.one:
        print(json.dumps(measure(*args.one, args.steps)))
        return
    experiments, backends = args.experiments.split(","), args.backends.split(",")
    for value, allowed in [(e, SHAPES) for e in experiments] + [(b, BACKENDS) for b in backends]:
        if value not in allowed:
            parser.error(f"{value!r}: expected one of {', '.join(allowed)}")
    rows = []
    for experiment in experiments:
        for backend in backends:
            out = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--one", experiment, backend],
                                 check=True, capture_output=True, text=True, env=os.environ)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            row = rows[-1]
            print(f"{experiment} {backend}: {row['median_s']:.2f} s/step", file=sys.stderr)
    print(f"torch {rows[0]['torch']}, {rows[0]['threads']} threads, {os.cpu_count()} cores, device {rows[0]['device']}, "
          f"{args.steps} timed steps per cell\n")
    print("| experiment | backend | median s/step | min | max | peak RSS MB |\n|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['experiment'].upper()} | {row['backend']} | {row['median_s']:.2f} | {row['min_s']:.2f} | "
              f"{row['max_s']:.2f} | {row['peak_rss_mb']:.0f} |")
    merge_results(result_entries(rows, "python bench/outer_step.py " + " ".join(argv or sys.argv[1:])))


if __name__ == "__main__":
    main()
