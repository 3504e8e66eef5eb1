"""Accuracy-per-step of one configuration lever, for sweeping levers side by side (no Sacred, no store).

    python bench/levers.py train --label constant --set lr_schedule=constant --out bench/out/levers
    python bench/levers.py train --label small_teacher --set generator.hidden_size=512 --set generator.base_channels=64
    python bench/levers.py report bench/out/levers                    # Markdown table of every label in the folder

`train` meta-trains Experiment A `learned` (or whatever `--set` changes) with the core alone and writes
`<out>/<label>.json`: the configuration, every evaluation (step, test accuracy on the full test set, seconds of
training and of evaluation so far) and the median outer-step time. Several `train` processes may run at once
(one per lever), e.g. on a GPU machine, to rank levers by accuracy per outer step; their wall times are then only
comparable with each other. Wall time on the 2-core CPU is what bench/time_to_accuracy.py measures.
`--set` takes `key=value` for any GTNConfig field, `generator.<field>` and `learner.<field>`; values are parsed
as Python literals (numbers, tuples, True/False) and fall back to strings.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
THRESHOLDS = (0.95, 0.96, 0.97)


def parse_assignment(text: str) -> tuple[str, object]:
    """'generator.hidden_size=512' -> ('generator.hidden_size', 512); a bad form raises ValueError naming it."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--set {text!r}: expected key=value, e.g. real_batch_size=256")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key.strip(), value


def build_config(assignments: list[tuple[str, object]], outer_steps: int | None, eval_every: int | None, seed: int):
    """Experiment A `learned` defaults with the assignments applied; unknown keys raise ValueError naming them."""
    from gtn_core.config import GTNConfig

    top, nested = {}, {"generator": {}, "learner": {}}
    fields = {f.name for f in dataclasses.fields(GTNConfig)}
    for key, value in assignments:
        owner, _, name = key.rpartition(".")
        if owner in nested:
            nested[owner][name] = value
        elif not owner and key in fields:
            top[key] = value
        else:
            raise ValueError(f"--set {key}: expected a GTNConfig field or generator.<field> / learner.<field>")
    defaults = GTNConfig()
    base = GTNConfig(outer_steps=outer_steps or defaults.outer_steps, eval_every=eval_every or defaults.eval_every,
                     seed=seed)
    for owner, values in nested.items():
        if values:
            top[owner] = dataclasses.replace(getattr(base, owner), **values)
    return dataclasses.replace(base, **top)


def train(args: argparse.Namespace) -> Path:
    """Meta-train one configuration and write its accuracy curve to `<out>/<label>.json`."""
    import torch

    from gtn_core.data import default_data_root, load_dataset
    from gtn_core.device import resolve_device
    from gtn_core.teachers import GTN
    from gtn_core.meta import meta_train, to_real_data

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = build_config([parse_assignment(text) for text in args.set], args.outer_steps, args.eval_every, args.seed)
    device = resolve_device(cfg.device)
    data = to_real_data(load_dataset("mnist", default_data_root()), device)
    torch.manual_seed(cfg.seed)
    gtn = GTN(cfg).to(device)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.label}.json"
    curve, step_times, train_s, eval_s = [], [], 0.0, 0.0
    started = time.perf_counter()
    for record in meta_train(gtn, cfg, data):
        step_times.append(record.step_seconds)
        train_s += record.step_seconds
        eval_s += record.eval_seconds
        if record.test_accuracy is None:
            continue
        curve.append({"step": record.step, "test_accuracy": record.test_accuracy, "train_s": round(train_s, 2),
                      "eval_s": round(eval_s, 2)})
        # Rewritten at every evaluation, so an interrupted run still leaves its curve so far.
        result = {"label": args.label, "set": args.set, "config": dataclasses.asdict(cfg), "device": str(device),
                  "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "median_step_s": statistics.median(step_times), "wall_s": time.perf_counter() - started,
                  "teacher_parameters": sum(p.numel() for p in gtn.generator.parameters()),
                  "complete": record.step == cfg.outer_steps, "curve": curve}
        path.write_text(json.dumps(result, indent=1))
    return path


def first_step(curve: list[dict], threshold: float) -> int | None:
    """The first evaluated outer step at or above `threshold`, or None."""
    return next((point["step"] for point in curve if point["test_accuracy"] >= threshold), None)


def report(folder: Path) -> str:
    """Markdown table over every `<label>.json` in `folder`, best final accuracy first."""
    rows = [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]
    if not rows:
        raise SystemExit(f"{folder}: no lever results (*.json) found; run `bench/levers.py train` first")
    rows.sort(key=lambda row: -statistics.mean(p["test_accuracy"] for p in row["curve"][-4:]))
    lines = ["| lever | seed | s/step | best acc | mean of last 4 evals | "
             + " | ".join(f"first >= {t}" for t in THRESHOLDS) + " | last step | device |",
             "|---|---|---|---|---|" + "---|" * len(THRESHOLDS) + "---|---|"]
    for row in rows:
        accs = [p["test_accuracy"] for p in row["curve"]]
        firsts = [first_step(row["curve"], t) for t in THRESHOLDS]
        lines.append(f"| {row['label']} | {row['config']['seed']} | {row['median_step_s']:.3f} | {max(accs):.4f} | "
                     f"{statistics.mean(accs[-4:]):.4f} | "
                     + " | ".join("-" if f is None else str(f) for f in firsts)
                     + f" | {row['curve'][-1]['step']}{'' if row.get('complete') else ' (stopped)'} | {row['device']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """CLI: `train` one lever or `report` a folder of them."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("train", help="meta-train one configuration")
    run.add_argument("--label", required=True, help="name of the result file (letters, digits, _ and -)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--outer-steps", type=int, default=None, help="default: the config's (400)")
    run.add_argument("--eval-every", type=int, default=None, help="default: the config's (25)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    run.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "levers")
    show = commands.add_parser("report", help="table of the results in a folder")
    show.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.command == "report":
        print(report(args.folder))
        return
    if not args.label.replace("_", "").replace("-", "").isalnum():
        parser.error(f"--label {args.label!r}: expected letters, digits, _ and -")
    try:
        print(train(args))
    except ValueError as error:
        parser.error(str(error))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
