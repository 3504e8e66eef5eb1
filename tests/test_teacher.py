"""Teacher, teacher-input variants, checkpoints, meta-test order and the curriculum picture."""
import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_config
from gtn_core.checkpoint import load_checkpoint, save_checkpoint
from gtn_core.evaluate import meta_test, shuffled_order
from gtn_core.teachers import GTN
from gtn_core.teachers.generator import TeacherInputs, curriculum_labels
from gtn_core.visualize import save_curriculum_png


def test_curriculum_has_the_documented_shapes_and_range():
    cfg = tiny_config()
    curriculum = GTN(cfg).curriculum(torch.Generator())
    images, labels = curriculum.materialize(), curriculum.labels
    assert images.shape == (3, 6, 1, 8, 8)
    assert labels.shape == (3, 6)
    assert images.min() >= -1 and images.max() <= 1


def test_transposed_upsampling_generates_the_same_shapes_and_trains_every_weight():
    base = tiny_config()
    cfg = dataclasses.replace(base, generator=dataclasses.replace(base.generator, upsampling="transposed"))
    gtn = GTN(cfg)
    assert any(isinstance(m, torch.nn.ConvTranspose2d) for m in gtn.generator.modules())
    assert not any(isinstance(m, torch.nn.Upsample) for m in gtn.generator.modules())
    images = gtn.curriculum(torch.Generator()).materialize()
    assert images.shape == (3, 6, 1, 8, 8) and images.min() >= -1 and images.max() <= 1
    images.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in gtn.generator.parameters())
    with pytest.raises(ValueError, match="upsampling='bilinear': expected one of nearest, transposed"):
        dataclasses.replace(base.generator, upsampling="bilinear")


def test_each_step_is_generated_on_its_own_and_lazily_alike(float64):
    """BatchNorm statistics are per step: changing one step's inputs leaves every other step's images unchanged."""
    gtn = GTN(tiny_config(inner_steps=4))
    curriculum = gtn.curriculum(torch.Generator())
    images = curriculum.materialize()
    for step in range(4):  # a step alone gives what the whole curriculum gives for it
        torch.testing.assert_close(gtn.generator(gtn.inputs.noise[step], curriculum.labels[step]), images[step],
                                   rtol=0, atol=0)
    with torch.no_grad():
        gtn.inputs.noise[2] *= -2.0  # not a constant shift: BatchNorm would cancel that
    changed = gtn.curriculum(torch.Generator()).materialize()
    assert not torch.allclose(changed[2], images[2])
    torch.testing.assert_close(changed[[0, 1, 3]], images[[0, 1, 3]], rtol=0, atol=0)


def test_labels_are_fixed_and_as_even_as_possible():
    labels = curriculum_labels(inner_steps=20, batch_size=32, num_classes=10)
    counts = torch.bincount(labels.flatten(), minlength=10)
    assert counts.tolist() == [64] * 10
    per_step = torch.stack([torch.bincount(row, minlength=10) for row in labels])
    assert per_step.max() - per_step.min() <= 1
    assert torch.equal(labels, curriculum_labels(20, 32, 10))


def test_random_inputs_change_between_outer_steps_and_fixed_ones_do_not():
    cfg = tiny_config(variant="random")
    gtn = GTN(cfg)
    generator = torch.Generator().manual_seed(0)
    assert not torch.equal(gtn.inputs(generator), gtn.inputs(generator))
    for variant in ("random_fixed", "learned"):
        gtn = GTN(tiny_config(variant=variant))
        assert torch.equal(gtn.inputs(generator), gtn.inputs(generator))


def test_input_distributions(float64):
    for distribution, check in (("uniform", lambda x: x.abs().max() <= 1), ("normal", lambda x: x.abs().max() > 1)):
        inputs = TeacherInputs("random", 10, 32, 8, distribution, torch.Generator().manual_seed(0))
        assert check(inputs(torch.Generator().manual_seed(1)))


