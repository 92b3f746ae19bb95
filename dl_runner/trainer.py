"""The DL trainer: loads the data and builds the task (`prepare`), then runs epochs of shuffled
minibatches with validation each epoch, the best checkpoint by validation accuracy and a final
test evaluation. Stop requests are honoured between minibatches and resume mid-epoch exactly."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig

from dl_runner.datasets import Dataset, load_dataset
from runner_core import checkpoint
from runner_core.run import Run
from runner_core.validation import algo_class, check


def prepare(cfg: DictConfig, start: Callable[[bool], torch.device]) -> DLTrainer:
    """The data set, the task and the trainer on the device `start` picks (with torch)."""
    device = start(False)
    cls = algo_class(cfg)
    check(cfg, cls.rules)
    data = load_dataset(cfg.dataset, cfg.seed, device)
    steps_per_epoch = -(-len(data.train) // cfg.algo.batch_size)
    task = cls(cfg, data, device, steps_per_epoch * cfg.algo.epochs)
    return DLTrainer(cfg, data, task, steps_per_epoch, device)


class DLTrainer:
    unit = "steps"
    objective_name = "val/acc"

    def __init__(
        self, cfg: DictConfig, data: Dataset, task: Any, steps_per_epoch: int, device: torch.device
    ) -> None:
        self.cfg, self.data, self.task, self.device = cfg, data, task, device
        self.steps_per_epoch = steps_per_epoch
        self.total = steps_per_epoch * cfg.algo.epochs
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.epoch = 0
        self.order: torch.Tensor | None = None  # this epoch's shuffle, kept for mid-epoch resume
        self.best_val = -1.0
        self.last_val: dict[str, float] = {}
        self.finished = False  # test metrics logged: resuming a finished run logs nothing again

    def describe(self) -> dict[str, Any]:
        return {"dataset": self.data.name, "algo": self.cfg.algo.name, "epochs": self.epoch}

    def state_dict(self) -> dict[str, Any]:
        return {
            **{name: obj.state_dict() for name, obj in self.task.stateful().items()},
            "generator": self.generator.get_state(),
            "epoch": self.epoch,
            "order": self.order,
            "best_val": self.best_val,
            "finished": self.finished,
            "data_stats": self.data.stats,
        }

    def load_learned(self, state: dict[str, Any]) -> None:
        """`init_from`: the model of another run's checkpoint; the optimizer, LR schedule,
        counters and data order start fresh."""
        self.task.stateful()["model"].load_state_dict(state["model"])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, obj in self.task.stateful().items():
            obj.load_state_dict(state[name])
        self.generator.set_state(state["generator"])
        self.epoch, self.order, self.best_val = (
            int(state["epoch"]),
            state["order"],
            float(state["best_val"]),
        )
        self.finished = bool(state.get("finished", False))

    def fit(self, run: Run) -> dict[str, float]:
        cfg, data, bs = self.cfg, self.data, self.cfg.algo.batch_size
        step = run.step
        start_step, start_time = step, time.time()
        run.console.start(self.total, self.unit, step)
        try:
            while self.epoch < cfg.algo.epochs:
                if self.order is None:
                    self.order = torch.randperm(len(data.train), generator=self.generator).to(
                        self.device
                    )
                first = step - self.epoch * self.steps_per_epoch  # > 0 when resuming mid-epoch
                for b in range(first, self.steps_per_epoch):
                    idx = self.order[b * bs : (b + 1) * bs]
                    stats = self.task.update(data.train.x[idx], data.train.y[idx])
                    step += 1
                    run.check_finite(step, stats)
                    run.log(step, {"train/loss": stats["loss"], "train/lr": stats["lr"]})
                    run.console.update(step, f"epoch {self.epoch + 1} loss {stats['loss']:.4f}")
                    run.step = step
                    run.poll(step)
                    if b + 1 < self.steps_per_epoch and run.checkpoint_due(step):
                        run.save(checkpoint.LATEST)
                self.epoch += 1
                self.order = None
                self.last_val = self._validate()
                val_acc = self.last_val["val/acc"]
                run.log(step, {
                    **self.last_val, "train/epoch": self.epoch,
                    "train/steps_per_s": (step - start_step) / max(time.time() - start_time, 1e-9),
                })  # fmt: skip
                run.console.update(step, f"epoch {self.epoch} val acc {val_acc:.4f}")
                if val_acc > self.best_val:
                    self.best_val = val_acc
                    if cfg.checkpoint.save_best:
                        run.save(checkpoint.BEST, {"eval": self.last_val})
                if run.checkpoint_due(step) and self.epoch < cfg.algo.epochs:
                    run.save(checkpoint.LATEST)
        finally:
            run.console.stop()
        if not self.last_val:
            self.last_val = self._validate()
        test = self.task.evaluate(data.test.x, data.test.y)
        results = {
            **self.last_val,
            "val/best_acc": self.best_val,
            "test/loss": test["loss"],
            "test/acc": test["acc"],
        }
        if not self.finished:
            run.log(step, {"test/loss": test["loss"], "test/acc": test["acc"]})
            self.finished = True
        if cfg.checkpoint.save_final:
            run.save(checkpoint.FINAL)
        run.save(checkpoint.LATEST)
        return results

    def _validate(self) -> dict[str, float]:
        val = self.task.evaluate(self.data.val.x, self.data.val.y)
        return {"val/loss": val["loss"], "val/acc": val["acc"]}
