"""Where an outer step's time goes: teacher forward/backward, inner steps, meta-loss, meta-backward, evaluation.

    python bench/profile_step.py                 # Experiment A, 5 profiled steps after 1 warm-up
    python bench/profile_step.py --experiment c --steps 10 --ops 15

Times the phases of `gtn_core.meta.meta_step` one by one (the same calls, in the same order), splits the
backward pass where the gradient reaches the synthetic images (before: back through the unrolled learner;
after: through the teacher), then times one evaluation as `meta_train` runs it (fresh learner trained without
graph, 10,000 test images, the 2,000-image training subset). `--ops N` adds torch.profiler's top-N operators
over one outer step. Prints a Markdown table and merges the medians into bench/results.json.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from record import command_line, entry, merge_results

from gtn_core.config import GTNConfig
from gtn_core.data import default_data_root, load_dataset
from gtn_core.evaluate import accuracy, meta_test
from gtn_core.seeds import seeded_generator
from gtn_core.learners import init_learner
from gtn_core.meta import to_real_data
from gtn_core.unroll import initial_state, learner_logits, unroll
from gtn_core.teachers import GTN

SHAPES = {"a": (32, 20), "b": (32, 10), "c": (16, 10)}  # (batch_size, inner_steps)
PHASES = {  # phase key (results.json name part) -> what it measures
    "teacher_forward": "teacher forward",
    "inner_steps": "inner steps (graph kept)",
    "meta_loss": "meta-loss on the real batch",
    "backward_inner_steps": "meta-backward through the inner steps",
    "backward_teacher": "meta-backward through the teacher",
    "adam": "clip + Adam",
    "eval_meta_test": "eval: fresh learner trained (no graph)",
    "eval_test_set": "eval: 10,000 test images scored",
    "eval_train_subset": "eval: training subset scored",
}


def profiled_step(gtn: GTN, optimizer, cfg: GTNConfig, data, generator: torch.Generator) -> dict[str, float]:
    """One meta_step, phase by phase; seconds per phase."""
    times, clock = {}, time.perf_counter
    start = clock()
    index = torch.randint(0, data.train_images.shape[0], (cfg.real_batch_size,), generator=generator)
    optimizer.zero_grad(set_to_none=True)
    learner = init_learner(cfg.learner, generator, data.train_images.device)
    curriculum = gtn.curriculum(generator)
    images, labels = curriculum.materialize(), curriculum.labels
    times["teacher_forward"] = clock() - start
    mark = clock()
    final = unroll(learner, initial_state(learner), images, labels, gtn.hparams.lrs(), gtn.hparams.momenta(),
                   create_graph=True, backend=cfg.unroll_backend)
    times["inner_steps"] = clock() - mark
    mark = clock()
    loss = F.cross_entropy(learner_logits(learner, final, data.train_images[index], cfg.bn_mode),
                           data.train_labels[index])
    loss.item()
    times["meta_loss"] = clock() - mark
    reached = []
    images.register_hook(lambda grad: reached.append(clock()))
    mark = clock()
    loss.backward()
    done = clock()
    times["backward_inner_steps"] = reached[0] - mark
    times["backward_teacher"] = done - reached[0]
    mark = clock()
    torch.nn.utils.clip_grad_norm_(gtn.parameters(), cfg.grad_clip)
    optimizer.step()
    times["adam"] = clock() - mark
    return times


def profiled_evaluation(gtn: GTN, cfg: GTNConfig, data, generator: torch.Generator) -> dict[str, float]:
    """One evaluation as meta_train runs it; seconds per phase."""
    times, clock = {}, time.perf_counter
    mark = clock()
    learner, state = meta_test(gtn, cfg, generator)
    times["eval_meta_test"] = clock() - mark
    mark = clock()
    accuracy(learner, state, data.test_images, data.test_labels, cfg.bn_mode, cfg.eval_batch_size)
    times["eval_test_set"] = clock() - mark
    mark = clock()
    subset = torch.arange(min(cfg.train_eval_size, data.train_images.shape[0]))
    accuracy(learner, state, data.train_images[subset], data.train_labels[subset], cfg.bn_mode, cfg.eval_batch_size)
    times["eval_train_subset"] = clock() - mark
    return times


def main(argv: list[str] | None = None) -> None:
    """Profile `--steps` outer steps and evaluations; print the table; update results.json."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", choices=sorted(SHAPES), default="a")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--ops", type=int, default=0, help="also print torch.profiler's top-N operators")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps {args.steps}: expected a positive integer")
    batch_size, inner_steps = SHAPES[args.experiment]
    cfg = GTNConfig(batch_size=batch_size, inner_steps=inner_steps)
    data = to_real_data(load_dataset("mnist", default_data_root()), torch.device("cpu"))
    gtn = GTN(cfg)
    optimizer = torch.optim.Adam(gtn.param_groups(cfg))
    train_generator, eval_generator = seeded_generator(0, stream=1), seeded_generator(0, stream=2)
    samples: dict[str, list[float]] = {}
    for step in range(args.steps + 1):  # step 0 warms up
        phases = {**profiled_step(gtn, optimizer, cfg, data, train_generator),
                  **profiled_evaluation(gtn, cfg, data, eval_generator)}
        for name, seconds in phases.items():
            if step:
                samples.setdefault(name, []).append(seconds)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    step_total = sum(value for name, value in medians.items() if not name.startswith("eval_"))
    eval_total = sum(value for name, value in medians.items() if name.startswith("eval_"))
    print(f"Experiment {args.experiment.upper()} (B={batch_size}, K={inner_steps}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, median of {args.steps} steps\n")
    print("| phase | median s | share |\n|---|---|---|")
    for name, value in medians.items():
        part = "evaluation" if name.startswith("eval_") else "step"
        total = eval_total if part == "evaluation" else step_total
        print(f"| {PHASES[name]} | {value:.3f} | {100 * value / total:.0f}% of the {part} |")
    share = eval_total / (eval_total + cfg.eval_every * step_total)
    print(f"\nouter step {step_total:.2f} s; evaluation {eval_total:.2f} s = {100 * share:.1f}% of training time at "
          f"eval_every={cfg.eval_every}")
    if args.ops:
        from torch.profiler import profile
        with profile() as prof:
            profiled_step(gtn, optimizer, cfg, data, train_generator)
        print("\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.ops))
    command = command_line("bench/profile_step.py", argv)
    key = f"exp_{args.experiment}"
    entries = [entry(f"profile_{key}_{name}_s", round(value, 3), "s", None, command) for name, value in medians.items()]
    entries.append(entry(f"eval_share_{key}", round(share, 4), "fraction of training time", 0.10, command,
                         note=f"one evaluation per eval_every={cfg.eval_every} outer steps"))
    merge_results(entries)


if __name__ == "__main__":
    main()
