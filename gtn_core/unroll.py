"""The unrolled inner loop: train a learner for K SGD-with-momentum steps on teacher batches.

One function serves meta-training (`create_graph=True`: the returned parameters stay differentiable with
respect to the batches, learning rates and momenta) and meta-testing (`create_graph=False`: no graph is kept),
so the two can never drift apart. Two interchangeable backends compute it: `torch.func.functional_call`
(default) and `higher`'s differentiable SGD, which serves as an independent implementation of the same update.

The step batches are either a tensor (K, B, C, H, W) or a function `step -> (B, C, H, W)`, so the teacher can
generate each batch inside the step. With `checkpoint=True` (func backend, graph kept) the unroll keeps no graph
and recomputes each step, teacher included when the images are `GeneratedImages`, during the meta-backward
(`gtn_core.recompute`): about one step's graph in memory instead of K, the same meta-gradients.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from gtn_core.config import BN_MODES, UNROLL_BACKENDS
from gtn_core.recompute import recomputed_unroll
from gtn_core.sgd import fresh_leaf, sgd_step


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
    # A dict of our own: train-mode BatchNorm's new running statistics are written back into it, not into `state`.
    return functional_call(learner, {**state.params, **state.buffers}, (images,))


StepImages = torch.Tensor | Callable[[int], torch.Tensor]


def unroll(learner: nn.Module, state: LearnerState, images: StepImages, labels: torch.Tensor,
           lrs: torch.Tensor, momenta: torch.Tensor, create_graph: bool, backend: str = "func",
           checkpoint: bool = False) -> LearnerState:
    """Run K SGD-momentum steps (torch.optim.SGD semantics) on images (K, B, C, H, W) or `images(step)`, labels (K, B)."""
    _check_shapes(images, labels, lrs, momenta)
    if backend not in UNROLL_BACKENDS:
        raise ValueError(f"unroll backend {backend!r}: expected one of {', '.join(UNROLL_BACKENDS)}")
    if checkpoint and backend != "func":
        raise ValueError(f"checkpoint=True with backend {backend!r}: checkpointing needs the 'func' backend")
    if checkpoint and create_graph:
        learner.train()
        return LearnerState(*recomputed_unroll(learner, state.params, state.buffers, images, labels, lrs, momenta))
    step_images = images.__getitem__ if isinstance(images, torch.Tensor) else images
    if not create_graph:
        lrs, momenta = lrs.detach(), momenta.detach()
    with torch.enable_grad():
        if backend == "func":
            return _unroll_func(learner, state, step_images, labels, lrs, momenta, create_graph)
        return _unroll_higher(learner, state, step_images, labels, lrs, momenta, create_graph)


def _check_shapes(images: StepImages, labels: torch.Tensor, lrs: torch.Tensor, momenta: torch.Tensor) -> None:
    if labels.dim() != 2:
        raise ValueError(f"labels {tuple(labels.shape)}: expected (K, B)")
    steps = labels.shape[0]
    if isinstance(images, torch.Tensor) and (images.dim() != 5 or images.shape[:2] != labels.shape):
        raise ValueError(f"images {tuple(images.shape)} and labels {tuple(labels.shape)}: "
                         "expected images (K, B, C, H, W) and labels (K, B)")
    if lrs.shape != (steps,) or momenta.shape != (steps,):
        raise ValueError(f"lrs {tuple(lrs.shape)} and momenta {tuple(momenta.shape)}: expected ({steps},) each")


def _unroll_func(learner, state, step_images, labels, lrs, momenta, create_graph) -> LearnerState:
    learner.train()
    params = {name: fresh_leaf(p, create_graph) for name, p in state.params.items()}
    buffers, velocity = state.buffers, None
    for step in range(labels.shape[0]):
        images = step_images(step)
        params, buffers, velocity = sgd_step(learner, params, buffers, velocity,
                                             images if create_graph else images.detach(), labels[step],
                                             lrs[step], momenta[step], create_graph)
    return LearnerState(params, buffers)


def _unroll_higher(learner, state, step_images, labels, lrs, momenta, create_graph) -> LearnerState:
    import higher  # optional backend: imported only when selected

    learner.train()
    names = [name for name, _ in learner.named_parameters()]
    # The optimizer only declares the update rule; every step overrides its lr and momentum.
    template = torch.optim.SGD(learner.parameters(), lr=1.0, momentum=0.5)
    fmodel = higher.monkeypatch(learner, copy_initial_weights=True, track_higher_grads=create_graph)
    fmodel.update_params([fresh_leaf(state.params[name], create_graph) for name in names])
    set_buffers(fmodel, state.buffers)
    diffopt = higher.optim.get_diff_optim(template, learner.parameters(), fmodel=fmodel,
                                          track_higher_grads=create_graph)
    for step in range(labels.shape[0]):
        images = step_images(step)
        loss = F.cross_entropy(fmodel(images if create_graph else images.detach()), labels[step])
        diffopt.step(loss, override={"lr": [lrs[step]], "momentum": [momenta[step]]})
        if not create_graph:  # the rebound running statistics would otherwise keep every step's graph alive
            set_buffers(fmodel, {name: b.detach() for name, b in fmodel.named_buffers()})
    params = dict(zip(names, fmodel.fast_params))
    # BatchNorm rebinds the patched module's buffers each step, so with the graph kept they carry it.
    buffers = {name: b if create_graph else b.detach() for name, b in fmodel.named_buffers()}
    return LearnerState(params, buffers)


def set_buffers(module: nn.Module, buffers: dict[str, torch.Tensor]) -> None:
    """Rebind a module's buffers by name (BatchNorm's running statistics are rebound, never updated in place)."""
    for name, buffer in buffers.items():
        module_name, _, attribute = name.rpartition(".")
        setattr(module.get_submodule(module_name), attribute, buffer)
