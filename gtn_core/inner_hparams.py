"""Learned inner-loop hyper-parameters: one learning rate and one momentum per inner step, in log space."""
from __future__ import annotations

import math

import torch
from torch import nn


class InnerHyperParams(nn.Module):
    """Per-step lr = exp(log_lr[t]) and momentum = sigmoid(logit_momentum[t]) (log-odds keeps it in (0, 1)); with
    `shared`, one learned lr and one momentum serve every step (GoodAI's: the data order is then the only schedule)."""

    def __init__(self, inner_steps: int, lr_init: float, momentum_init: float, shared: bool = False) -> None:
        super().__init__()
        if lr_init <= 0:
            raise ValueError(f"lr_init={lr_init!r}: expected a positive learning rate")
        if not 0.0 < momentum_init < 1.0:
            raise ValueError(f"momentum_init={momentum_init!r}: expected a value in (0, 1)")
        self.inner_steps = inner_steps
        size = 1 if shared else inner_steps
        self.log_lr = nn.Parameter(torch.full((size,), math.log(lr_init)))
        self.logit_momentum = nn.Parameter(torch.full((size,), math.log(momentum_init / (1 - momentum_init))))

    def lrs(self) -> torch.Tensor:
        """Learning rate of each inner step, shape (K,)."""
        return self.log_lr.exp().expand(self.inner_steps)

    def momenta(self) -> torch.Tensor:
        """Momentum of each inner step, shape (K,)."""
        return torch.sigmoid(self.logit_momentum).expand(self.inner_steps)


def learned_hparams(cfg) -> InnerHyperParams:
    """The learned inner lr/momentum of a GTNConfig: per step, or one pair for all steps (`inner_schedule`)."""
    return InnerHyperParams(cfg.inner_steps, cfg.inner_lr_init, cfg.inner_momentum_init,
                            shared=cfg.inner_schedule == "shared")


class ConstantHyperParams(nn.Module):
    """One fixed lr and momentum for every step (plain SGD, nothing learned); momentum 0 is allowed."""

    def __init__(self, inner_steps: int, lr: float, momentum: float) -> None:
        super().__init__()
        if not lr > 0:
            raise ValueError(f"lr={lr!r}: expected a positive learning rate")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum={momentum!r}: expected a value in [0, 1)")
        self.register_buffer("lr", torch.full((inner_steps,), float(lr)))
        self.register_buffer("momentum", torch.full((inner_steps,), float(momentum)))

    def lrs(self) -> torch.Tensor:
        """Learning rate of each inner step, shape (K,)."""
        return self.lr

    def momenta(self) -> torch.Tensor:
        """Momentum of each inner step, shape (K,)."""
        return self.momentum
