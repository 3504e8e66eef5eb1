"""Learner families: every preset builds, trains and meta-tests; meta-gradients stay exact for every normalisation
and head; weight norm and mean-only BatchNorm behave as defined; learners drawn per outer step."""
import dataclasses

import pytest
import torch

from conftest import tiny_config
from gtn_core.config import NORMALISATIONS, GeneratorConfig, GTNConfig, LearnerConfig
from gtn_core.evaluate import accuracy, meta_test
from gtn_core.learners import init_learner
from gtn_core.learners.layers import MeanOnlyBatchNorm, WeightNormConv2d, WeightNormLinear
from gtn_core.learners.presets import PRESETS, preset, random_widths, training_learner
from gtn_core.meta import meta_loss
from gtn_core.teachers import GTN
from gtn_core.unroll import initial_state, learner_logits, unroll


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_builds_trains_one_inner_loop_and_meta_tests(name):
    learner_cfg = preset(name)
    cfg = GTNConfig(batch_size=8, inner_steps=2, learner=learner_cfg,
                    generator=GeneratorConfig(hidden_size=16, base_channels=8))
    teacher = GTN(cfg)
    learner, state = meta_test(teacher, cfg, torch.Generator().manual_seed(0))
    images, labels = torch.rand(20, 1, 28, 28) * 2 - 1, torch.randint(0, 10, (20,))
    assert 0.0 <= accuracy(learner, state, images, labels, "train", 10) <= 1.0
    initial = init_learner(learner_cfg, torch.Generator().manual_seed(0))
    moved = [name for name, p in initial.named_parameters() if not torch.equal(p, state.params[name])]
    assert moved, "the inner loop changed no parameter"
    loss = meta_loss(teacher, cfg, images, labels, torch.Generator().manual_seed(1))
    loss.backward()
    assert teacher.inputs.noise.grad.abs().sum() > 0


def test_presets_follow_the_paper_code_shapes():
    counts = {name: sum(p.numel() for p in init_learner(cfg).parameters()) for name, cfg in PRESETS.items()}
    # base_fc: conv 1->64 (9*64 + 64 scales), conv 64->128 (9*64*128 + 128), 7*7*128 -> 256 (+256), 256 -> 10
    base_fc = 9 * 64 + 64 + 64 + 9 * 64 * 128 + 128 + 128 + 6272 * 256 + 256 + 256 + 2560 + 10 + 10
    assert counts["base_fc"] == counts["base_larger"] == base_fc
    assert PRESETS["base_larger3"].feature_side() == 7 and PRESETS["base_larger2"].feature_side() == 7
    assert counts["linear"] == 784 * 256 + 256 * 2 + 256 * 128 + 128 * 2 + 1280 + 10 + 10
    assert PRESETS["goodai"] == LearnerConfig()
    with pytest.raises(ValueError, match="learner preset 'base9': expected one of goodai, base"):
        preset("base9")


# Every normalisation with both heads, for the finite-difference check of the meta-gradient.
FAMILIES = [dict(normalisation=n, head=h, hidden=hidden, pooling=pooling)
            for n in NORMALISATIONS for h, hidden, pooling in (("flatten", (5,), "max"), ("global_avg", (), "avg"))]


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f"{f['normalisation']}-{f['head']}")
@pytest.mark.parametrize("bn_mode", ("train", "eval"))
def test_meta_gradient_matches_finite_differences_for_every_normalisation_and_head(family, bn_mode, float64):
    learner = LearnerConfig(channels=(3, 4), num_classes=3, image_size=8, logit_batch_norm=False, **family)
    cfg = tiny_config(learner=learner, bn_mode=bn_mode, inner_lr_init=0.2,
                      generator=GeneratorConfig(noise_size=4, num_classes=3, hidden_size=8, base_channels=4,
                                                image_size=8, weight_norm=True))
    gtn = GTN(cfg)
    generator = torch.Generator().manual_seed(1)
    images, labels = torch.rand(9, 1, 8, 8, generator=generator) * 2 - 1, torch.randint(0, 3, (9,), generator=generator)

    def loss():
        return meta_loss(gtn, cfg, images, labels, torch.Generator().manual_seed(7))

    loss().backward()
    probes = [(gtn.generator.dense[0].weight, (0, 1)), (gtn.generator.dense[0].scale, (2,)),
              (gtn.inputs.noise, (1, 2, 0)), (gtn.hparams.log_lr, (0,)), (gtn.hparams.logit_momentum, (2,))]
    for tensor, index in probes:
        with torch.no_grad():
            tensor[index] += 1e-6
            plus = loss().item()
            tensor[index] -= 2e-6
            minus = loss().item()
            tensor[index] += 1e-6
        assert tensor.grad[index].item() == pytest.approx((plus - minus) / 2e-6, rel=1e-5, abs=1e-9), \
            (tuple(tensor.shape), index)


