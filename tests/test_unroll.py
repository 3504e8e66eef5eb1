"""The unrolled inner loop: it is SGD with momentum, with or without a graph, in both backends."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import tiny_config
from gtn_core.learners import init_learner
from gtn_core.learners.layers import BatchNorm, MaxPool2x2
from gtn_core.unroll import LearnerState, initial_state, learner_logits, unroll

BACKENDS = ("func", "higher")


def _problem(seed=0, steps=4, batch=6):
    cfg = tiny_config()
    generator = torch.Generator().manual_seed(seed)
    learner = init_learner(cfg.learner, generator)
    images = torch.randn(steps, batch, 1, 8, 8, generator=generator)
    labels = torch.randint(0, 3, (steps, batch), generator=generator)
    lrs = torch.tensor([0.3, 0.1, 0.2, 0.05])[:steps]
    momenta = torch.tensor([0.9, 0.5, 0.1, 0.7])[:steps]  # in (0, 1), as sigmoid-parametrised momenta are
    return learner, images, labels, lrs, momenta


def _with_torch_batch_norm(learner):
    """A copy of `learner` whose BatchNorm layers are torch's own (running statistics updated in place)."""
    reference = copy.deepcopy(learner)
    for name, module in list(reference.named_modules()):
        if isinstance(module, BatchNorm):
            torch_class = nn.BatchNorm2d if name.startswith("features") else nn.BatchNorm1d
            replacement = torch_class(module.weight.numel())
            replacement.load_state_dict(module.state_dict(), strict=False)  # all but num_batches_tracked
            parent, _, attribute = name.rpartition(".")
            setattr(reference.get_submodule(parent), attribute, replacement)
    return reference


@pytest.mark.parametrize("create_graph", (False, True))
@pytest.mark.parametrize("backend", BACKENDS)
def test_unroll_matches_torch_sgd_and_batch_norm_step_for_step(backend, create_graph, float64):
    learner, images, labels, lrs, momenta = _problem()
    reference = _with_torch_batch_norm(learner).train()
    optimizer = torch.optim.SGD(reference.parameters(), lr=1.0, momentum=0.5)
    start = initial_state(learner)
    for step in range(len(lrs)):
        optimizer.param_groups[0].update(lr=lrs[step].item(), momentum=momenta[step].item())
        optimizer.zero_grad()
        F.cross_entropy(reference(images[step]), labels[step]).backward()
        optimizer.step()
        state = unroll(learner, start, images[:step + 1], labels[:step + 1], lrs[:step + 1], momenta[:step + 1],
                       create_graph=create_graph, backend=backend)
        for name, param in reference.named_parameters():
            torch.testing.assert_close(state.params[name], param.detach(), rtol=1e-10, atol=1e-12)
        buffers = {name: b for name, b in reference.named_buffers() if not name.endswith("num_batches_tracked")}
        assert state.buffers.keys() == buffers.keys()
        for name, buffer in buffers.items():
            torch.testing.assert_close(state.buffers[name], buffer, rtol=1e-10, atol=1e-12)
            assert (state.buffers[name].grad_fn is not None) == create_graph, name


@pytest.mark.parametrize("backend", BACKENDS)
def test_graph_flag_changes_memory_not_values(backend, float64):
    learner, images, labels, lrs, momenta = _problem()
    start = initial_state(learner)
    kept = unroll(learner, start, images, labels, lrs, momenta, create_graph=True, backend=backend)
    dropped = unroll(learner, start, images, labels, lrs, momenta, create_graph=False, backend=backend)
    for name in kept.params:
        assert kept.params[name].grad_fn is not None
        assert dropped.params[name].grad_fn is None
        torch.testing.assert_close(kept.params[name].detach(), dropped.params[name])


@pytest.mark.parametrize("backend", BACKENDS)
def test_images_may_be_generated_per_step(backend, float64):
    learner, images, labels, lrs, momenta = _problem()
    start = initial_state(learner)
    asked = []

    def generate(step):
        asked.append(step)
        return images[step]

    eager = unroll(learner, start, images, labels, lrs, momenta, create_graph=True, backend=backend)
    lazy = unroll(learner, start, generate, labels, lrs, momenta, create_graph=True, backend=backend)
    assert asked == list(range(len(lrs)))
    for name in eager.params:
        torch.testing.assert_close(lazy.params[name], eager.params[name], rtol=0, atol=0)


@pytest.mark.parametrize("scored", ("params", "params_and_buffers"))
def test_checkpointed_unroll_matches_the_plain_one_in_values_and_gradients(scored, float64):
    learner, images, labels, lrs, momenta = _problem()
    start = initial_state(learner)
    with_buffers = scored == "params_and_buffers"
    results = []
    for checkpoint in (False, True):
        leaves = [images.clone().requires_grad_(), lrs.clone().requires_grad_(), momenta.clone().requires_grad_()]
        buffers = {name: b.clone().requires_grad_(with_buffers) for name, b in start.buffers.items()}
        state = unroll(learner, LearnerState(start.params, buffers), leaves[0], labels, leaves[1], leaves[2],
                       create_graph=True, checkpoint=checkpoint)
        # The final running statistics, as a meta-loss in bn_mode="eval" uses them; their gradient reaches the
        # initial ones too.
        scored_tensors = list(state.params.values()) + (list(state.buffers.values()) if with_buffers else [])
        loss = sum((t ** 2).sum() for t in scored_tensors)
        results.append((state, torch.autograd.grad(loss, leaves + (list(buffers.values()) if with_buffers else []))))
    (plain, plain_grads), (ckpt, ckpt_grads) = results
    for name in plain.params:
        torch.testing.assert_close(ckpt.params[name], plain.params[name], rtol=0, atol=0)
    for name in plain.buffers:
        torch.testing.assert_close(ckpt.buffers[name], plain.buffers[name], rtol=0, atol=0)
    for got, expected in zip(ckpt_grads, plain_grads, strict=True):
        assert expected.abs().sum() > 0
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-13)


