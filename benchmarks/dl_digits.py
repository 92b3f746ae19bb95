"""The DL runner's cost over a bare PyTorch loop: the digits classifier (its shipped preset: MLP
256-128, ReLU, dropout, fused Adam, cosine LR, label smoothing, batch 64) trained by
`train()` at the runner's defaults (TensorBoard, metrics.jsonl, validation every epoch, the best
state and checkpoints, plain console), and by a 20-line loop of the same maths (the same data
tensors, model, optimizer, schedule, shuffles and epochs; no validation, logging or
checkpoints). The marginal CPU time of an epoch: the process's CPU time of a long run minus a
short one, over the epochs between them, so what a run pays once (start-up, data loading, the
end's checkpoints and test pass) cancels out; CPU time, not wall time, because other processes
on a shared machine skew wall time by more than the effect. Medians of alternating repeats, in
this process.

    python benchmarks/dl_digits.py [--repeats N] [--quick] [--out PATH]
"""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import common
import torch
import torch.nn.functional as F

from dl_runner.data import load_data
from runner_core.networks import build
from runner_core.train import train

NAME = "dl_digits"
TITLE = "DL runner against a bare PyTorch loop (digits MLP)"
TARGET = 0.10  # the bound on the runner's cost at its defaults
BASE = ("logger.console=plain",)


def runner_epoch_s(epochs: int, seed: int) -> float:
    """CPU seconds of the process per epoch of `train()` (all of it: start-up and end too)."""
    cfg = common.compose_dl([*BASE, f"algo.epochs={epochs}", f"seed={seed}"])
    with (
        tempfile.TemporaryDirectory(prefix="bench_dl_") as tmp,
        contextlib.redirect_stdout(io.StringIO()),
    ):
        start = time.process_time()
        train(cfg, Path(tmp) / "run")
        return (time.process_time() - start) / epochs


def bare_epoch_s(epochs: int, seed: int) -> float:
    """The same training in a bare loop: what a user would write by hand. CPU seconds per epoch,
    from building the model on (the data set is loaded before, as the runner loads it too)."""
    cfg = common.compose_dl([*BASE, f"algo.epochs={epochs}", f"seed={seed}"])
    hp, device = cfg.algo, torch.device("cpu")
    torch.set_num_threads(cfg.device.threads)
    torch.manual_seed(seed)
    data = load_data(cfg.dataset, seed, device)
    x, y = data.train.tensors
    start = time.process_time()
    model = build(cfg.network, "model", "vector", data.example_shape, data.n_classes)
    opt = torch.optim.Adam(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay, fused=True)
    steps = epochs * math.ceil(len(x) / hp.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0)))
    )
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=gen).split(hp.batch_size):
            loss = F.cross_entropy(model(x[idx]), y[idx], label_smoothing=hp.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return (time.process_time() - start) / epochs


def epoch_cost(side: Callable[[int, int], float], seed: int, short: int, long: int) -> float:
    """The marginal CPU cost of an epoch: (cost(long) - cost(short)) / (long - short) epochs, so
    what a run pays once (start-up, the end's checkpoints and test pass) cancels out."""
    return (side(long, seed) * long - side(short, seed) * short) / (long - short)


def run(opts: common.Options, ctx: common.Context) -> common.Result:
    repeats = opts.reps(9)  # epochs are ~25 ms: single repeats vary by +-15%
    long = 10 if opts.quick else common.compose_dl([]).algo.epochs
    short = max(2, long // 6)
    print(f"[{NAME}] {repeats} repeat(s) of {short} and {long} epochs each side", flush=True)
    sides = {"runner": runner_epoch_s, "bare": bare_epoch_s}
    for fn in sides.values():  # untimed warm-up
        fn(2, 12345)
    times: dict[str, list[float]] = {k: [] for k in sides}
    for repeat in range(repeats):
        for side in common.order(list(sides), repeat):
            times[side].append(epoch_cost(sides[side], repeat, short, long))
            print(f"  repeat {repeat + 1}  {side:<7} {times[side][-1] * 1000:7.2f} ms/epoch",
                  flush=True)  # fmt: skip
    runner, bare = common.median(times["runner"]), common.median(times["bare"])
    cost = runner / bare - 1.0
    verdict = "meets" if cost < TARGET else "misses"
    row = common.Row(
        benchmark=f"DL digits MLP, shipped preset, CPU time per epoch ({short} vs {long} epochs)",
        peer="bare 20-line PyTorch loop, same maths",
        peer_figure=f"{bare * 1000:.2f} ms",
        ours=f"{runner * 1000:.2f} ms",
        ratio=common.ratio(bare / runner),
        notes=f"the runner costs {cost:+.1%} over the bare loop at its defaults ({verdict} the "
        "< 10% target); ratio = bare / runner time",
    )
    details = [
        f"Medians of {repeats} alternating repeats: the runner "
        f"{runner * 1000:.2f} ms per epoch, the bare loop {bare * 1000:.2f} ms: **{cost:+.1%}**.",
        "",
        *common.table(
            ("Side", "ms per epoch, each repeat"),
            ((side, ", ".join(f"{t * 1000:.2f}" for t in ts)) for side, ts in times.items()),
            "ll",
        ),
        "",
        "Per epoch the runner's side includes the validation pass and its metrics, TensorBoard "
        "events and metrics.jsonl rows every `logger.log_every_steps` minibatches, the best "
        "epoch's state kept in memory, the checkpoint cadence and the plain console; the bare "
        "loop has none of these.",
    ]
    return common.Result(NAME, TITLE, [row], details)


if __name__ == "__main__":
    common.main_one(NAME, run, __doc__.split("\n\n")[0])
