"""Where a training run's time goes: one run of `runner_core.train.train()` under cProfile, its
time split by where the code lives (torch, the env, numpy, this runner, the rest) and the
functions with the most time of their own.

    python benchmarks/profile_run.py algo=sac env=pendulum algo.total_steps=3000 [--top N]

Any overrides are the runner's own (as on its command line); the run goes to a temporary
directory with the console off and checkpoints at the end only. cProfile adds a per-call cost,
so read the shares, not the absolute seconds.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
from collections import defaultdict
from pathlib import Path

import common

from runner_core.train import train

# where a function's file lives -> its group (first match wins)
GROUPS = (
    ("torch.optim", "torch optimizer"),
    ("torch/nn/modules", "torch nn modules (forward)"),
    ("torch/autograd", "torch autograd (backward)"),
    ("torch", "torch (other)"),
    ("gymnasium", "environment (gymnasium)"),
    ("numpy", "numpy"),
    ("rl_runner", "runner: algorithms and collectors"),
    ("runner_core", "runner: trainer, logging, checkpoints"),
)


def group_of(filename: str, name: str) -> str:
    path = filename.replace("\\", "/")
    if filename == "~":  # a builtin: C code, named by what it is
        if "torch" in name or "Tensor" in name or "_C." in name:
            return "torch C++ kernels (matmul, ops)"
        return "builtins"
    for marker, group in GROUPS:
        if f"/{marker}" in path or f"{marker}/" in path:
            return group
    return "other"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="the runner's config overrides")
    parser.add_argument("--top", type=int, default=15, help="functions to list")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = common.compose(
            [
                *args.overrides,
                "logger.console=off",
                "checkpoint.every_steps=0",
                "checkpoint.every_minutes=0",
                "eval.every_steps=0",
            ]
        )
        profiler = cProfile.Profile()
        profiler.enable()
        train(cfg, run_dir=Path(tmp) / "run")
        profiler.disable()
    stats = pstats.Stats(profiler)
    total = sum(own for _, _, own, _, _ in stats.stats.values())
    by_group: dict[str, float] = defaultdict(float)
    for (filename, _, name), (_, _, own, _, _) in stats.stats.items():
        by_group[group_of(filename, name)] += own
    print(f"overrides: {' '.join(args.overrides)}; {total:.1f} s of profiled time")
    print(f"{'share':>6}  {'seconds':>8}  where")
    for group, own in sorted(by_group.items(), key=lambda kv: -kv[1]):
        print(f"{own / total:6.1%}  {own:8.2f}  {group}")
    print(f"\ntop {args.top} functions by their own time:")
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[: args.top]
    for (filename, line, name), (_, calls, own, _, _) in rows:
        where = f"{Path(filename).name}:{line}" if filename != "~" else "C"
        print(f"{own / total:6.1%}  {calls:>9,} calls  {name}  ({where})")


if __name__ == "__main__":
    main()
