"""The unrolled inner loop: train a learner for K SGD-with-momentum steps on teacher batches.

One function serves meta-training (`create_graph=True`: the returned parameters stay differentiable with
respect to the batches, learning rates and momenta) and meta-testing (`create_graph=False`: no graph is kept),
so the two can never drift apart. Two interchangeable backends compute it: `torch.func.functional_call`
(default) and `higher`'s differentiable SGD, which serves as an independent implementation of the same update.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from gtn_core.config import BN_MODES, UNROLL_BACKENDS


@dataclass(frozen=True)
class LearnerState:
    """A learner's parameters and BatchNorm buffers, by name, detached from any nn.Module."""

    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]


def initial_state(learner: nn.Module) -> LearnerState:
    """Copy a module's current weights into a LearnerState whose parameters require grad."""
    params = {name: p.detach().clone().requires_grad_() for name, p in learner.named_parameters()}
    buffers = {name: b.detach().clone() for name, b in learner.named_buffers()}
    return LearnerState(params, buffers)


def learner_logits(learner: nn.Module, state: LearnerState, images: torch.Tensor, bn_mode: str) -> torch.Tensor:
    """Logits of `learner` run with `state`; BatchNorm uses batch ("train") or running ("eval") statistics."""
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode={bn_mode!r}: expected one of {', '.join(BN_MODES)}")
    learner.train(bn_mode == "train")
    # Scoring never changes the state: train-mode BN would otherwise update the running statistics in place.
    buffers = {name: b.clone() for name, b in state.buffers.items()}
    return functional_call(learner, (state.params, buffers), (images,))


def unroll(learner: nn.Module, state: LearnerState, images: torch.Tensor, labels: torch.Tensor,
           lrs: torch.Tensor, momenta: torch.Tensor, create_graph: bool, backend: str = "func") -> LearnerState:
    """Run K SGD-momentum steps (torch.optim.SGD semantics) on images (K, B, C, H, W), labels (K, B)."""
    _check_shapes(images, labels, lrs, momenta)
    if not create_graph:
        images, lrs, momenta = images.detach(), lrs.detach(), momenta.detach()
    with torch.enable_grad():
        if backend == "func":
            return _unroll_func(learner, state, images, labels, lrs, momenta, create_graph)
        if backend == "higher":
            return _unroll_higher(learner, state, images, labels, lrs, momenta, create_graph)
    raise ValueError(f"unroll backend {backend!r}: expected one of {', '.join(UNROLL_BACKENDS)}")


def _check_shapes(images: torch.Tensor, labels: torch.Tensor, lrs: torch.Tensor, momenta: torch.Tensor) -> None:
    steps = labels.shape[0]
    if images.dim() != 5 or images.shape[:2] != labels.shape:
        raise ValueError(f"images {tuple(images.shape)} and labels {tuple(labels.shape)}: "
                         "expected images (K, B, C, H, W) and labels (K, B)")
    if lrs.shape != (steps,) or momenta.shape != (steps,):
        raise ValueError(f"lrs {tuple(lrs.shape)} and momenta {tuple(momenta.shape)}: expected ({steps},) each")


def _unroll_func(learner, state, images, labels, lrs, momenta, create_graph) -> LearnerState:
    learner.train()
    params = {name: _fresh_leaf(p, create_graph) for name, p in state.params.items()}
    buffers = {name: b.clone() for name, b in state.buffers.items()}  # BN running stats update in place
    velocity = None
    for step in range(labels.shape[0]):
        logits = functional_call(learner, (params, buffers), (images[step],))
        loss = F.cross_entropy(logits, labels[step])
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
        # torch.optim.SGD: the first step's buffer is the gradient itself, then buf = m * buf + g.
        velocity = grads if velocity is None else [momenta[step] * v + g for v, g in zip(velocity, grads)]
        params = {name: _fresh_leaf(p - lrs[step] * v, create_graph)
                  for (name, p), v in zip(params.items(), velocity)}
        if not create_graph:
            velocity = [v.detach() for v in velocity]
    return LearnerState(params, buffers)


def _fresh_leaf(tensor: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """Keep the graph when meta-training; otherwise cut it so memory stays flat over the unroll."""
    return tensor if create_graph else tensor.detach().requires_grad_()


def _unroll_higher(learner, state, images, labels, lrs, momenta, create_graph) -> LearnerState:
    import higher  # optional backend: imported only when selected

    learner.train()
    names = [name for name, _ in learner.named_parameters()]
    # The optimizer only declares the update rule; every step overrides its lr and momentum.
    template = torch.optim.SGD(learner.parameters(), lr=1.0, momentum=0.5)
    fmodel = higher.monkeypatch(learner, copy_initial_weights=True, track_higher_grads=create_graph)
    fmodel.update_params([_fresh_leaf(state.params[name], create_graph) for name in names])
    with torch.no_grad():
        for name, buffer in fmodel.named_buffers():
            buffer.copy_(state.buffers[name])
    diffopt = higher.optim.get_diff_optim(template, learner.parameters(), fmodel=fmodel,
                                          track_higher_grads=create_graph)
    for step in range(labels.shape[0]):
        loss = F.cross_entropy(fmodel(images[step]), labels[step])
        diffopt.step(loss, override={"lr": [lrs[step]], "momentum": [momenta[step]]})
    params = dict(zip(names, fmodel.fast_params))
    buffers = {name: b.detach().clone() for name, b in fmodel.named_buffers()}
    return LearnerState(params, buffers)
