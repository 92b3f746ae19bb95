"""Supervised classification."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from dl_runner.tasks.base import OPTIM_RULES, Task
from runner_core.validation import in_range


class Supervised(Task):
    """Classification by empirical risk minimisation: minimise the cross-entropy
    L = -1/B sum_i log softmax(f_theta(x_i))[y_i] (with optional label smoothing) by Adam or SGD
    with momentum, the learning rate constant or cosine-annealed to 0 over the run. Works with
    any network of the `network` group (network=mlp flattens the images, network=cnn convolves)."""

    rules = (*OPTIM_RULES, in_range("algo.label_smoothing", 0.0, 1.0, hi_open=True))
    roles = ("model",)
    objective = "val/acc"
    mode = "max"

    def __init__(self, cfg: Any, data: Any, device: torch.device, total_steps: int) -> None:
        super().__init__(cfg, data, device, total_steps)
        self.model = self.build("model", data.example_shape, data.n_classes)
        self.optimizer, self.scheduler = self.optimizer_for(self.model.parameters())

    def stateful(self) -> dict[str, Any]:
        return {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler}

    def training_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        loss = F.cross_entropy(self.model(x), y, label_smoothing=self.hp.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return {"loss": loss.item(), "lr": self.scheduler.get_last_lr()[0]}

    def metrics(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.model(x)
        return {
            "loss": F.cross_entropy(logits, y, reduction="none"),
            "acc": (logits.argmax(-1) == y).float(),
        }
