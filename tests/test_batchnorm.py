"""The learner's BatchNorm: torch's numbers, with running statistics that stay in the graph."""
import pytest
import torch
from torch import nn
from torch.func import functional_call

from gtn_core.learners.layers import BatchMoments, BatchNorm

# The 1d batch spans several of BatchMoments's 16-sample slices.
SHAPES = {"1d": ((40, 3), nn.BatchNorm1d), "2d": ((5, 4, 3, 3), nn.BatchNorm2d)}


def _pair(kind):
    shape, torch_class = SHAPES[kind]
    ours, reference = BatchNorm(shape[1]), torch_class(shape[1])
    with torch.no_grad():
        for module in (ours, reference):  # non-trivial affine parameters, the same in both
            module.weight.copy_(torch.linspace(0.5, 2.0, shape[1]))
            module.bias.copy_(torch.linspace(-1.0, 1.0, shape[1]))
    return shape, ours, reference


@pytest.mark.parametrize("kind", SHAPES)
def test_batch_norm_matches_torch_in_train_and_eval_mode(kind, float64):
    shape, ours, reference = _pair(kind)
    assert ours.momentum == reference.momentum and ours.eps == reference.eps
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        x = torch.randn(shape, generator=generator) * 3 + 1
        assert torch.equal(ours(x), reference(x))  # train mode: bit for bit
    for name in ("running_mean", "running_var"):
        torch.testing.assert_close(getattr(ours, name), getattr(reference, name), rtol=1e-12, atol=1e-14)
    x = torch.randn(shape, generator=generator)
    torch.testing.assert_close(ours.eval()(x), reference.eval()(x), rtol=1e-12, atol=1e-14)


def test_batch_norm_rebinds_its_running_statistics_instead_of_updating_them_in_place(float64):
    _, ours, _ = _pair("2d")
    before = ours.running_mean
    ours(torch.randn(SHAPES["2d"][0]))
    assert ours.running_mean is not before and torch.equal(before, torch.zeros(4))
    assert [name for name, _ in ours.named_buffers()] == ["running_mean", "running_var"]


@pytest.mark.parametrize("kind", SHAPES)
def test_eval_output_is_differentiable_through_the_running_statistics(kind, float64):
    shape, _, _ = _pair(kind)
    generator = torch.Generator().manual_seed(1)
    train_x, eval_x = torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)
    weight, bias = torch.rand(shape[1], generator=generator) + 0.5, torch.randn(shape[1], generator=generator)

    def after_one_step(train_x, weight, bias):
        norm = BatchNorm(shape[1])
        state = {"weight": weight, "bias": bias, **dict(norm.named_buffers())}
        functional_call(norm, state, (train_x,))  # writes the new running statistics back into `state`
        return functional_call(norm.eval(), state, (eval_x,))

    inputs = [t.requires_grad_() for t in (train_x, weight, bias)]
    assert torch.autograd.gradcheck(after_one_step, inputs)


@pytest.mark.parametrize("kind", SHAPES)
def test_batch_moments_have_exact_first_and_second_derivatives(kind, float64):
    x = torch.randn(SHAPES[kind][0], generator=torch.Generator().manual_seed(2)).requires_grad_()
    mean, var = BatchMoments.apply(x)
    reference_var, reference_mean = torch.var_mean(x, dim=[0, *range(2, x.dim())], correction=1)
    torch.testing.assert_close(mean, reference_mean, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(var, reference_var, rtol=1e-12, atol=1e-14)
    assert torch.autograd.gradcheck(BatchMoments.apply, (x,))
    assert torch.autograd.gradgradcheck(BatchMoments.apply, (x,))
