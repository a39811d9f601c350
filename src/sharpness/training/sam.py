"""Sharpness-aware minimisation (Foret et al. 2021) as a wrapper around any torch optimizer.

One SAM step: gradient g at w; move to w + e with e = rho * g / ||g|| (the worst case in an L2 ball to
first order); take the gradient there; go back to w and let the base optimizer step with that gradient.
The second forward pass must not count as a second look at the batch for BatchNorm's running
statistics, so `frozen_batchnorm_stats` keeps them as they were after the first pass.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from .controls import SAM_RHO


class SAM:
    """Wrap `base_optimizer`: call `first_step()` after the first backward, `second_step()` after the second."""

    def __init__(self, base_optimizer: torch.optim.Optimizer, rho: float = SAM_RHO):
        if not rho > 0:
            raise ValueError(f"rho must be positive, got {rho!r}")
        self.base_optimizer, self.rho = base_optimizer, rho
        self._perturbations: tuple = ()  # (params, their perturbations) between the two steps

    @property
    def param_groups(self):
        return self.base_optimizer.param_groups

    def _params_with_grad(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"] if p.grad is not None]

    @torch.no_grad()
    def first_step(self) -> None:
        """Climb to w + rho * g / ||g|| and clear the gradients for the second pass."""
        params = self._params_with_grad()
        grads = [p.grad for p in params]
        grad_norm = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
        # multi-tensor ops (as torch's own optimizers use): a few kernel launches instead of ~3 per tensor
        perturbations = torch._foreach_mul(grads, self.rho / (grad_norm + 1e-12))
        torch._foreach_add_(params, perturbations)
        self._perturbations = (params, perturbations)
        self.base_optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def second_step(self) -> None:
        """Return to w and step the base optimizer with the gradient taken at w + e."""
        if not self._perturbations:
            raise RuntimeError("SAM.second_step() called without first_step()")
        params, perturbations = self._perturbations
        torch._foreach_sub_(params, perturbations)
        self._perturbations = ()
        self.base_optimizer.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base_optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.base_optimizer.load_state_dict(state)


@contextmanager
def frozen_batchnorm_stats(model: nn.Module) -> Iterator[None]:
    """Run forward passes in train mode without changing any BatchNorm running statistics."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, (mean, var, count) in zip(norms, saved):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)
