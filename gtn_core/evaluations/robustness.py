"""Test accuracy of a classifier under a corruption (noise, blur) or an attack (iterated FGSM, L-BFGS) of a strength.

A classifier maps images (N, C, H, W) in [-1, 1] to logits (N, classes). It may hold a train-mode BatchNorm, so it
is always run on chunks of `batch_size` and no module's train/eval mode is ever changed here.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from numbers import Real

import eagerpy as ep
import torch
import torch.nn.functional as F
from torch import nn

with warnings.catch_warnings():
    # foolbox 3.3.4 imports gaussian_filter from the deprecated scipy.ndimage.filters (foolbox issue #702).
    warnings.filterwarnings("ignore", message=r"Please import `gaussian_filter` from the `scipy\.ndimage` namespace",
                            category=DeprecationWarning, module=r"foolbox\.attacks\.blur")
    import foolbox

Classifier = Callable[[torch.Tensor], torch.Tensor]
CORRUPTIONS = ("noise", "blur", "fgsm", "lbfgs")
FGSM_STEPS = 30


def accuracy_of(classifier: Classifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 250) -> float:
    """Fraction of `images` (N, C, H, W) that `classifier` labels correctly, scored in chunks of `batch_size`."""
    return _accuracy_under(classifier, images, labels, lambda x, y: x, batch_size)


def gaussian_noise(images: torch.Tensor, beta: float, generator: torch.Generator) -> torch.Tensor:
    """clip(x + beta * z, -1, 1) with z ~ N(0, 1) drawn from the CPU `generator`; beta=0 returns `images`."""
    _check_strength(beta)
    if generator.device.type != "cpu":
        raise ValueError(f"generator on {generator.device}: expected a CPU torch.Generator")
    if beta == 0:
        return images
    z = torch.randn(images.shape, generator=generator, dtype=images.dtype).to(images.device)
    return (images + beta * z).clamp(-1, 1)


def blur_kernel(beta: float, radius: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A 1-D Gaussian kernel (2 * radius + 1,) of standard deviation `beta` pixels, normalised to sum 1."""
    offsets = torch.arange(-radius, radius + 1, dtype=dtype)
    kernel = torch.exp(-offsets ** 2 / (2 * beta ** 2))
    return kernel / kernel.sum()


def gaussian_blur(images: torch.Tensor, beta: float) -> torch.Tensor:
    """Blur each channel of `images` (N, C, H, W) by a Gaussian of `beta` pixels (reflect padding); beta=0 is identity."""
    _check_images(images)
    _check_strength(beta)
    if beta == 0:
        return images
    radius = max(1, math.ceil(3 * beta))
    channels, height, width = images.shape[1:]
    # Reflect padding needs radius < side; a constant image then stays constant, unlike zero padding.
    rows, cols = min(radius, height - 1), min(radius, width - 1)
    k_rows = blur_kernel(beta, rows, images.dtype).to(images.device)
    k_cols = blur_kernel(beta, cols, images.dtype).to(images.device)
    x = F.pad(images, (cols, cols, 0, 0), mode="reflect")
    x = F.conv2d(x, k_cols.expand(channels, 1, 1, -1), groups=channels)  # (N, C, H, W), rows still unblurred
    x = F.pad(x, (0, 0, rows, rows), mode="reflect")
    x = F.conv2d(x, k_rows.view(-1, 1).expand(channels, 1, -1, 1), groups=channels)  # (N, C, H, W)
    # A convex combination of values in [-1, 1]; the clamp only absorbs a rounding ulp.
    return x.clamp(-1, 1)


def fgsm_step(classifier: Classifier, images: torch.Tensor, labels: torch.Tensor, beta: float) -> torch.Tensor:
    """One fast-gradient-sign step clip(x + beta * sign(grad_x CE), -1, 1) on `images` (N, C, H, W)."""
    _check_batch(images, labels)
    _check_strength(beta)
    return (images + beta * _loss_gradient(classifier, images, labels).sign()).clamp(-1, 1)


