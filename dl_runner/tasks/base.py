"""The DL task interface. A task owns its networks (built by role from the `network` group), its
optimizer and LR schedule, its training step, its per-example metrics and its objective; the
trainer (`dl_runner.trainer`) owns the epochs, validation, logging, checkpoints and stop
requests. A new task is one file here and one `conf/algo/<name>.yaml` (`family: dl`)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from omegaconf import DictConfig

from dl_runner.data import DataModule
from runner_core.networks import adam, build
from runner_core.validation import (
    Hyper,
    Rule,
    in_range,
    non_negative,
    one_of,
    positive,
    positive_int,
)

# the optimizer and schedule keys every task built on `Task.optimizer_for` reads
OPTIM_RULES: tuple[Rule, ...] = (
    positive_int("algo.epochs"),
    positive_int("algo.batch_size"),
    one_of("algo.optimizer", ("adam", "sgd")),
    positive("algo.lr"),
    in_range("algo.momentum", 0.0, 1.0, hi_open=True),
    non_negative("algo.weight_decay"),
    one_of("algo.lr_schedule", ("cosine", "constant")),
)


class Task:
    """Subclasses set `objective` ("<split>/<metric>", a key of `metrics`) and `mode` ("max" or
    "min"), build their networks in `__init__`, and write `training_step` and `metrics`."""

    rules: ClassVar[tuple[Rule, ...]] = OPTIM_RULES
    roles: ClassVar[tuple[str, ...]] = ("model",)
    objective: ClassVar[str] = "val/loss"
    mode: ClassVar[str] = "min"
    # entries of `stateful()` that belong to the training run, not to what it learned (a run
    # started with `init_from` begins them fresh)
    training_state: ClassVar[tuple[str, ...]] = ("optimizer", "scheduler")

    def __init__(self, cfg: DictConfig, data: DataModule, device: torch.device, total_steps: int):
        self.cfg = cfg
        self.hp = Hyper(cfg.algo)
        self.data = data
        self.device = device
        self.total_steps = total_steps

    def build(self, role: str, in_shape: tuple[int, ...], out_features: int) -> torch.nn.Module:
        """The network for `role` from the `network` group, on the device."""
        return build(self.cfg.network, role, "vector", in_shape, out_features).to(self.device)

    def optimizer_for(self, params: Any) -> tuple[Any, Any]:
        """Adam (fused where torch has it) or SGD with momentum, and the LR schedule (constant,
        or cosine-annealed to 0 over the run), from the `algo` keys of `OPTIM_RULES`."""
        hp = self.hp
        if hp.optimizer == "adam":
            optimizer = adam(params, hp.lr, self.device, weight_decay=hp.weight_decay)
        else:
            optimizer = torch.optim.SGD(
                params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
            )
        total = self.total_steps
        if hp.lr_schedule == "cosine":
            factor = lambda s: 0.5 * (1 + math.cos(math.pi * min(s / total, 1.0)))  # noqa: E731
        else:
            factor = lambda s: 1.0  # noqa: E731
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def stateful(self) -> dict[str, Any]:
        """name -> object with state_dict()/load_state_dict()."""
        raise NotImplementedError

    def train(self, mode: bool = True) -> None:
        for obj in self.stateful().values():
            if isinstance(obj, torch.nn.Module):
                obj.train(mode)

    def training_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """One optimization step on a minibatch; returns at least "loss" and "lr"."""
        raise NotImplementedError

    def metrics(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-example metrics of a minibatch (name -> (B,) tensor), in eval mode without
        gradients; the trainer averages them over a split."""
        raise NotImplementedError

    def images(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, np.ndarray]:
        """Images to log for a minibatch (name -> (H, W, 3) uint8), if the task has any."""
        return {}
