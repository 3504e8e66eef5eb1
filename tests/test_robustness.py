"""Robustness evaluation: corruptions are what they claim, foolbox's attack is iterated FGSM, modes stay untouched."""
import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from gtn_core.evaluations import robustness as rb

# The module's foolbox: importing it here directly would emit the scipy warning robustness.py filters.
foolbox = rb.foolbox


def tiny_model(batchnorm: bool = False, seed: int = 0) -> nn.Module:
    """A seeded conv net, 1x8x8 -> 10 logits, whose output depends strongly on its input."""
    layers = [nn.Conv2d(1, 4, 3, padding=1)] + ([nn.BatchNorm2d(4)] if batchnorm else [])
    model = nn.Sequential(*layers, nn.Tanh(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return model


def tiny_images(n: int = 64, seed: int = 1) -> torch.Tensor:
    """`n` uniform random images (n, 1, 8, 8) in [-1, 1]."""
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def own_predictions(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The model's labels for `images` (N,), so its clean accuracy is exactly 1."""
    with torch.no_grad():
        return model(images).argmax(dim=1)


def test_blur_zero_is_identity():
    images = tiny_images()
    assert rb.gaussian_blur(images, 0) is images


@pytest.mark.parametrize("beta", [0.5, 1.0, 4.0])
def test_blur_keeps_a_constant_image_and_roughly_the_mean(beta):
    # (2, 3, 5, 7): non-square, and beta=4 asks for a radius beyond both sides (clamped to side - 1).
    constant = torch.full((2, 3, 5, 7), 0.7)
    assert torch.allclose(rb.gaussian_blur(constant, beta), constant, atol=1e-6)
    images = tiny_images()
    blurred = rb.gaussian_blur(images, beta)
    assert blurred.shape == images.shape and blurred.min() >= -1 and blurred.max() <= 1
    assert abs(blurred.mean() - images.mean()) < 0.05
    assert blurred.std() < images.std()


@pytest.mark.parametrize("beta", [0.2, 1.0, 2.5])
def test_blur_kernel_sums_to_one_and_is_symmetric(beta):
    kernel = rb.blur_kernel(beta, max(1, math.ceil(3 * beta)))
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(kernel, kernel.flip(0)) and kernel.argmax() == kernel.numel() // 2


def test_noise_is_identity_at_zero_bounded_and_reproducible():
    images = tiny_images()
    assert rb.gaussian_noise(images, 0, torch.Generator().manual_seed(0)) is images
    first = rb.gaussian_noise(images, 0.8, torch.Generator().manual_seed(3))
    again = rb.gaussian_noise(images, 0.8, torch.Generator().manual_seed(3))
    other = rb.gaussian_noise(images, 0.8, torch.Generator().manual_seed(4))
    assert first.min() >= -1 and first.max() <= 1 and not torch.equal(first, images)
    assert torch.equal(first, again) and not torch.equal(first, other)
    noisy = rb.corrupted_accuracy(tiny_model(), images, own_predictions(tiny_model(), images), "noise", [0, 0.3, 1.0],
                                  torch.Generator().manual_seed(5))
    assert noisy == rb.corrupted_accuracy(tiny_model(), images, own_predictions(tiny_model(), images), "noise",
                                          [0, 0.3, 1.0], torch.Generator().manual_seed(5))
    assert noisy[0] == 1.0 and noisy[2] < 1.0


def test_foolbox_single_step_equals_fgsm_step(float64):
    model, images = tiny_model(), tiny_images(16)
    labels = torch.arange(16) % 10
    attack = foolbox.attacks.LinfBasicIterativeAttack(rel_stepsize=1.0, steps=1, random_start=False)
    _, attacked, _ = attack(foolbox.PyTorchModel(model.eval(), bounds=(-1, 1), device="cpu"), images, labels,
                            epsilons=[0.1])
    expected = rb.fgsm_step(model, images, labels, 0.1)
    assert attacked[0].dtype == torch.float64
    assert torch.allclose(attacked[0], expected, rtol=0, atol=1e-12)
    assert not torch.equal(expected, images)


def test_iterated_fgsm_equals_a_hand_written_projected_loop():
    model, images = tiny_model(), tiny_images()
    labels = own_predictions(model, images)
    betas = [0.002, 0.01]
    expected = []
    for beta in betas:
        radius, x = rb.FGSM_STEPS * beta, images
        for _ in range(rb.FGSM_STEPS):
            x = (images + (rb.fgsm_step(model, x, labels, beta) - images).clamp(-radius, radius)).clamp(-1, 1)
        expected.append(rb.accuracy_of(model, x, labels))
    assert rb.iterated_fgsm(model, images, labels, betas, batch_size=32) == expected
    assert 0 < expected[0] < 1  # the grid is neither trivially robust nor trivially broken
    assert all(p.grad is None for p in model.parameters())  # foolbox's backward() is kept off the parameters


def test_fgsm_accuracy_falls_with_strength():
    model, images = tiny_model(), tiny_images()
    labels = own_predictions(model, images)
    accuracies = rb.corrupted_accuracy(model, images, labels, "fgsm", [0, 0.001, 0.005, 0.02],
                                       torch.Generator().manual_seed(0), batch_size=32)
    assert accuracies[0] == 1.0
    assert all(a <= accuracies[0] for a in accuracies) and accuracies[-1] < accuracies[1]


def test_lbfgs_lowers_a_perfect_accuracy_and_grows_with_beta():
    model, images = tiny_model(), tiny_images()
    labels = own_predictions(model, images)
    accuracies = rb.corrupted_accuracy(model, images, labels, "lbfgs", [0, 100.0], torch.Generator())
    assert accuracies[0] == 1.0 and accuracies[1] < 1.0
    near = (rb.lbfgs_attack(model, images, labels, 0.01, step_size=0.01) - images).flatten(1).norm(dim=1)
    far = (rb.lbfgs_attack(model, images, labels, 100.0, step_size=0.01) - images).flatten(1).norm(dim=1)
    assert far.mean() > near.mean()
    with pytest.raises(ValueError, match=r"beta=0: expected a finite number > 0"):
        rb.lbfgs_attack(model, images, labels, 0)


@pytest.mark.parametrize(("corruption", "strengths", "message"), [
    ("rain", [0.1], r"corruption='rain': expected one of noise, blur, fgsm, lbfgs"),
    ("noise", [0.1, -0.5], r"strength -0.5: expected a finite number >= 0"),
    ("blur", [float("nan")], r"strength nan: expected a finite number >= 0"),
    ("fgsm", ["0.1"], r"strength '0.1': expected a finite number >= 0"),
])
def test_bad_corruption_or_strength_is_named(corruption, strengths, message):
    model, images = tiny_model(), tiny_images(8)
    with pytest.raises(ValueError, match=message):
        rb.corrupted_accuracy(model, images, torch.zeros(8, dtype=torch.long), corruption, strengths,
                              torch.Generator())


def test_bad_shapes_are_named():
    model, images = tiny_model(), tiny_images(8)
    with pytest.raises(ValueError, match=r"images \(8, 8, 8\): expected 4-D"):
        rb.accuracy_of(model, images[:, 0], torch.zeros(8, dtype=torch.long))
    with pytest.raises(ValueError, match=r"images \(8, 1, 8, 8\) and labels \(7,\)"):
        rb.accuracy_of(model, images, torch.zeros(7, dtype=torch.long))
    with pytest.raises(ValueError, match=r"images span \[.*\]: expected values in \[-1, 1\]"):
        rb.iterated_fgsm(model, images * 3, torch.zeros(8, dtype=torch.long), [0.1])


@pytest.mark.parametrize("corruption", rb.CORRUPTIONS)
def test_train_mode_batchnorm_stays_in_train_mode(corruption):
    model, images = tiny_model(batchnorm=True), tiny_images()
    labels = own_predictions(model, images)
    accuracies = rb.corrupted_accuracy(model, images, labels, corruption, [0, 0.05], torch.Generator().manual_seed(0),
                                       batch_size=32)
    assert len(accuracies) == 2 and all(0 <= a <= 1 for a in accuracies)
    assert all(module.training for module in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_import_and_attack_emit_no_foolbox_warning():
    # A fresh interpreter: foolbox warns only on its first import, which this test process already did.
    code = (
        "import warnings, torch\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    from gtn_core.evaluations import robustness as rb\n"
        "    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 3))\n"
        "    rb.iterated_fgsm(model, torch.zeros(6, 1, 2, 2), torch.zeros(6, dtype=torch.long), [0, 0.1])\n"
        "print([str(w.message) for w in caught])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
