"""Multi-process data-parallel training of the DL family (torch DistributedDataParallel).

`torchrun --nproc_per_node=N -m dl_runner ...` starts N copies of the entrypoint with RANK,
WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/PORT in their environment; `launched()` sees them and the
entrypoint joins the process group (`init`) before anything else. A plain `python -m dl_runner`
has none of them, and none of this module's code runs (nor does it import torch).

Who does what:
- Rank 0 owns the run directory (its lock), and writes everything: .hydra/, logs, TensorBoard,
  checkpoints, summary.json, the console. Ranks > 0 (`is_follower()`) write nothing and print
  nothing; they learn the run directory from rank 0 (`share`).
- `algo.batch_size` is the global batch: each optimizer step takes the next `batch_size`
  indices of the epoch's stored order (the same on every rank) and rank r trains on the r-th of
  N near-equal contiguous pieces of it. Gradients are averaged weighted by the pieces' sizes
  (`_weighted_allreduce`), so a step is the gradient of the whole global batch, as in one
  process, and a run resumed mid-epoch continues with the same batches (exactly, RNG included,
  when resumed by as many processes).
- Each step the ranks agree (one all-reduce) on the logged loss (the global batch's mean), on a
  stop request (a signal to any rank stops all at the same step) and on whether a checkpoint is
  due (`every_minutes` reads each rank's clock). Checkpoints hold every rank's RNG state.
- Validation and test metrics are computed on each rank's share of the split and summed across
  ranks: every rank gets the same metrics, so `train()` returns the same objective everywhere.
- A runner error (bad input, a stop) ends a rank > 0 with status 0 and no message: rank 0
  reports it, and torchrun stops every process as soon as one fails, which could stop rank 0
  before its checkpoint or message were written. Errors that can strike one rank alone are
  checked on every rank alike (`place`) or decided on rank 0 and shared (the run directory, the
  checkpoint to resume, whether the run opened).

Backend: gloo, with NCCL for CUDA tensors where torch sees a GPU ("cpu:gloo,cuda:nccl": object
collectives such as `share` go through gloo, the training's through NCCL)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from runner_core.errors import ConfigError, DeviceError, RunnerError

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
T = TypeVar("T")


class Abandoned(RunnerError):
    """Rank 0 could not start the run (it reports why); the other ranks leave quietly."""


# the process ---------------------------------------------------------------------------------
def launched() -> bool:
    """Whether a launcher (torchrun) started this process as one rank of a group."""
    return all(key in os.environ for key in ENV_KEYS)


def rank() -> int:
    return int(os.environ["RANK"]) if launched() else 0


def world_size() -> int:
    return int(os.environ["WORLD_SIZE"]) if launched() else 1


def local_rank() -> int:
    return int(os.environ["LOCAL_RANK"]) if launched() else 0


def is_main() -> bool:
    """Rank 0, or a plain single-process run: the process that writes and prints."""
    return rank() == 0


def is_follower() -> bool:
    return rank() > 0


def active() -> bool:
    """Whether this process has joined a process group (without importing torch)."""
    dist = sys.modules.get("torch.distributed")
    return dist is not None and dist.is_available() and dist.is_initialized()


def init() -> None:
    """Join the group torchrun started (env:// rendezvous)."""
    import torch
    import torch.distributed as dist

    if active():
        return
    backend = "gloo"
    if torch.cuda.is_available() and dist.is_nccl_available():
        backend = "cpu:gloo,cuda:nccl"
    dist.init_process_group(backend=backend)


def barrier() -> None:
    if active():
        import torch.distributed as dist

        dist.barrier()


def share(value: T) -> T:
    """Rank 0's `value`, on every rank (the others' argument is ignored)."""
    if not active():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: T) -> list[T] | None:
    """Every rank's `value`, in rank order, on every rank; None outside a group."""
    if not active():
        return None
    import torch.distributed as dist

    values: list[Any] = [None] * world_size()
    dist.all_gather_object(values, value)
    return values


def launcher() -> str:
    """How to start this run's processes again (for the resume hint)."""
    if not launched():
        return "python"
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size()))
    nodes = world_size() // max(local, 1)
    prefix = f"torchrun --nnodes={nodes} " if nodes > 1 else "torchrun "
    return f"{prefix}--nproc_per_node={local}"


def check_config(cfg: DictConfig) -> None:
    """Refuse what data-parallel training does not cover, before anything is created."""
    if launched() and cfg.algo.family != "dl":
        raise ConfigError(
            f"Config key 'algo' is {cfg.algo.name!r}, an RL algorithm; multi-process "
            "data-parallel training (torchrun) covers the deep-learning family (algo.family=dl). "
            "Run RL algorithms with python -m rl_runner."
        )


def place(device: torch.device) -> torch.device:
    """This rank's device: its own GPU (LOCAL_RANK) on CUDA; the CPU is shared."""
    import torch

    if device.type == "cuda":
        count = torch.cuda.device_count()
        local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size()))
        if local > count:  # refused by every process alike (one refusing alone would hang)
            raise DeviceError(
                f"{local} processes on this machine need a GPU each; it has {count}. Start at "
                f"most {count} processes per node (torchrun --nproc_per_node=...), or train on "
                "the CPU (device=cpu)."
            )
        torch.cuda.set_device(local_rank())
        return torch.device("cuda", local_rank())
    if device.type != "cpu":
        raise DeviceError(
            f"Config key 'device' gives {device.type!r}; multi-process data-parallel training "
            "runs on CUDA GPUs or the CPU (device=cuda or device=cpu)."
        )
    return device


