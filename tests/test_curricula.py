"""Every teacher behind one interface: the curricula's sampling rules, real data, distillation, tuned SGD."""
import pytest
import torch

from conftest import tiny_config
from gtn_core.inner_hparams import ConstantHyperParams
from gtn_core.meta import RealData, meta_loss
from gtn_core.sgd_grid import SGDGridConfig, score_on_test, search_grid
from gtn_core.teachers import GTN, DistilledImages, RealDataTeacher, build_teacher


def _toy_data(n=200, seed=0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=generator)
    images = -torch.ones(n, 1, 8, 8)
    for k in range(3):  # class k: a bright k-th third of the image
        images[labels == k, :, :, k * 2:k * 2 + 3] = 1.0
    return images + 0.1 * torch.randn(images.shape, generator=generator), labels


def _step_rows(gtn, curriculum):
    """Each step's generator inputs as rows of the learned (K*B, Z) input table: (K, B) indices."""
    table = gtn.inputs.noise.flatten(0, 1)
    noise = curriculum.images.inputs[-1]  # (K, B, Z): the inputs this curriculum's steps are generated from
    return torch.tensor([[(table == row).all(dim=1).nonzero().item() for row in step] for step in noise])


def test_shuffled_batch_only_ever_yields_whole_learned_batches():
    cfg = tiny_config(curriculum="shuffled_batch", inner_steps=4)
    gtn = GTN(cfg)
    seen = set()
    for seed in range(6):
        rows = _step_rows(gtn, gtn.curriculum(torch.Generator().manual_seed(seed)))
        for step_rows in rows:
            batch = int(step_rows[0]) // cfg.batch_size
            assert step_rows.tolist() == list(range(batch * cfg.batch_size, (batch + 1) * cfg.batch_size))
            seen.add(batch)
    assert len(seen) > 1  # batches are drawn, not the fixed order


def test_all_shuffled_mixes_pairs_across_batches_and_keeps_labels_with_their_inputs():
    cfg = tiny_config(curriculum="all_shuffled", inner_steps=4)
    gtn = GTN(cfg)
    curriculum = gtn.curriculum(torch.Generator().manual_seed(0))
    rows = _step_rows(gtn, curriculum)
    origins = rows // cfg.batch_size
    assert any(len(set(step.tolist())) > 1 for step in origins)  # a step mixes learned batches
    assert all(len(set(step.tolist())) == cfg.batch_size for step in rows)  # B distinct pairs per step
    torch.testing.assert_close(curriculum.labels, gtn.labels.flatten()[rows])


def test_no_curriculum_never_reuses_an_input_and_draws_random_labels():
    cfg = tiny_config(curriculum="none", variant="random", inner_steps=4)
    gtn = GTN(cfg)
    generator = torch.Generator().manual_seed(0)
    first, second = gtn.curriculum(generator), gtn.curriculum(generator)
    noise = torch.cat([first.images.inputs[-1].flatten(0, 1), second.images.inputs[-1].flatten(0, 1)])
    assert torch.unique(noise, dim=0).shape[0] == noise.shape[0]
    assert not torch.equal(first.labels, second.labels)
    assert not torch.equal(first.labels, gtn.labels)


@pytest.mark.parametrize("curriculum, variant", [("shuffled_batch", "learned"), ("all_shuffled", "random_fixed"),
                                                 ("none", "random")])
def test_draws_are_seeded_so_a_meta_test_is_reproducible(curriculum, variant):
    cfg = tiny_config(curriculum=curriculum, variant=variant, seed=3)
    gtn = GTN(cfg)  # one teacher: its draws depend on the generator alone, never on the calls before
    draws = [gtn.curriculum(torch.Generator().manual_seed(9)) for _ in range(2)]
    assert torch.equal(draws[0].labels, draws[1].labels)
    torch.testing.assert_close(draws[0].materialize(), draws[1].materialize(), rtol=0, atol=0)


