"""The shuffle ablation: paired learners, identical when the permutation is the identity."""
import pytest
import torch

from conftest import tiny_config
from gtn_core.ablation import shuffle_ablation
from gtn_core.teachers import GTN


def _test_set(n=40):
    generator = torch.Generator().manual_seed(4)
    return torch.rand(n, 1, 8, 8, generator=generator) * 2 - 1, torch.randint(0, 3, (n,), generator=generator)


@pytest.mark.parametrize("variant", ["learned", "random"])
def test_ablation_yields_a_paired_trial_per_order_and_repeat(variant):
    cfg = tiny_config(variant=variant)
    trials = list(shuffle_ablation(GTN(cfg), cfg, *_test_set(), repeats=4, generator=torch.Generator().manual_seed(0)))
    assert [(t.repeat, t.order) for t in trials] == [(r, o) for r in range(4) for o in ("learned", "shuffled")]
    assert all(0.0 <= t.accuracy <= 1.0 for t in trials)


def test_with_a_single_step_shuffling_changes_nothing():
    cfg = tiny_config(inner_steps=1)
    trials = list(shuffle_ablation(GTN(cfg), cfg, *_test_set(), repeats=3, generator=torch.Generator().manual_seed(0)))
    learned = [t.accuracy for t in trials if t.order == "learned"]
    shuffled = [t.accuracy for t in trials if t.order == "shuffled"]
    assert learned == shuffled
    assert len(set(learned)) > 1  # each repeat is a fresh learner


def test_ablation_rejects_non_positive_repeats():
    cfg = tiny_config()
    with pytest.raises(ValueError, match="repeats=0"):
        next(shuffle_ablation(GTN(cfg), cfg, *_test_set(), repeats=0, generator=torch.Generator()))


@pytest.mark.parametrize("move_schedule", [False, True])
def test_the_schedule_stays_in_time_order_or_moves_with_its_batch(move_schedule):
    from gtn_core.evaluate import meta_test
    from gtn_core.learners import init_learner
    from gtn_core.unroll import initial_state, unroll

    cfg = tiny_config()
    teacher = GTN(cfg)
    with torch.no_grad():  # a schedule that differs per step, so moving it matters
        teacher.hparams.log_lr.copy_(torch.log(torch.tensor([0.05, 0.2, 0.8])))
        teacher.hparams.logit_momentum.copy_(torch.tensor([-1.0, 0.0, 2.0]))
    curriculum = teacher.curriculum(torch.Generator().manual_seed(1))
    order = torch.tensor([2, 0, 1])
    _, state = meta_test(teacher, cfg, torch.Generator().manual_seed(5), order, curriculum,
                         move_schedule=move_schedule)
    with torch.no_grad():
        images, labels = curriculum.materialize()[order], curriculum.labels[order]
        lrs, momenta = teacher.hparams.lrs(), teacher.hparams.momenta()
    if move_schedule:
        lrs, momenta = lrs[order], momenta[order]
    learner = init_learner(cfg.learner, torch.Generator().manual_seed(5))
    expected = unroll(learner, initial_state(learner), images, labels, lrs, momenta, create_graph=False)
    for name, param in expected.params.items():
        torch.testing.assert_close(state.params[name], param)