def lbfgs_attack(classifier: Classifier, images: torch.Tensor, labels: torch.Tensor, beta: float, *,
                 step_size: float = 1.0, steps: int = 30) -> torch.Tensor:
    """Willis's L-BFGS-style attack: `steps` ascents on CE(x) - ||x - x0||_2 / beta.

    The default step 1.0 is calibrated on MNIST (images in [-1, 1], a learner at 0.96): at 0.01 thirty steps move a
    pixel by ~3e-3 and change nothing; at 1.0 accuracy falls from 0.96 to 0.89 at beta 1 and to 0.05 at beta 3.
    The penalty's gradient is a unit vector whatever the distance, so with step_size / beta well above 1 each
    pull-back overshoots x0 and pushes the image against the loss gradient (accuracy can then rise): keep
    beta >= step_size.
    """
    _check_batch(images, labels)
    _check_strength(beta)
    if beta == 0:
        raise ValueError(f"beta={beta!r}: expected a finite number > 0 (larger beta = weaker distance penalty)")
    x0, x = images.detach(), images.detach()
    for _ in range(steps):
        offset = (x - x0).flatten(1)  # (N, C * H * W)
        # The gradient of ||x - x0||_2 is the unit offset, 0 where x == x0 (there offset / tiny is 0).
        unit = (offset / offset.norm(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)).view_as(x)
        x = (x + step_size * (_loss_gradient(classifier, x, labels) - unit / beta)).clamp(-1, 1)
    return x


def iterated_fgsm(classifier: Classifier, images: torch.Tensor, labels: torch.Tensor, betas: Sequence[float],
                  batch_size: int = 250) -> list[float]:
    """Accuracy under 30 FGSM steps of size beta each (L-inf ball of 30 * beta), for each beta, via foolbox."""
    _check_batch(images, labels)
    betas = _check_strengths(betas)
    _check_batch_size(batch_size)
    model = foolbox.PyTorchModel(_ClassifierModule(classifier), bounds=(-1, 1), device=images.device)
    attack = _InputGradientBIM(rel_stepsize=1 / FGSM_STEPS, steps=FGSM_STEPS, random_start=False)
    epsilons = [FGSM_STEPS * beta for beta in betas if beta > 0]
    correct = torch.zeros(len(betas), dtype=torch.long)
    for x, y in zip(images.split(batch_size), labels.long().split(batch_size)):
        # Foolbox counts an already-misclassified image as a success, so ~success is accuracy under attack.
        still_correct = iter(~attack(model, x, y, epsilons=epsilons)[2] if epsilons else ())  # (K, n) bool
        with torch.no_grad():
            clean = classifier(x).argmax(dim=1) == y if 0 in betas else None  # (n,) bool; foolbox skips eps 0
        correct += torch.stack([(clean if beta == 0 else next(still_correct)).sum().cpu() for beta in betas])
    return [int(count) / images.shape[0] for count in correct]  # Python floats, not float32


def corrupted_accuracy(classifier: Classifier, images: torch.Tensor, labels: torch.Tensor, corruption: str,
                       strengths: Sequence[float], generator: torch.Generator, batch_size: int = 250,
                       lbfgs_step_size: float = 1.0) -> list[float]:
    """Accuracy of `classifier` on `images` (N, C, H, W) under `corruption` at each strength (0 = clean)."""
    if corruption not in CORRUPTIONS:
        raise ValueError(f"corruption={corruption!r}: expected one of {', '.join(CORRUPTIONS)}")
    strengths = _check_strengths(strengths)
    _check_batch(images, labels)
    _check_batch_size(batch_size)
    if corruption == "fgsm":
        return iterated_fgsm(classifier, images, labels, strengths, batch_size)
    start = generator.get_state()
    accuracies = []
    for beta in strengths:
        # Every strength sees the same noise draws, so the curve's steps come from beta, not from a fresh sample.
        generator.set_state(start)
        corrupt = _corruption(classifier, corruption, beta, generator, lbfgs_step_size)
        accuracies.append(_accuracy_under(classifier, images, labels, corrupt, batch_size))
    return accuracies