def seed(base: int) -> int:
    """This rank's seed: rank 0 seeds as a single-process run does, the others differently (their
    dropout masks differ; the networks start as rank 0's, which DDP broadcasts)."""
    return base + rank()


def own_rng(state: dict[str, Any]) -> dict[str, Any] | None:
    """This rank's RNG state in a checkpoint: its entry of `rng_ranks` when the checkpoint was
    written by as many processes; otherwise rank 0's `rng` for rank 0 (or a plain run) and None
    for the others (they seed afresh)."""
    ranks = state.get("rng_ranks")
    if active() and ranks is not None and len(ranks) == world_size():
        return ranks[rank()]
    return state["rng"] if is_main() else None


# the trainer's side ----------------------------------------------------------------------------
class _Weight:
    """This rank's share of the current global batch (its examples / the batch's), which scales
    its gradients before they are summed."""

    value = 1.0


def _weighted_allreduce(state, bucket):  # type: ignore[no-untyped-def]
    """A DDP communication hook: the sum over ranks of each rank's gradient times its share of
    the batch. With a loss that is a mean over the rank's examples, that is the gradient of the
    mean over the global batch, also when the ranks' pieces differ in size (DDP's own hook
    averages the ranks equally). (state: `_Weight`, bucket: `dist.GradBucket`, returns a
    `torch.futures.Future`; not annotated, as DDP compares the annotations with its own classes
    at run time, and this module's are strings.)"""
    import torch.distributed as dist

    tensor = bucket.buffer().mul_(state.value)
    work = dist.all_reduce(tensor, async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


class DataParallel:
    """Data-parallel training of a task's networks, from the trainer's side: the networks
    wrapped for the training steps only (evaluation and the checkpoints see the task's own
    modules), this rank's piece of each global batch, the per-step agreement, the sums of the
    evaluation metrics."""

    def __init__(self, task: Any, device: torch.device) -> None:
        self.task, self.device = task, device
        self.rank, self.world = rank(), world_size()
        self.shard = (self.rank, self.world)  # see `dl_runner.data.BatchOrder`
        self._weight = _Weight()
        self._modules: dict[str, torch.nn.Module] = {}
        self._wrappers: dict[str, torch.nn.Module] = {}

    def wrap(self) -> None:
        """DistributedDataParallel around each of the task's trainable networks (a collective:
        it broadcasts rank 0's weights). Called once the session holds its final state (after a
        resume has loaded it)."""
        import torch
        from torch.nn.parallel import DistributedDataParallel

        if self._wrappers:
            return
        stateful = [m for m in self.task.stateful().values() if isinstance(m, torch.nn.Module)]
        for name, obj in vars(self.task).items():
            if any(obj is module for module in stateful) and any(
                p.requires_grad for p in obj.parameters()
            ):
                ids = [self.device.index] if self.device.type == "cuda" else None
                wrapper = DistributedDataParallel(obj, device_ids=ids)
                wrapper.register_comm_hook(self._weight, _weighted_allreduce)
                self._modules[name], self._wrappers[name] = obj, wrapper

    @contextmanager
    def _wrapped(self) -> Iterator[None]:
        for name, wrapper in self._wrappers.items():
            setattr(self.task, name, wrapper)
        try:
            yield
        finally:
            for name, module in self._modules.items():
                setattr(self.task, name, module)

    def training_step(self, x: torch.Tensor, y: torch.Tensor, batch: int) -> dict[str, float]:
        """The task's step on this rank's piece (x, y) of a global batch of `batch` examples."""
        self._weight.value = len(x) / batch
        with self._wrapped():
            return self.task.training_step(x, y)

    def agree(self, run: Any, stats: dict[str, float], count: int, due: bool) -> bool:
        """After a step: `stats["loss"]` becomes the global batch's mean loss, a stop request on
        any rank becomes every rank's, and a checkpoint is due if it is due on any rank
        (returned)."""
        import signal

        import torch
        import torch.distributed as dist

        stop = run.received_signal
        flags = torch.tensor(
            [stats["loss"] * count, count, stop == signal.SIGINT, stop == signal.SIGTERM, due],
            dtype=torch.float64, device=self.device,
        )  # fmt: skip
        dist.all_reduce(flags)
        total, n, sigint, sigterm, due_any = flags.tolist()
        stats["loss"] = total / n
        if sigint or sigterm:
            run.request_stop(signal.SIGTERM if sigterm else signal.SIGINT)
        return due_any > 0

    def agree_flag(self, flag: bool) -> bool:
        import torch
        import torch.distributed as dist

        value = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(value)
        return bool(value.item() > 0)

    def eval_order(self, size: int) -> torch.Tensor | None:
        """This rank's share of a split of `size` examples to evaluate (None: too small to
        share; every rank evaluates all of it)."""
        import torch

        if size < self.world:
            return None
        return torch.arange(size, device=self.device).tensor_split(self.world)[self.rank]

    def reduce(
        self, sums: dict[str, torch.Tensor], count: int
    ) -> tuple[dict[str, torch.Tensor], int]:
        """Metric sums and the example count over all ranks' shares."""
        import torch
        import torch.distributed as dist

        parts = [v.to(self.device, torch.float64) for v in sums.values()]
        parts.append(torch.tensor(float(count), dtype=torch.float64, device=self.device))
        values = torch.stack(parts)
        dist.all_reduce(values)
        totals = values.tolist()
        return dict(zip(sums, totals[:-1], strict=True)), int(totals[-1])


__all__ = ["Abandoned", "DataParallel", "active", "init", "is_main", "launched", "rank"]
