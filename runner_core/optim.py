"""Adam over one flat parameter vector, for the small networks of RL.

An RL update on a 64x64 MLP is a few microseconds of arithmetic per tensor and tens of
microseconds of per-tensor bookkeeping: `torch.optim.Adam` (even fused) and `clip_grad_norm_`
loop over every weight and bias in Python. Here a module's parameters are re-pointed into one
contiguous vector, and their gradients into another, so zeroing and clipping are a few
whole-vector operations and the Adam step is one call of torch's fused Adam kernel on that vector
(where the device has it; the same maths spelled out otherwise): `torch.optim.Adam` +
`clip_grad_norm_` were about a quarter of a PPO update on CartPole. The maths is
`torch.optim.Adam`'s (tests compare the two step by step, for both paths).

Rules that keep the views intact: build the optimizer after the module is on its device; zero
gradients with `FlatAdam.zero_grad()` (a module's own `zero_grad()` would detach the views); load
weights with `module.load_state_dict` (it copies in place). `MLP.backward` writes into the
gradient views in place, so it needs no zeroing first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn


class FlatAdam:
    """Adam (Kingma & Ba 2015, arXiv:1412.6980), with optional global-norm gradient clipping.

    m_t = b1 m_{t-1} + (1 - b1) g_t,  v_t = b2 v_{t-1} + (1 - b2) g_t^2
    theta_t = theta_{t-1} - lr * (m_t / (1 - b1^t)) / (sqrt(v_t / (1 - b2^t)) + eps)
    """

    def __init__(
        self,
        modules: nn.Module | Iterable[nn.Module],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        modules = [modules] if isinstance(modules, nn.Module) else list(modules)
        self.params = [p for m in modules for p in m.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("FlatAdam needs at least one trainable parameter")
        first = self.params[0]
        total = sum(p.numel() for p in self.params)
        self.flat = torch.empty(total, dtype=first.dtype, device=first.device)
        self.grad = torch.zeros_like(self.flat)
        offset = 0
        for p in self.params:
            n = p.numel()
            self.flat[offset : offset + n].copy_(p.detach().reshape(-1))
            p.data = self.flat[offset : offset + n].view_as(p)
            p.grad = self.grad[offset : offset + n].view_as(p)
            offset += n
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)
        self.lr = float(lr)
        self.beta1, self.beta2 = (float(b) for b in betas)
        self.eps = float(eps)
        self.steps = 0
        # torch's fused Adam kernel (what `torch.optim.Adam(fused=True)` runs) does the update
        # below in one pass instead of seven whole-vector operations, where the device has it
        self.fused = self.flat.device.type in ("cpu", "cuda") and hasattr(torch, "_fused_adam_")
        self._step = torch.zeros((), dtype=torch.float32, device=self.flat.device)
        # on the CPU the clipping norm comes from numpy on the gradients' memory: one ~1 us call
        # instead of torch's norm, divide and clamp at 3-5 us each (a third of a PPO step's Adam)
        self._grad_np = self.grad.numpy() if self.flat.device.type == "cpu" else None
        self._norm = torch.zeros((), dtype=self.flat.dtype)
        self._scale = torch.zeros((), dtype=self.flat.dtype)

    def zero_grad(self) -> None:
        """Zero all gradients in place (the next backward accumulates into the views)."""
        self.grad.zero_()

    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Scale the gradients so their global L2 norm is at most `max_norm` (the rule of
        `torch.nn.utils.clip_grad_norm_`); returns the norm before clipping."""
        norm = torch.linalg.vector_norm(self.grad)
        self.grad.mul_((max_norm / (norm + 1e-6)).clamp_(max=1.0))
        return norm

    def step(self, max_grad_norm: float | None = None) -> torch.Tensor | None:
        """One Adam step on the gradients. With `max_grad_norm`, the gradients are clipped first
        to that global L2 norm, as `clip_grad_norm_` does (and left clipped), but inside the
        fused kernel, which divides them by max(1, norm / max_grad_norm) as it reads them: no
        separate pass over the gradient vector. Returns the norm before clipping, if clipped (on
        the CPU a 0-d tensor that the next step overwrites)."""
        norm = scale = None
        if max_grad_norm is not None and self._grad_np is not None:
            g = self._grad_np
            value = math.sqrt(float(np.dot(g, g)))
            norm = self._norm.fill_(value)
            if value + 1e-6 > max_grad_norm:
                scale = self._scale.fill_((value + 1e-6) / max_grad_norm)
        elif max_grad_norm is not None:
            norm = torch.linalg.vector_norm(self.grad)
            scale = torch.clamp_min((norm + 1e-6) / max_grad_norm, 1.0)
        self.steps += 1
        if self.fused:
            self._step.fill_(self.steps)
            torch._fused_adam_(
                [self.flat], [self.grad], [self.exp_avg], [self.exp_avg_sq], [], [self._step],
                lr=self.lr, beta1=self.beta1, beta2=self.beta2, weight_decay=0.0, eps=self.eps,
                amsgrad=False, maximize=False, grad_scale=scale,
            )  # fmt: skip
            return norm
        if scale is not None:
            self.grad.div_(scale)
        b1, b2 = self.beta1, self.beta2
        self.exp_avg.lerp_(self.grad, 1.0 - b1)
        self.exp_avg_sq.mul_(b2).addcmul_(self.grad, self.grad, value=1.0 - b2)
        bias1 = 1.0 - b1**self.steps
        bias2_sqrt = math.sqrt(1.0 - b2**self.steps)
        denom = (self.exp_avg_sq.sqrt() / bias2_sqrt).add_(self.eps)
        self.flat.addcdiv_(self.exp_avg, denom, value=-self.lr / bias1)
        return norm

    def state_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "lr": self.lr,
            "exp_avg": self.exp_avg.clone(),
            "exp_avg_sq": self.exp_avg_sq.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["exp_avg"].shape != self.exp_avg.shape:
            raise ValueError(
                f"optimizer state holds {state['exp_avg'].numel()} parameters, the model has "
                f"{self.exp_avg.numel()}"
            )
        self.steps = int(state["steps"])
        self.lr = float(state["lr"])
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
