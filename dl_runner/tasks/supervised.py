"""Supervised classification."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from dl_runner.datasets import Dataset
from runner_core.networks import adam, build_network
from runner_core.validation import in_range, non_negative, one_of, positive, positive_int


class Supervised:
    """Classification by empirical risk minimisation: minimise the cross-entropy
    L = -1/B sum_i log softmax(f_theta(x_i))[y_i] (with optional label smoothing) by Adam or SGD
    with momentum, the learning rate constant or cosine-annealed to 0 over the run."""

    rules = (
        positive_int("algo.epochs"),
        positive_int("algo.batch_size"),
        one_of("algo.optimizer", ("adam", "sgd")),
        positive("algo.lr"),
        in_range("algo.momentum", 0.0, 1.0, hi_open=True),
        non_negative("algo.weight_decay"),
        one_of("algo.lr_schedule", ("cosine", "constant")),
        in_range("algo.label_smoothing", 0.0, 1.0, hi_open=True),
    )

    def __init__(
        self, cfg: DictConfig, data: Dataset, device: torch.device, total_steps: int
    ) -> None:
        hp = self.hp = cfg.algo
        self.model = build_network(cfg.network, data.n_features, data.n_classes).to(device)
        if hp.optimizer == "adam":
            self.optimizer = adam(
                self.model.parameters(), hp.lr, device, weight_decay=hp.weight_decay
            )
        else:
            self.optimizer = torch.optim.SGD(
                self.model.parameters(),
                lr=hp.lr,
                momentum=hp.momentum,
                weight_decay=hp.weight_decay,
            )
        schedule = (
            (lambda s: 0.5 * (1 + math.cos(math.pi * min(s / total_steps, 1.0))))
            if hp.lr_schedule == "cosine"
            else (lambda s: 1.0)
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)

    def stateful(self) -> dict[str, Any]:
        return {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler}

    def update(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        self.model.train()
        loss = F.cross_entropy(self.model(x), y, label_smoothing=self.hp.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return {"loss": loss.item(), "lr": self.scheduler.get_last_lr()[0]}

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        self.model.eval()
        logits = self.model(x)
        return {
            "loss": F.cross_entropy(logits, y).item(),
            "acc": (logits.argmax(-1) == y).float().mean().item(),
        }