def test_checkpointed_unroll_refuses_a_second_backward():
    learner, images, labels, lrs, momenta = _problem()
    lrs = lrs.clone().requires_grad_()
    state = unroll(learner, initial_state(learner), images, labels, lrs, momenta, create_graph=True, checkpoint=True)
    loss = sum((p ** 2).sum() for p in state.params.values())
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="only once"):
        loss.backward()


def test_unroll_leaves_its_input_state_untouched():
    learner, images, labels, lrs, momenta = _problem()
    start = initial_state(learner)
    before = {name: b.clone() for name, b in start.buffers.items()}
    unroll(learner, start, images, labels, lrs, momenta, create_graph=False)
    unroll(learner, start, images, labels, lrs, momenta, create_graph=True, checkpoint=True)
    learner_logits(learner, start, images[0], "train")
    for name, buffer in start.buffers.items():
        torch.testing.assert_close(buffer, before[name])


def test_unroll_rejects_mismatched_shapes_and_unknown_backend():
    learner, images, labels, lrs, momenta = _problem()
    start = initial_state(learner)
    with pytest.raises(ValueError, match=r"expected \(4,\) each"):
        unroll(learner, start, images, labels, lrs[:2], momenta, create_graph=False)
    with pytest.raises(ValueError, match="expected images"):
        unroll(learner, start, images[0], labels, lrs, momenta, create_graph=False)
    with pytest.raises(ValueError, match="'jax'.*func, higher"):
        unroll(learner, start, images, labels, lrs, momenta, create_graph=False, backend="jax")
    with pytest.raises(ValueError, match="checkpoint=True with backend 'higher'"):
        unroll(learner, start, images, labels, lrs, momenta, create_graph=True, backend="higher", checkpoint=True)


def test_eval_mode_logits_are_differentiable_in_the_running_statistics(float64):
    learner, images, *_ = _problem()
    start = initial_state(learner)
    buffers = {name: b.clone().requires_grad_() for name, b in start.buffers.items()}
    logits = learner_logits(learner, LearnerState(start.params, buffers), images[0], "eval")
    grads = torch.autograd.grad((logits ** 2).sum(), list(buffers.values()))
    for name, grad in zip(buffers, grads):
        assert grad.abs().sum() > 0, name


def test_learner_logits_rejects_unknown_bn_mode():
    learner, images, *_ = _problem()
    with pytest.raises(ValueError, match="'frozen'"):
        learner_logits(learner, initial_state(learner), images[0], "frozen")


@pytest.mark.parametrize("shape", [(3, 4, 28, 28), (2, 5, 7, 9)])
def test_learner_pooling_is_max_pool2d_with_and_without_autograd(shape):
    x = torch.randn(shape, dtype=torch.float64).round(decimals=1)  # rounding makes tied windows common
    with torch.no_grad():
        assert torch.equal(MaxPool2x2()(x), F.max_pool2d(x, 2))  # the fast scoring path
    ours, reference = x.clone().requires_grad_(), x.clone().requires_grad_()
    weights = torch.randn(F.max_pool2d(x, 2).shape, dtype=torch.float64)
    (MaxPool2x2()(ours) * weights).sum().backward()
    (F.max_pool2d(reference, 2) * weights).sum().backward()
    assert torch.equal(ours.grad, reference.grad)  # ties: the whole gradient to one element, as max_pool2d


@pytest.mark.parametrize("backend", BACKENDS)
def test_goodai_kl_loss_is_cross_entropy_at_a_tenth_of_the_lr(backend, float64):
    """GoodAI's inner loss, F.kl_div(log-probabilities, one-hot targets) with torch's default element-mean over the
    B x classes entries, is cross-entropy / classes: their SGD at lr x moves a learner exactly as ours at x / classes
    (so in log space, where Adam's steps do not depend on a constant factor, their loss is inner_lr_init / 10)."""
    learner, images, labels, lrs, momenta = _problem()
    classes = tiny_config().learner.num_classes
    reference = _with_torch_batch_norm(learner).train()
    optimizer = torch.optim.SGD(reference.parameters(), lr=1.0, momentum=0.5)
    for step in range(len(lrs)):
        optimizer.param_groups[0].update(lr=lrs[step].item(), momentum=momenta[step].item())
        optimizer.zero_grad()
        targets = F.one_hot(labels[step], classes).to(images.dtype)
        F.kl_div(F.log_softmax(reference(images[step]), dim=1), targets).backward()
        optimizer.step()
    state = unroll(learner, initial_state(learner), images, labels, lrs / classes, momenta, create_graph=False,
                   backend=backend)
    for name, param in reference.named_parameters():
        torch.testing.assert_close(state.params[name], param.detach(), rtol=1e-10, atol=1e-12)
