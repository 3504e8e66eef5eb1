"""Recompute-in-backward unroll: exact meta-gradients while holding one inner step's graph at a time.

The forward pass runs the K inner steps without a graph and keeps only each step's starting state (learner
parameters, BatchNorm buffers, momentum velocity: a few MB). The backward pass walks the steps in reverse: it
regenerates step t's images from the teacher, redoes step t from its stored state with the graph kept, and
back-propagates through that one step before moving on, the BatchNorm running statistics included (a meta-loss
in bn_mode="eval" depends on them). Memory is one step's graph (teacher activations included) instead of K; the
cost is one extra forward pass per step without a graph. `torch.utils.checkpoint` was measured first: its saved-tensor
hooks also fire for the inner `autograd.grad` inside each step, so it recomputed every step during the forward
pass too (~2x slower) and saved little memory (see BENCHMARKS.md).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate

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
    buffer_names: tuple[str, ...]
    generate: Callable[..., torch.Tensor]
    labels: torch.Tensor


def recomputed_unroll(learner: nn.Module, params: Params, buffers: Params, images: torch.Tensor | GeneratedImages,
                      labels: torch.Tensor, lrs: torch.Tensor, momenta: torch.Tensor) -> tuple[Params, Params]:
    """Final (params, buffers) of K SGD-momentum steps, differentiable like a graph-keeping unroll."""
    if not isinstance(images, GeneratedImages):
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images of type {type(images).__name__}: checkpointing needs a (K, B, C, H, W) tensor "
                            "or GeneratedImages (a generator with its explicit input tensors)")
        images = tensor_images(images)
    spec = _Spec(learner, tuple(params), tuple(buffers), images.generate, labels)
    outputs = _RecomputedUnroll.apply(spec, lrs, momenta, *params.values(), *buffers.values(), *images.inputs)
    final_params = dict(zip(spec.names, outputs[:len(params)]))
    final_buffers = dict(zip(spec.buffer_names, outputs[len(params):]))
    return final_params, final_buffers


def tensor_images(images: torch.Tensor) -> GeneratedImages:
    """Step t's images taken from a ready (K, B, C, H, W) tensor."""
    return GeneratedImages(_index, (images,))


def _index(step: int, images: torch.Tensor) -> torch.Tensor:
    return images[step]


class _RecomputedUnroll(torch.autograd.Function):
    """Inputs: spec, lrs (K,), momenta (K,), *start params, *start buffers, *image inputs; outputs: *final params,
    *final buffers."""

    @staticmethod
    def forward(ctx, spec, lrs, momenta, *tensors):
        count, buffer_count = len(spec.names), len(spec.buffer_names)
        image_inputs = tensors[count + buffer_count:]
        params = {name: p.detach().requires_grad_() for name, p in zip(spec.names, tensors[:count])}
        buffers = {name: b.detach() for name, b in zip(spec.buffer_names, tensors[count:count + buffer_count])}
        velocity = None
        starts = _StepStates(spec.labels.shape[0], list(params.values()), list(buffers.values()))
        with torch.enable_grad():  # the inner gradients need autograd, even though no graph is kept
            for step in range(spec.labels.shape[0]):
                starts.put(step, list(params.values()), velocity, list(buffers.values()))
                with torch.no_grad():
                    images = spec.generate(step, *image_inputs)
                params, buffers, velocity = sgd_step(spec.learner, params, buffers, velocity, images,
                                                     spec.labels[step], lrs[step].detach(), momenta[step].detach(),
                                                     create_graph=False)
        ctx.spec, ctx.starts = spec, starts
        ctx.save_for_backward(lrs, momenta, *image_inputs)
        # Unused outputs then get None gradients: a meta-loss that ignores the final buffers (bn_mode="train")
        # skips back-propagating through the running statistics altogether.
        ctx.set_materialize_grads(False)
        return (*[p.detach() for p in params.values()], *buffers.values())

    @staticmethod
    def backward(ctx, *grad_outputs):
        if ctx.starts is None:
            raise RuntimeError("a checkpointed unroll can be back-propagated only once (its stored states are freed)")
        spec, count = ctx.spec, len(ctx.spec.names)
        lrs, momenta, *image_inputs = ctx.saved_tensors
        wants_images = ctx.needs_input_grad[3 + count + len(spec.buffer_names):]
        # The gradients with respect to a step's final (params, velocity, buffers); None stands for zero. The
        # final velocity is no output of the unroll.
        grads = [*grad_outputs[:count], *[None] * count, *grad_outputs[count:]]
        grad_lrs, grad_momenta = torch.zeros_like(lrs), torch.zeros_like(momenta)
        grad_images = [torch.zeros_like(x) if wanted else None for x, wanted in zip(image_inputs, wants_images)]
        # The steps are redone as they ran, in train mode, whatever mode scoring left the learner in since.
        was_training = spec.learner.training
        spec.learner.train()
        try:
            for step in reversed(range(spec.labels.shape[0])):
                grads = _backward_step(spec, ctx.starts, step, lrs, momenta, image_inputs, wants_images, grads,
                                       grad_lrs, grad_momenta, grad_images)
        finally:
            spec.learner.train(was_training)
        ctx.starts = None  # free the stored states as soon as they are used
        return (None, grad_lrs, grad_momenta, *grads[:count], *grads[2 * count:], *grad_images)