def test_weight_norm_layers_start_as_their_plain_layer_and_ignore_the_direction_scale(float64):
    conv = WeightNormConv2d(2, 3, 3, padding=1)
    x = torch.randn(4, 2, 5, 5)
    torch.testing.assert_close(conv(x), torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1))
    before = conv(x)
    with torch.no_grad():
        conv.weight.mul_(7.0)  # only the direction counts
    torch.testing.assert_close(conv(x), before)
    linear = WeightNormLinear(4, 2)
    with torch.no_grad():
        linear.scale.fill_(2.0)
    rows = (linear.weight / linear.weight.norm(dim=1, keepdim=True)) * 2.0
    torch.testing.assert_close(linear(x[:, 0, 0, :4]), x[:, 0, 0, :4] @ rows.T + linear.bias)


def test_mean_only_batch_norm_centres_adds_its_bias_and_keeps_a_running_mean(float64):
    norm = MeanOnlyBatchNorm(3, momentum=0.5)
    with torch.no_grad():
        norm.bias.copy_(torch.tensor([1.0, -2.0, 0.5]))
    x = torch.randn(6, 3, 4, 4) + 3.0
    out = norm(x)
    torch.testing.assert_close(out.mean((0, 2, 3)), norm.bias.detach())
    torch.testing.assert_close(out.std((0, 2, 3)), x.std((0, 2, 3)))  # no rescaling
    torch.testing.assert_close(norm.running_mean, 0.5 * x.mean((0, 2, 3)))
    norm.eval()
    torch.testing.assert_close(norm(x), x + (norm.bias - norm.running_mean).view(1, -1, 1, 1))


def test_a_weight_normalised_learner_unrolls_with_its_running_mean_in_the_graph(float64):
    cfg = LearnerConfig(channels=(2,), num_classes=3, image_size=8, normalisation="weight_mean_only")
    learner = init_learner(cfg, torch.Generator().manual_seed(0))
    images = torch.randn(2, 4, 1, 8, 8, requires_grad=True)
    final = unroll(learner, initial_state(learner), images, torch.randint(0, 3, (2, 4)), torch.full((2,), 0.1),
                   torch.full((2,), 0.5), create_graph=True)
    running = next(value for name, value in final.buffers.items() if name.endswith("running_mean"))
    assert running.requires_grad
    learner_logits(learner, final, images[0].detach(), "eval").sum().backward()
    assert images.grad.abs().sum() > 0


def test_learners_drawn_per_outer_step_are_seeded_and_fixed_runs_draw_nothing():
    cfg = GTNConfig(learner_sampling="random_width", learner=PRESETS["base_fc"])
    first = training_learner(cfg, torch.Generator().manual_seed(3))
    assert first == training_learner(cfg, torch.Generator().manual_seed(3))
    assert all(32 <= a < 128 for a in first.channels[:1]) and 128 <= first.hidden[0] * 2 < 1024
    assert random_widths(cfg.learner, torch.Generator().manual_seed(4)) != first
    chosen = {training_learner(dataclasses.replace(cfg, learner_sampling="random_preset",
                                                   learner_presets=("base", "linear")),
                               torch.Generator().manual_seed(seed)).head for seed in range(20)}
    assert chosen == {"global_avg", "flatten"}
    generator = torch.Generator().manual_seed(5)
    state = generator.get_state()
    assert training_learner(GTNConfig(), generator) == LearnerConfig()
    assert torch.equal(generator.get_state(), state)
    with pytest.raises(ValueError, match="learner_presets=\\('base', 'nope'\\): expected names among"):
        GTNConfig(learner_sampling="random_preset", learner_presets=("base", "nope"))
    with pytest.raises(ValueError, match="weight_norm=True with upsampling='transposed'"):
        GeneratorConfig(weight_norm=True, upsampling="transposed")


def test_runs_stored_before_the_learner_families_count_as_the_same_config():
    from gtn_core.config import config_to_dict
    from tracking.stored_config import same_config

    today = config_to_dict(GTNConfig())
    stored = {key: value for key, value in today.items() if key not in ("learner_sampling", "learner_presets")}
    stored["learner"] = {key: today["learner"][key] for key in ("channels", "num_classes", "image_channels",
                                                                 "image_size", "negative_slope", "logit_batch_norm")}
    stored["generator"] = {key: value for key, value in today["generator"].items() if key != "weight_norm"}
    assert same_config(stored, today)
    assert not same_config(stored, config_to_dict(GTNConfig(learner=LearnerConfig(normalisation="weight"))))
