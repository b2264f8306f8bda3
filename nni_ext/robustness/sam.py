"""Sharpness-aware minimisation (SAM, Foret et al. 2021) and its adaptive form (ASAM, Kwon et al. 2021).

SAM minimises the loss at the worst point of a neighbourhood of the weights: each update takes the
gradient at ``w + e(w)``, where ``e(w)`` climbs the loss by a step of length ``rho``, and applies it
to ``w``. The adaptive form measures the neighbourhood relative to each weight's size
(``e(w) = rho * T^2 g / ||T g||`` with ``T = |w|``), which keeps the step invariant to rescaling
of a layer. FlatNAS trains its candidates with the adaptive form and ``rho = 2.0``, the defaults
here. Every update costs two forward and backward passes.

Two ways to use it (``base`` is any ``torch.optim.Optimizer`` class; its keyword arguments follow):

* the explicit form, which works with gradient scaling and custom training loops::

      opt = SAM(model.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9)
      loss_fn(model(x), y).backward()
      opt.first_step(zero_grad=True)          # w -> w + e(w)
      loss_fn(model(x), y).backward()         # gradient at the perturbed weights
      opt.second_step(zero_grad=True)         # back to w, then the base optimizer's step

* ``opt.step(closure)``, where ``closure`` zeroes nothing, runs forward and backward and returns the
  loss; the first backward must already have been done, as for :meth:`first_step`.

The learning rate and the other hyper-parameters live in :attr:`param_groups`, shared with the
base optimizer, so LR schedulers work on the SAM object; :meth:`state_dict` holds the base
optimizer's state (momentum buffers), so a checkpoint resumes exactly. BatchNorm statistics are
updated by both forward passes unless the caller freezes them for the second one.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch

DEFAULT_RHO = 2.0


class SAM(torch.optim.Optimizer):
    """Wrap ``base_optimizer`` (a class, called with the SAM's param groups and ``kwargs``) with (A)SAM.

    Args:
        params: parameters or parameter groups, as for any optimizer.
        base_optimizer: the optimizer class that takes the actual step, e.g. ``torch.optim.SGD``.
        rho: neighbourhood radius (FlatNAS: 2.0 with ``adaptive=True``; plain SAM usually 0.05).
        adaptive: ASAM's element-wise scaling by ``|w|``.
        **kwargs: the base optimizer's arguments (``lr``, ``momentum``, ``weight_decay``, ...).
    """

    def __init__(self, params: Iterable[Any], base_optimizer: Callable[..., torch.optim.Optimizer], *,
                 rho: float = DEFAULT_RHO, adaptive: bool = True, **kwargs: Any) -> None:
        if not rho >= 0.0:
            raise ValueError(f"rho={rho} must be >= 0 (FlatNAS uses 2.0 with adaptive=True)")
        super().__init__(params, dict(rho=rho, adaptive=adaptive, **kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        # one list of groups for both: a scheduler changing the SAM's lr changes the base optimizer's
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)

    @torch.no_grad()
    def _grad_norm(self) -> torch.Tensor:
        norms = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    g = p.grad * p.abs() if group["adaptive"] else p.grad
                    norms.append(g.norm(p=2).to(torch.float32))
        if not norms:
            return torch.zeros(())
        device = norms[0].device
        return torch.stack([n.to(device) for n in norms]).norm(p=2)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Move every parameter with a gradient to ``w + e(w)`` (the ascent step) and remember ``w``."""
        norm = self._grad_norm()
        for group in self.param_groups:
            scale = group["rho"] / (norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                self.state[p]["sam_w"] = p.detach().clone()
                e = p.grad * scale.to(p.device, p.dtype)
                if group["adaptive"]:
                    e = e * p.square()
                p.add_(e)
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Put back ``w`` and take the base optimizer's step with the gradient of the perturbed weights."""
        for group in self.param_groups:
            for p in group["params"]:
                saved = self.state[p].pop("sam_w", None)
                if saved is not None:
                    p.copy_(saved)
        self.base_optimizer.step()
        # tell LR schedulers that the optimizer stepped (they only see calls of step())
        self._opt_called = True  # type: ignore[attr-defined]
        if zero_grad:
            self.zero_grad()

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One SAM update; ``closure`` re-evaluates the loss and its gradient (``backward()``) and returns it.

        The gradient at ``w`` must already be in ``.grad`` (the first backward). Returns the
        closure's loss at the perturbed weights.
        """
        if closure is None:
            raise ValueError("SAM.step needs a closure that runs forward and backward and returns the loss "
                             "(or call first_step() and second_step() yourself)")
        self.first_step(zero_grad=True)
        with torch.enable_grad():
            loss = closure()
        self.second_step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state dict (its groups carry ``rho`` and ``adaptive`` too)."""
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the base optimizer's state (momentum buffers, learning rates, rho)."""
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups
