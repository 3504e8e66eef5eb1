"""CPU speed levers side by side in one process: scoring pooling, torch.compile of the teacher, its upsampling path.

    python bench/cpu_levers.py                # all three, Experiment A shapes, 10 timed repeats after 1 warm-up
    python bench/cpu_levers.py --only pooling --repeats 3

pooling: the 10,000 test images scored by one meta-tested learner, with the learner's own pooling (`MaxPool2x2`:
two strided maxima when autograd is off) and with `nn.MaxPool2d(2)` swapped in, alternating; the two accuracies
must be equal. compile: one curriculum's teacher forward plus backward, and whole outer steps
(`meta_step`), with the eager teacher and with `torch.compile(teacher.forward)` (Inductor, static shapes; its
first call, compilation included, is timed separately; the two modes alternate call by call). upsampling: the
same two timings for `teacher.upsampling` "nearest" and "transposed" (alternating). Prints a Markdown table and
merges the figures into bench/results.json.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import statistics
import time
from collections.abc import Callable

import torch
from record import command_line, entry, merge_results
from torch import nn

from gtn_core.config import UPSAMPLINGS, GTNConfig
from gtn_core.data import default_data_root, load_dataset
from gtn_core.evaluate import accuracy, meta_test
from gtn_core.seeds import seeded_generator
from gtn_core.learners.layers import MaxPool2x2
from gtn_core.meta import RealData, meta_step, to_real_data
from gtn_core.teachers import GTN

LEVERS = ("pooling", "compile", "upsampling")


Timing = tuple[float, float, float]  # median, min, max seconds


def seconds(fn: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def alternate(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, Timing]:
    """Time each call `repeats` times, the calls taking turns (after one untimed round), so drift hits all alike."""
    samples = {name: [] for name in calls}
    for repeat in range(repeats + 1):
        for name, call in calls.items():
            took = seconds(call)
            if repeat:
                samples[name].append(took)
    return {name: (statistics.median(v), min(v), max(v)) for name, v in samples.items()}


def pooling_rows(cfg: GTNConfig, data: RealData, repeats: int) -> list[tuple[str, Timing]]:
    """Scoring the test set with the learner's pooling and with nn.MaxPool2d(2), alternating; accuracies must agree."""
    learner, state = meta_test(GTN(cfg), cfg, seeded_generator(cfg.seed, stream=2))
    reference = copy.deepcopy(learner)
    for index, module in enumerate(reference.features):
        if isinstance(module, MaxPool2x2):
            reference.features[index] = nn.MaxPool2d(2)
    scorers = {name: functools.partial(accuracy, model, state, data.test_images, data.test_labels, cfg.bn_mode,
                                       cfg.eval_batch_size)
               for name, model in {"maxpool2x2": learner, "max_pool2d": reference}.items()}
    scores = {name: score() for name, score in scorers.items()}
    if len(set(scores.values())) != 1:
        raise AssertionError(f"scoring pools disagree: test accuracy {scores}")
    return [(f"score_10k_test_{name}", timing) for name, timing in alternate(scorers, repeats).items()]


def teacher_pass(gtn: GTN) -> None:
    """One curriculum's teacher forward and backward."""
    gtn.curriculum(torch.Generator()).materialize().sum().backward()


def teacher_and_step_rows(gtns: dict[str, GTN], cfg: GTNConfig, data: RealData,
                          repeats: int) -> list[tuple[str, Timing]]:
    """Teacher forward+backward, then whole outer steps, of each GTN, the GTNs alternating call by call."""
    optimizers = {mode: torch.optim.Adam(gtn.param_groups(cfg)) for mode, gtn in gtns.items()}
    generators = {mode: seeded_generator(cfg.seed, stream=1) for mode in gtns}
    teacher = alternate({mode: functools.partial(teacher_pass, gtn) for mode, gtn in gtns.items()}, repeats)
    step = alternate({mode: functools.partial(meta_step, gtn, optimizers[mode], cfg, data, generators[mode])
                      for mode, gtn in gtns.items()}, repeats)
    return ([(f"teacher_fwd_bwd_{mode}", timing) for mode, timing in teacher.items()]
            + [(f"outer_step_{mode}", timing) for mode, timing in step.items()])


def compile_rows(cfg: GTNConfig, data: RealData, repeats: int) -> list[tuple[str, Timing]]:
    """The eager teacher against `torch.compile(teacher.forward)`; the compiled one's first call timed apart."""
    gtns = {"eager": GTN(cfg), "compiled": GTN(cfg)}
    gtns["compiled"].generator.forward = torch.compile(gtns["compiled"].generator.forward, dynamic=False)
    first = seconds(functools.partial(teacher_pass, gtns["compiled"]))
    return [("teacher_first_call_compiled", (first, first, first)), *teacher_and_step_rows(gtns, cfg, data, repeats)]


def upsampling_rows(cfg: GTNConfig, data: RealData, repeats: int) -> list[tuple[str, Timing]]:
    """The teacher's two upsampling paths (`teacher.upsampling`): nearest x2 + 3x3 conv, 4x4 transposed conv."""
    gtns = {name: GTN(dataclasses.replace(cfg, generator=dataclasses.replace(cfg.generator, upsampling=name)))
            for name in UPSAMPLINGS}
    return teacher_and_step_rows(gtns, cfg, data, repeats)


def main(argv: list[str] | None = None) -> None:
    """Measure the chosen levers; print the table; update results.json."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=LEVERS, action="append", help="one lever (repeatable; default all)")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: expected a positive integer")
    cfg = GTNConfig(batch_size=32, inner_steps=20)  # Experiment A
    data = to_real_data(load_dataset("mnist", default_data_root()), torch.device("cpu"))
    measure = {"pooling": pooling_rows, "compile": compile_rows, "upsampling": upsampling_rows}
    rows = [row for lever in (args.only or LEVERS) for row in measure[lever](cfg, data, args.repeats)]
    print(f"Experiment A shapes, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.repeats} timed repeats\n\n| measurement | median s | min | max |\n|---|---|---|---|")
    for name, (median, low, high) in rows:
        print(f"| {name} | {median:.3f} | {low:.3f} | {high:.3f} |")
    command = command_line("bench/cpu_levers.py", argv)
    merge_results([entry(f"lever_exp_a_{name}_s", round(median, 3), "s", None, command) for name, (median, _, _) in rows])


if __name__ == "__main__":
    main()