@pytest.mark.parametrize("overrides, message", [
    ({"curriculum": "none", "variant": "learned"}, r"curriculum='none' with variant='learned'.*variant='random'"),
    ({"curriculum": "shuffled_batch", "variant": "random"}, r"curriculum='shuffled_batch' with variant='random'"),
    ({"teacher": "real_data", "curriculum": "all_shuffled"}, r"curriculum='all_shuffled' with teacher='real_data'"),
    ({"teacher": "distillation", "variant": "random"}, r"variant='random' with teacher='distillation'"),
    ({"teacher": "vae"}, r"teacher='vae'.*gtn, real_data, distillation, gan"),
    ({"curriculum": "reversed"}, r"curriculum='reversed'.*full, shuffled_batch, all_shuffled, none"),
])
def test_combinations_that_make_no_sense_are_rejected_by_name(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_real_data_teacher_draws_distinct_training_images_each_loop():
    images, labels = _toy_data()
    cfg = tiny_config(teacher="real_data")
    teacher = build_teacher(cfg, images, labels)
    assert isinstance(teacher, RealDataTeacher) and not teacher.fixed_curriculum
    generator = torch.Generator().manual_seed(0)
    first, second = teacher.curriculum(generator), teacher.curriculum(generator)
    batches = first.materialize().flatten(0, 1)
    assert torch.unique(batches, dim=0).shape[0] == cfg.inner_steps * cfg.batch_size
    rows = [(images == image).flatten(1).all(dim=1).nonzero().item() for image in batches]
    assert torch.equal(labels[rows].view(cfg.inner_steps, cfg.batch_size), first.labels)
    assert not torch.equal(first.materialize(), second.materialize()) and not torch.equal(first.labels, second.labels)
    assert [name for name, _ in teacher.named_parameters()] == ["hparams.log_lr", "hparams.logit_momentum"]
    assert "images" not in teacher.state_dict()  # the training set is data, not teacher state
    with pytest.raises(ValueError, match="needs the training images"):
        build_teacher(cfg)


def test_distilled_pixels_stay_in_range_and_are_learned():
    cfg = tiny_config(teacher="distillation")
    teacher = build_teacher(cfg)
    assert isinstance(teacher, DistilledImages) and teacher.fixed_curriculum
    images = teacher.curriculum(torch.Generator()).materialize()
    assert images.shape == (3, 6, 1, 8, 8) and images.abs().max() < 1
    assert {group["name"] for group in teacher.param_groups(cfg)} == {"inputs", "inner_hparams"}


def _probes(teacher):
    """Two scalar coordinates of every learned tensor of a teacher."""
    return [(param, index) for _, param in teacher.named_parameters()
            for index in {tuple([0] * param.dim()), tuple(size - 1 for size in param.shape)}]


TEACHERS = [{"curriculum": "full"}, {"curriculum": "shuffled_batch"}, {"curriculum": "all_shuffled"},
            {"curriculum": "none", "variant": "random"}, {"teacher": "real_data"}, {"teacher": "distillation"}]


@pytest.mark.parametrize("checkpoint", [False, True])
@pytest.mark.parametrize("overrides", TEACHERS, ids=lambda o: "-".join(o.values()))
def test_meta_gradients_of_every_teacher_match_central_finite_differences(overrides, checkpoint, float64):
    cfg = tiny_config(inner_lr_init=0.2, checkpoint_unroll=checkpoint, **overrides)
    images, labels = _toy_data(60)
    teacher = build_teacher(cfg, images, labels)
    real_images, real_labels = images[:9], labels[:9]

    def loss():
        # The same draws (learner init, batches, fresh inputs) at every evaluation: a deterministic function.
        return meta_loss(teacher, cfg, real_images, real_labels, torch.Generator().manual_seed(7))

    loss().backward()
    eps = 1e-6
    for tensor, index in _probes(teacher):
        with torch.no_grad():
            tensor[index] += eps
            plus = loss().item()
            tensor[index] -= 2 * eps
            minus = loss().item()
            tensor[index] += eps
        numeric = (plus - minus) / (2 * eps)
        assert tensor.grad[index].item() == pytest.approx(numeric, rel=1e-5, abs=1e-8), (tuple(tensor.shape), index)


def test_constant_hyper_parameters_allow_plain_sgd_without_momentum():
    hparams = ConstantHyperParams(4, 0.1, 0.0)
    assert hparams.lrs().tolist() == pytest.approx([0.1] * 4) and hparams.momenta().tolist() == [0.0] * 4
    assert list(hparams.parameters()) == []
    with pytest.raises(ValueError, match="momentum=1.0"):
        ConstantHyperParams(4, 0.1, 1.0)


def test_sgd_grid_scores_every_point_on_the_validation_split_and_the_best_on_the_test_set():
    images, labels = _toy_data(300)
    data = RealData(images, labels, images[:50], labels[:50])
    cfg = tiny_config()
    grid = SGDGridConfig(batch_size=cfg.batch_size, inner_steps=cfg.inner_steps, learner=cfg.learner,
                         lrs=(1e-4, 0.3), momenta=(0.0, 0.9), repeats=2, test_repeats=3, validation_size=100,
                         eval_batch_size=50)
    points = list(search_grid(grid, data))
    assert [(p.lr, p.momentum) for p in points] == [(1e-4, 0.0), (1e-4, 0.9), (0.3, 0.0), (0.3, 0.9)]
    assert all(len(p.accuracies) == 2 for p in points)
    best = max(points, key=lambda p: p.mean)
    assert best.lr == 0.3  # a tiny lr cannot learn in 3 steps
    assert len(score_on_test(grid, data, best).accuracies) == 3
    with pytest.raises(ValueError, match="validation_size=290"):
        list(search_grid(SGDGridConfig(batch_size=6, inner_steps=3, learner=cfg.learner, validation_size=290), data))
    with pytest.raises(ValueError, match="momenta=\\(1.5,\\)"):
        SGDGridConfig(momenta=(1.5,))


@pytest.mark.parametrize("overrides", TEACHERS, ids=lambda o: "-".join(o.values()))
def test_every_teacher_survives_a_checkpoint_round_trip(overrides, tmp_path):
    from gtn_core.checkpoint import load_checkpoint, save_checkpoint

    images, labels = _toy_data(60)
    cfg = tiny_config(**overrides)
    teacher = build_teacher(cfg, images, labels)
    with torch.no_grad():
        for param in teacher.parameters():
            param.add_(0.5)  # a trained teacher differs from a fresh one
    path = save_checkpoint(teacher, cfg, tmp_path / "teacher.pt")
    restored, restored_cfg = load_checkpoint(path, "cpu", images, labels)
    assert restored_cfg == cfg and type(restored) is type(teacher)
    draws = [t.curriculum(torch.Generator().manual_seed(5)) for t in (teacher, restored)]
    torch.testing.assert_close(draws[0].materialize(), draws[1].materialize(), rtol=0, atol=0)
    assert torch.equal(draws[0].labels, draws[1].labels)
    torch.testing.assert_close(restored.hparams.lrs(), teacher.hparams.lrs(), rtol=0, atol=0)