def _corruption(classifier: Classifier, corruption: str, beta: float, generator: torch.Generator,
                lbfgs_step_size: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The map (chunk images, chunk labels) -> corrupted images for a non-foolbox corruption at strength `beta`."""
    if corruption == "noise":
        return lambda x, y: gaussian_noise(x, beta, generator)
    if corruption == "blur":
        return lambda x, y: gaussian_blur(x, beta)
    # L-BFGS strength 0 means no attack (its beta is a penalty's inverse, so 0 has no attack of its own).
    return lambda x, y: lbfgs_attack(classifier, x, y, beta, step_size=lbfgs_step_size) if beta > 0 else x


class _ClassifierModule(nn.Module):
    """The nn.Module foolbox wants, holding the classifier unregistered so foolbox's `.to()` never reaches it."""

    def __init__(self, classifier: Classifier) -> None:
        super().__init__()
        self.__dict__["classifier"] = classifier  # not a submodule: its modes and device stay the caller's
        # Only this wrapper's own flag (it has no submodules); it silences foolbox's "training mode" warning.
        self.training = False

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(images)


class _InputGradientBIM(foolbox.attacks.LinfBasicIterativeAttack):
    """Foolbox's L-inf BIM, its gradient taken w.r.t. the images only (eagerpy's `backward()` fills params' .grad)."""

    def value_and_grad(self, loss_fn, x):
        inputs = x.raw.detach().requires_grad_()
        loss = loss_fn(ep.astensor(inputs)).raw
        (grad,) = torch.autograd.grad(loss, inputs)
        return ep.astensor(loss.detach()), ep.astensor(grad)


def _loss_gradient(classifier: Classifier, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """grad_x of the summed cross-entropy at `images`, without touching any parameter's .grad."""
    with torch.enable_grad():
        inputs = images.detach().requires_grad_()
        loss = F.cross_entropy(classifier(inputs), labels.long(), reduction="sum")
        (grad,) = torch.autograd.grad(loss, inputs)
    return grad


def _accuracy_under(classifier: Classifier, images: torch.Tensor, labels: torch.Tensor,
                    corrupt: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], batch_size: int) -> float:
    """Fraction correct on `corrupt(chunk, chunk_labels)`, chunk by chunk (the chunk is a train-mode BN's batch)."""
    _check_batch(images, labels)
    _check_batch_size(batch_size)
    correct = 0
    for x, y in zip(images.split(batch_size), labels.split(batch_size)):
        x = corrupt(x, y)
        with torch.no_grad():
            correct += (classifier(x).argmax(dim=1) == y).sum().item()
    return correct / images.shape[0]


def _check_images(images: torch.Tensor) -> None:
    if images.dim() != 4:
        raise ValueError(f"images {tuple(images.shape)}: expected 4-D (N, C, H, W)")


def _check_batch(images: torch.Tensor, labels: torch.Tensor) -> None:
    _check_images(images)
    if labels.dim() != 1 or labels.shape[0] != images.shape[0] or images.shape[0] == 0:
        raise ValueError(f"images {tuple(images.shape)} and labels {tuple(labels.shape)}: expected labels (N,), N > 0")
    low, high = images.min().item(), images.max().item()
    if low < -1 or high > 1:
        raise ValueError(f"images span [{low:.4g}, {high:.4g}]: expected values in [-1, 1]")


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: expected a positive int")


def _check_strength(beta: float) -> None:
    if isinstance(beta, bool) or not isinstance(beta, Real) or not math.isfinite(beta) or beta < 0:
        raise ValueError(f"strength {beta!r}: expected a finite number >= 0")


def _check_strengths(strengths: Sequence[float]) -> list[float]:
    strengths = list(strengths)
    if not strengths:
        raise ValueError("strengths=[]: expected at least one strength")
    for beta in strengths:
        _check_strength(beta)
    return [float(beta) for beta in strengths]
