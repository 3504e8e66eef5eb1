"""Recompute-in-backward unroll: exact meta-gradients while holding one inner step's graph at a time.

The forward pass runs the K inner steps without a graph and keeps only each step's starting state (learner
parameters, BatchNorm buffers, momentum velocity: a few MB). The backward pass walks the steps in reverse: it
regenerates step t's images from the teacher, redoes step t with the graph kept, and back-propagates through that
one step before moving on. Memory is one step's graph (teacher activations included) instead of K; the cost is
one extra forward pass per step without a graph. `torch.utils.checkpoint` was measured first: its saved-tensor
hooks also fire for the inner `autograd.grad` inside each step, so it recomputed every step during the forward
pass too (~2x slower) and saved little memory (see BENCHMARKS.md).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from gtn_core.sgd import Params, sgd_step


@dataclass(frozen=True)
class GeneratedImages:
    """Step t's images as a pure function of explicit tensors: `generate(step, *inputs)` -> (B, C, H, W)."""

    generate: Callable[..., torch.Tensor]
    inputs: tuple[torch.Tensor, ...]

    def __call__(self, step: int) -> torch.Tensor:
        """The images of inner step `step`."""
        return self.generate(step, *self.inputs)


@dataclass(frozen=True)
class _Spec:
    """The non-tensor context of one recomputed unroll."""

    learner: nn.Module
    names: tuple[str, ...]
    buffers: Params
    generate: Callable[..., torch.Tensor]
    labels: torch.Tensor


def recomputed_unroll(learner: nn.Module, params: Params, buffers: Params, images: torch.Tensor | GeneratedImages,
                      labels: torch.Tensor, lrs: torch.Tensor, momenta: torch.Tensor) -> tuple[Params, Params]:
    """Final (params, buffers) of K SGD-momentum steps, differentiable like a graph-keeping unroll."""
    if not isinstance(images, GeneratedImages):
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images of type {type(images).__name__}: checkpointing needs a (K, B, C, H, W) tensor "
                            "or GeneratedImages (a generator with its explicit input tensors)")
        images = GeneratedImages(_index, (images,))
    names = tuple(params)
    spec = _Spec(learner, names, buffers, images.generate, labels)
    outputs = _RecomputedUnroll.apply(spec, lrs, momenta, *params.values(), *images.inputs)
    final_params = dict(zip(names, outputs[:len(names)]))
    final_buffers = dict(zip(buffers, outputs[len(names):]))
    return final_params, final_buffers


def _index(step: int, images: torch.Tensor) -> torch.Tensor:
    return images[step]


class _RecomputedUnroll(torch.autograd.Function):
    """Inputs: spec, lrs (K,), momenta (K,), *start params, *image inputs; outputs: *final params, *final buffers."""

    @staticmethod
    def forward(ctx, spec, lrs, momenta, *tensors):
        count = len(spec.names)
        image_inputs = tensors[count:]
        params = {name: p.detach().requires_grad_() for name, p in zip(spec.names, tensors[:count])}
        buffers, velocity = spec.buffers, None
        starts = _StepStates(spec.labels.shape[0], list(params.values()))
        with torch.enable_grad():  # the inner gradients need autograd, even though no graph is kept
            for step in range(spec.labels.shape[0]):
                starts.put(step, list(params.values()), velocity)
                with torch.no_grad():
                    images = spec.generate(step, *image_inputs)
                params, buffers, velocity = sgd_step(spec.learner, params, buffers, velocity, images,
                                                     spec.labels[step], lrs[step].detach(), momenta[step].detach(),
                                                     create_graph=False)
        ctx.spec, ctx.starts = spec, starts
        ctx.save_for_backward(lrs, momenta, *image_inputs)
        final_buffers = [b.detach() for b in buffers.values()]
        ctx.mark_non_differentiable(*final_buffers)
        return (*[p.detach() for p in params.values()], *final_buffers)

    @staticmethod
    def backward(ctx, *grad_outputs):
        if ctx.starts is None:
            raise RuntimeError("a checkpointed unroll can be back-propagated only once (its stored states are freed)")
        spec, count = ctx.spec, len(ctx.spec.names)
        lrs, momenta, *image_inputs = ctx.saved_tensors
        wants_images = ctx.needs_input_grad[3 + count:]
        grad_params, grad_velocity = list(grad_outputs[:count]), None
        grad_lrs, grad_momenta = torch.zeros_like(lrs), torch.zeros_like(momenta)
        grad_images = [torch.zeros_like(x) if wanted else None for x, wanted in zip(image_inputs, wants_images)]
        for step in reversed(range(spec.labels.shape[0])):
            grad_params, grad_velocity = _backward_step(
                spec, ctx.starts, step, lrs, momenta, image_inputs, wants_images, grad_params, grad_velocity,
                grad_lrs, grad_momenta, grad_images)
        ctx.starts = None  # free the stored states as soon as they are used
        return (None, grad_lrs, grad_momenta, *grad_params, *grad_images)


