"""The DL trainer: loads the data and builds the task (`prepare`), then runs epochs of
minibatches (`DataModule.loader`) with a validation pass each epoch, the best state by the task's
objective, and a test pass at the end. Stop requests are honoured between minibatches, and a
resumed run continues mid-epoch exactly.

Checkpoints: latest.pt by `checkpoint.every_steps` / `every_minutes`; the best epoch's state is
kept in memory and written as best.pt with each latest.pt, on a stop request and at the end (an
epoch of a small data set takes milliseconds; writing a file at every improvement would cost
more than the training).

Under torchrun the steps run data-parallel (`runner_core.distributed`): `algo.batch_size` stays
the global batch, each process trains on its piece of it, and validation and test metrics are
summed over the processes' shares of the split."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig

from dl_runner.data import DataModule, load_data
from dl_runner.tasks.base import Task
from runner_core import checkpoint, distributed
from runner_core.errors import ConfigError
from runner_core.run import Run
from runner_core.validation import algo_class, check


def prepare(cfg: DictConfig, start: Callable[[bool], torch.device]) -> DLTrainer:
    """The data set, the task and the trainer on the device `start` picks (with torch)."""
    device = start(False)
    cls = algo_class(cfg)
    check(cfg, cls.rules)
    from runner_core.networks import check_roles

    check_roles(cfg.network, cls.roles, f"algo={cfg.algo.name}")
    data = load_data(cfg.dataset, cfg.seed, device)
    steps_per_epoch = -(-len(data.train) // cfg.algo.batch_size)
    task = cls(cfg, data, device, steps_per_epoch * cfg.algo.epochs)
    replicas = None
    if distributed.active():
        _check_shards(len(data.train), cfg.algo.batch_size, distributed.world_size())
        replicas = distributed.DataParallel(task, device)
    return DLTrainer(cfg, data, task, steps_per_epoch, device, replicas)


def _check_shards(examples: int, batch_size: int, processes: int) -> None:
    """Every process needs at least one example of every minibatch (the last one of an epoch
    holds what is left)."""
    smallest = min(batch_size, examples % batch_size or batch_size, examples)
    if smallest < processes:
        raise ConfigError(
            f"Config key 'algo.batch_size' is {batch_size}, the global batch shared by "
            f"{processes} processes; with {examples} training examples its smallest minibatch "
            f"(the last of an epoch) holds {smallest}, fewer than one per process. Pick a larger "
            f"batch size, or one whose last minibatch has at least {processes} examples, or start "
            "fewer processes."
        )


class DLTrainer:
    unit = "steps"

    def __init__(
        self, cfg: DictConfig, data: DataModule, task: Task, steps_per_epoch: int,
        device: torch.device, replicas: distributed.DataParallel | None = None,
    ) -> None:  # fmt: skip
        self.cfg, self.data, self.task, self.device = cfg, data, task, device
        self.replicas = replicas  # data-parallel training (torchrun), else None
        self.objective_name = task.objective
        self.maximize = task.mode == "max"
        self.steps_per_epoch = steps_per_epoch
        self.total = steps_per_epoch * cfg.algo.epochs
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.epoch = 0
        self.order: torch.Tensor | None = None  # this epoch's shuffle, kept for mid-epoch resume
        self.best: float | None = None  # the best objective so far
        self.last_val: dict[str, float] = {}
        self.finished = False  # test metrics logged: resuming a finished run logs nothing again
        self._best_snapshot: dict[str, Any] | None = None  # best.pt, not yet written

    def warnings(self) -> list[str]:
        return []

    def describe(self) -> dict[str, Any]:
        described = {
            "dataset": self.data.name, "algo": self.cfg.algo.name, "epochs": self.epoch,
            "objective_mode": self.task.mode,
        }  # fmt: skip
        if self.replicas is not None:
            described["processes"] = self.replicas.world
        return described

    def state_dict(self) -> dict[str, Any]:
        return {
            **{name: obj.state_dict() for name, obj in self.task.stateful().items()},
            "generator": self.generator.get_state(),
            "epoch": self.epoch,
            "order": self.order,
            "best": self.best,
            "finished": self.finished,
            "data_stats": self.data.stats,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, obj in self.task.stateful().items():
            obj.load_state_dict(state[name])
        self.generator.set_state(state["generator"])
        self.epoch = int(state["epoch"])
        order = state["order"]
        self.order = order.to(self.device) if order is not None else None
        best = state.get("best")
        self.best = float(best) if best is not None else None
        self.finished = bool(state.get("finished", False))

    def load_learned(self, state: dict[str, Any]) -> None:
        """`init_from`: the networks of another run's checkpoint; the optimizer, LR schedule,
        counters and data order start fresh."""
        for name, obj in self.task.stateful().items():
            if name not in self.task.training_state:
                obj.load_state_dict(state[name])

    # the loop ---------------------------------------------------------------------------------
    def fit(self, run: Run) -> dict[str, float]:
        cfg, task, replicas = self.cfg, self.task, self.replicas
        batch_size = cfg.algo.batch_size
        log_every = int(cfg.logger.log_every_steps)  # train/loss every N optimizer steps
        shard = None
        if replicas is not None:
            replicas.wrap()
            shard = replicas.shard
        step = run.step
        start_step, start_time = step, time.time()
        run.console.start(self.total, self.unit, step)
        try:
            while self.epoch < cfg.algo.epochs:
                if self.order is None:
                    self.order = torch.randperm(len(self.data.train), generator=self.generator)
                    self.order = self.order.to(self.device)
                first = step - self.epoch * self.steps_per_epoch  # > 0 when resuming mid-epoch
                task.train(True)
                for x, y in self.data.loader("train", batch_size, self.order, first, shard):
                    if replicas is None:
                        stats = task.training_step(x, y)
                    else:
                        stats = replicas.training_step(x, y, self._batch_at(step))
                    step += 1
                    due = step < self.epoch_end(self.epoch) and run.checkpoint_due(step)
                    if replicas is not None:
                        due = replicas.agree(run, stats, len(x), due)
                    run.check_finite(step, stats)
                    if step % log_every == 0:
                        run.log(step, {"train/loss": stats["loss"], "train/lr": stats["lr"]})
                        run.console.update(step, epoch=self.epoch + 1, loss=stats["loss"])
                    run.step = step
                    if run.stop_requested:
                        self._save_best(run)
                    run.poll(step)
                    if due:
                        self._save_latest(run)
                self.epoch += 1
                self.order = None
                self.last_val = self.evaluate("val")
                run.log(step, {
                    **self.last_val, "train/epoch": self.epoch,
                    "train/steps_per_s": (step - start_step) / max(time.time() - start_time, 1e-9),
                })  # fmt: skip
                self._log_images(run, "val", step, files=False)
                objective = self.last_val[self.objective_name]
                run.console.update(step, **{self.objective_name: objective})
                if self.best is None or (
                    objective > self.best if self.maximize else objective < self.best
                ):
                    self.best = objective
                    if cfg.checkpoint.save_best:  # kept in memory until the next checkpoint
                        snapshot = run.snapshot({"eval": self.last_val})
                        snapshot["session"] = copy.deepcopy(snapshot["session"])
                        self._best_snapshot = snapshot
                due = run.checkpoint_due(step)
                if replicas is not None:
                    due = replicas.agree_flag(due)
                if due and self.epoch < cfg.algo.epochs:
                    self._save_latest(run)
        finally:
            run.console.stop()
        if not self.last_val:
            self.last_val = self.evaluate("val")
        test = self.evaluate("test")
        results = {**self.last_val, f"val/best_{self.objective_name.split('/', 1)[1]}": self.best,
                   **test}  # fmt: skip
        if not self.finished:
            run.log(step, test)
            self._log_images(run, "test", step, files=True)
            self.finished = True
        self._save_best(run)
        if cfg.checkpoint.save_final:
            run.save(checkpoint.FINAL)
        run.save(checkpoint.LATEST)
        return results

    def epoch_end(self, epoch: int) -> int:
        return (epoch + 1) * self.steps_per_epoch

    def _batch_at(self, step: int) -> int:
        """The size of the global minibatch that follows `step` (the last of an epoch is short)."""
        index = step - self.epoch * self.steps_per_epoch
        batch_size = self.cfg.algo.batch_size
        return min(batch_size, len(self.data.train) - index * batch_size)

    def _save_latest(self, run: Run) -> None:
        self._save_best(run)
        run.save(checkpoint.LATEST)

    def _save_best(self, run: Run) -> None:
        if self._best_snapshot is not None:
            run.write(checkpoint.BEST, self._best_snapshot)
            self._best_snapshot = None

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        """The task's metrics averaged over a split, as "<split>/<metric>"."""
        self.task.train(False)
        sums: dict[str, torch.Tensor] = {}
        count = 0
        order = None  # the whole split, or this process's share of it
        if self.replicas is not None:
            order = self.replicas.eval_order(len(getattr(self.data, split)))
        for x, y in self.data.loader(split, max(self.cfg.algo.batch_size, 512), order):
            for name, values in self.task.metrics(x, y).items():
                sums[name] = sums.get(name, 0.0) + values.sum()
            count += len(x)
        self.task.train(True)
        if order is not None:
            sums, count = self.replicas.reduce(sums, count)
        return {f"{split}/{name}": float(total) / count for name, total in sums.items()}

    @torch.no_grad()
    def _log_images(self, run: Run, split: str, step: int, files: bool) -> None:
        if not distributed.is_main() or type(self.task).images is Task.images:
            return  # only rank 0 logs; a task without images has none
        dataset = getattr(self.data, split)
        self.task.train(False)
        x, y = dataset.tensors[0][:64], dataset.tensors[1][:64]
        for name, image in self.task.images(x, y).items():
            run.logger.image(f"{split}/{name}", image, step, png=files)
        self.task.train(True)
