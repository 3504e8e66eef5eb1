"""One inner SGD-with-momentum step of the learner, as a pure function of its state."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

Params = dict[str, torch.Tensor]


def sgd_step(learner: nn.Module, params: Params, buffers: Params, velocity: list[torch.Tensor] | None,
             images: torch.Tensor, labels: torch.Tensor, lr: torch.Tensor, momentum: torch.Tensor,
             create_graph: bool) -> tuple[Params, Params, list[torch.Tensor]]:
    """(params, buffers, velocity) after one cross-entropy step on images (B, C, H, W), labels (B,)."""
    # One dict, not (params, buffers): functional_call writes the buffers that train-mode BatchNorm rebinds (its
    # new running statistics) back into the dict it was given (torch.nn.utils.stateless._reparametrize_module).
    state = {**params, **buffers}
    logits = functional_call(learner, state, (images,))
    buffers = {name: state[name] if create_graph else state[name].detach() for name in buffers}
    loss = F.cross_entropy(logits, labels)
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
    # torch.optim.SGD: the first step's buffer is the gradient itself, then buf = m * buf + g.
    velocity = list(grads) if velocity is None else [momentum * v + g for v, g in zip(velocity, grads)]
    params = {name: fresh_leaf(p - lr * v, create_graph) for (name, p), v in zip(params.items(), velocity)}
    if not create_graph:
        velocity = [v.detach() for v in velocity]
    return params, buffers, velocity


def fresh_leaf(tensor: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """Keep the graph when meta-training; otherwise cut it so memory stays flat over the unroll."""
    return tensor if create_graph else tensor.detach().requires_grad_()