class _StepStates:
    """Each step's starting parameters and velocity, packed into one preallocated (K, 2, P) tensor.

    One allocation instead of 2K small ones scattered between the steps' large transient activations: measured,
    the scattered version let glibc's heap fragment and peak RSS grow by ~25 MB per inner step at B=128.
    """

    def __init__(self, steps: int, template: list[torch.Tensor]) -> None:
        self.shapes = [t.shape for t in template]
        self.sizes = [t.numel() for t in template]
        self.rows = template[0].new_empty(steps, 2, sum(self.sizes))
        self.has_velocity = [False] * steps

    def put(self, step: int, params: list[torch.Tensor], velocity: list[torch.Tensor] | None) -> None:
        """Record step `step`'s starting state (velocity None before the first step)."""
        torch.cat([p.detach().reshape(-1) for p in params], out=self.rows[step, 0])
        if velocity is not None:
            torch.cat([v.detach().reshape(-1) for v in velocity], out=self.rows[step, 1])
        self.has_velocity[step] = velocity is not None

    def get(self, step: int) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """Fresh leaves requiring grad for step `step`'s parameters and velocity."""
        def unpack(row):
            return [chunk.view(shape).clone().requires_grad_()
                    for chunk, shape in zip(row.split(self.sizes), self.shapes)]
        return unpack(self.rows[step, 0]), unpack(self.rows[step, 1]) if self.has_velocity[step] else None


def _backward_step(spec, starts, step, lrs, momenta, image_inputs, wants_images, grad_params, grad_velocity,
                   grad_lrs, grad_momenta, grad_images):
    """Redo step `step` with its graph, back-propagate the incoming gradients; accumulate the meta-gradients."""
    start_params, velocity = starts.get(step)
    params = dict(zip(spec.names, start_params))
    # Train-mode BatchNorm normalises with batch statistics, so the step's outputs do not depend on the running
    # statistics it starts from: the initial buffers stand in for them (the updated ones are not differentiated).
    buffers = spec.buffers
    lr, momentum = lrs[step].detach().requires_grad_(), momenta[step].detach().requires_grad_()
    leaves = [x.detach().requires_grad_(wanted) for x, wanted in zip(image_inputs, wants_images)]
    with torch.enable_grad():
        images = spec.generate(step, *leaves)
        new_params, _, new_velocity = sgd_step(spec.learner, params, buffers, velocity, images, spec.labels[step],
                                               lr, momentum, create_graph=True)
        outputs = list(new_params.values()) + (new_velocity if grad_velocity is not None else [])
        grads_out = grad_params + (grad_velocity if grad_velocity is not None else [])
        wanted = [leaf for leaf, want in zip(leaves, wants_images) if want]
        inputs = list(params.values()) + (velocity or []) + [lr, momentum] + wanted
        grads = torch.autograd.grad(outputs, inputs, grads_out, allow_unused=True)
    grads = [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]
    count = len(params)
    velocity_count = len(velocity) if velocity is not None else 0
    new_grad_params = grads[:count]
    new_grad_velocity = grads[count:count + velocity_count] if velocity is not None else None
    grad_lrs[step] += grads[count + velocity_count]
    grad_momenta[step] += grads[count + velocity_count + 1]
    image_grads = iter(grads[count + velocity_count + 2:])
    for index, want in enumerate(wants_images):
        if want:
            grad_images[index] += next(image_grads)
    return new_grad_params, new_grad_velocity
