"""GoodAI's levers for the curriculum study: one learned lr and momentum for every step, U(0, 1) teacher inputs, and
the KL-divergence inner loss (which is cross-entropy scaled by 1 / classes, i.e. a 10x smaller inner lr)."""
import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_config
from gtn_core.meta import meta_loss
from gtn_core.teachers import GTN
from gtn_core.teachers.generator import sample_noise


def test_a_shared_schedule_learns_one_lr_and_momentum_for_every_step_exactly(float64):
    cfg = tiny_config(inner_schedule="shared", inner_lr_init=0.2)
    gtn = GTN(cfg)
    assert gtn.hparams.log_lr.shape == (1,) and gtn.hparams.lrs().shape == (cfg.inner_steps,)
    assert torch.equal(gtn.hparams.lrs(), torch.full((cfg.inner_steps,), 0.2, dtype=torch.float64))
    generator = torch.Generator().manual_seed(1)
    images, labels = torch.rand(9, 1, 8, 8, generator=generator) * 2 - 1, torch.randint(0, 3, (9,), generator=generator)

    def loss():
        return meta_loss(gtn, cfg, images, labels, torch.Generator().manual_seed(7))

    loss().backward()
    for tensor in (gtn.hparams.log_lr, gtn.hparams.logit_momentum):
        with torch.no_grad():
            tensor += 1e-6
            plus = loss().item()
            tensor -= 2e-6
            minus = loss().item()
            tensor += 1e-6
        assert tensor.grad.item() == pytest.approx((plus - minus) / 2e-6, rel=1e-5)
    with pytest.raises(ValueError, match="inner_schedule='global': expected one of per_step, shared"):
        tiny_config(inner_schedule="global")


def test_uniform01_inputs_are_goodais_torch_rand():
    draws = sample_noise((1000,), "uniform01", torch.Generator().manual_seed(0))
    assert torch.equal(draws, torch.rand((1000,), generator=torch.Generator().manual_seed(0)))
    assert 0 <= draws.min() and draws.max() < 1


def test_kl_divergence_to_one_hot_targets_is_cross_entropy_over_the_classes(float64):
    # GoodAI's inner loss, nn.KLDivLoss()(log_softmax, one_hot) with its default 'mean' over every element, is
    # cross-entropy / classes (a one-hot target has zero entropy): the lever is inner_lr_init / 10, not a new loss.
    logits, labels = torch.randn(16, 10, requires_grad=True), torch.randint(0, 10, (16,))
    kl = torch.nn.KLDivLoss()(F.log_softmax(logits, dim=1), F.one_hot(labels, 10).double())
    torch.testing.assert_close(kl, F.cross_entropy(logits, labels) / 10)