def test_random_fixed_inputs_survive_a_checkpoint_round_trip(tmp_path):
    cfg = tiny_config(variant="random_fixed", seed=5)
    gtn = GTN(cfg)
    with torch.no_grad():
        gtn.generator.dense[0].weight.add_(1.0)  # a trained teacher differs from a fresh one
    path = save_checkpoint(gtn, cfg, tmp_path / "teacher.pt")
    other_seed = GTN(tiny_config(variant="random_fixed", seed=6))
    assert not torch.equal(other_seed.inputs.noise, gtn.inputs.noise)
    restored, restored_cfg = load_checkpoint(path)
    assert restored_cfg == cfg
    assert torch.equal(restored.inputs.noise, gtn.inputs.noise)
    torch.testing.assert_close(restored.curriculum(torch.Generator()).materialize(),
                               gtn.curriculum(torch.Generator()).materialize(), rtol=0, atol=0)


def test_random_inputs_come_from_the_callers_generator_so_a_meta_test_is_reproducible(tmp_path):
    cfg = tiny_config(variant="random")
    gtn = GTN(cfg)
    path = save_checkpoint(gtn, cfg, tmp_path / "teacher.pt")
    restored, _ = load_checkpoint(path)
    assert torch.equal(restored.inputs(torch.Generator().manual_seed(4)), gtn.inputs(torch.Generator().manual_seed(4)))
    learners = [meta_test(gtn, cfg, torch.Generator().manual_seed(2))[1].params for _ in range(2)]
    torch.testing.assert_close(learners[0], learners[1], rtol=0, atol=0)


def test_load_checkpoint_names_a_bad_file(tmp_path):
    bad = tmp_path / "teacher.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="teacher.pt"):
        load_checkpoint(bad)
    torch.save({"something": 1}, bad)
    with pytest.raises(ValueError, match="format_version"):
        load_checkpoint(bad)


def test_shuffled_meta_test_moves_whole_batches_and_validates_the_order():
    cfg = tiny_config()
    gtn = GTN(cfg)
    order = shuffled_order(cfg.inner_steps, torch.Generator().manual_seed(1))
    assert sorted(order.tolist()) == [0, 1, 2]
    same = [meta_test(gtn, cfg, torch.Generator().manual_seed(0), order=o)[1] for o in (None, torch.arange(3))]
    torch.testing.assert_close(same[0].params, same[1].params)
    shuffled = meta_test(gtn, cfg, torch.Generator().manual_seed(0), order=torch.tensor([2, 0, 1]))[1]
    assert not torch.equal(shuffled.params["classifier.weight"], same[0].params["classifier.weight"])
    with pytest.raises(ValueError, match="permutation of range\\(3\\)"):
        meta_test(gtn, cfg, torch.Generator(), order=torch.tensor([0, 0, 1]))


def test_curriculum_png_has_one_tile_per_step_and_position(tmp_path):
    images = GTN(tiny_config()).curriculum(torch.Generator()).materialize()
    path = save_curriculum_png(images, tmp_path / "curriculum.png")
    picture = np.asarray(Image.open(path))
    assert picture.shape == (3 * 9 - 1, 6 * 9 - 1)
    assert len(np.unique(picture)) > 2


def test_a_checkpoint_of_format_1_still_loads(tmp_path):
    """Format 1 named the generator `teacher` (config section and weights)."""
    import dataclasses as dc

    cfg = tiny_config(variant="random_fixed")
    gtn = GTN(cfg)
    config = {key: value for key, value in dc.asdict(cfg).items() if key not in ("teacher", "curriculum")}
    config["teacher"] = config.pop("generator")
    state = {key.replace("generator.", "teacher.", 1): value for key, value in gtn.state_dict().items()}
    path = tmp_path / "old.pt"
    torch.save({"format_version": 1, "config": config, "state_dict": state,
                "noise_generator_state": torch.Generator().get_state()}, path)
    restored, restored_cfg = load_checkpoint(path)
    assert restored_cfg == cfg
    assert torch.equal(restored.inputs.noise, gtn.inputs.noise)