class _StepStates:
    """Each step's starting parameters, velocity and BatchNorm buffers, packed into one preallocated (K, 2P+Q) tensor.

    One allocation instead of 3K small ones scattered between the steps' large transient activations: measured,
    the scattered version let glibc's heap fragment and peak RSS grow by ~25 MB per inner step at B=128.
    """

    def __init__(self, steps: int, params: list[torch.Tensor], buffers: list[torch.Tensor]) -> None:
        self.parts = [[t.shape for t in params], [t.shape for t in params], [t.shape for t in buffers]]
        ends = list(accumulate(sum(shape.numel() for shape in part) for part in self.parts))
        self.spans = list(zip([0] + ends[:-1], ends))
        self.rows = params[0].new_empty(steps, ends[-1])
        self.has_velocity = [False] * steps

    def put(self, step: int, params: list[torch.Tensor], velocity: list[torch.Tensor] | None,
            buffers: list[torch.Tensor]) -> None:
        """Record step `step`'s starting state (velocity None before the first step)."""
        for (begin, end), tensors in zip(self.spans, (params, velocity, buffers)):
            if tensors:
                torch.cat([t.detach().reshape(-1) for t in tensors], out=self.rows[step, begin:end])
        self.has_velocity[step] = velocity is not None

    def get(self, step: int) -> tuple[list[torch.Tensor], list[torch.Tensor] | None, list[torch.Tensor]]:
        """Fresh leaves requiring grad for step `step`'s parameters, velocity (None before the first step), buffers."""
        params, velocity, buffers = [
            [chunk.view(shape).clone().requires_grad_()
             for chunk, shape in zip(self.rows[step, begin:end].split([s.numel() for s in shapes]), shapes)]
            for (begin, end), shapes in zip(self.spans, self.parts)]
        return params, velocity if self.has_velocity[step] else None, buffers


def _backward_step(spec, starts, step, lrs, momenta, image_inputs, wants_images, grads, grad_lrs, grad_momenta,
                   grad_images):
    """Redo step `step` with its graph from its stored start, back-propagate `grads` (w.r.t. its final params,
    velocity, buffers; None: zero), accumulate the meta-gradients; return the gradients w.r.t. its start."""
    params, velocity, buffers = starts.get(step)
    lr, momentum = lrs[step].detach().requires_grad_(), momenta[step].detach().requires_grad_()
    leaves = [x.detach().requires_grad_(wanted) for x, wanted in zip(image_inputs, wants_images)]
    with torch.enable_grad():
        images = spec.generate(step, *leaves)
        new_params, new_buffers, new_velocity = sgd_step(
            spec.learner, dict(zip(spec.names, params)), dict(zip(spec.buffer_names, buffers)), velocity, images,
            spec.labels[step], lr, momentum, create_graph=True)
        # Only the outputs that receive a gradient: with bn_mode="train" the buffers' chain is never walked.
        pairs = [(out, g) for out, g in zip([*new_params.values(), *new_velocity, *new_buffers.values()], grads)
                 if g is not None]
        state = params + (velocity or []) + buffers
        inputs = state + [lr, momentum] + [leaf for leaf, want in zip(leaves, wants_images) if want]
        found = list(torch.autograd.grad([out for out, _ in pairs], inputs, [g for _, g in pairs],
                                         allow_unused=True))
    start_grads, (grad_lr, grad_momentum) = found[:len(state)], found[len(state):len(state) + 2]
    image_grads = iter(found[len(state) + 2:])
    if velocity is None:  # the first step starts without velocity: nothing flows there
        start_grads[len(params):len(params)] = [None] * len(params)
    for total, grad in ((grad_lrs, grad_lr), (grad_momenta, grad_momentum)):
        if grad is not None:
            total[step] += grad
    for index, want in enumerate(wants_images):
        grad = next(image_grads) if want else None
        if grad is not None:
            grad_images[index] += grad
    return start_grads
