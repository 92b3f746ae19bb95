"""SAC on Pendulum-v1: this runner against Stable-Baselines3, side by side in one process.

Both sides train with RL Zoo's preset for Pendulum-v1 (hyperparams/sac.yml: learning rate 1e-3,
otherwise SB3's defaults: one env, 256x256 ReLU actor and twin critics, batch 256, buffer 1e6,
100 random steps, one gradient step per env step, tau 0.005, gamma 0.99, alpha learned from 1.0
towards entropy -1) on the CPU, then evaluate the final policy deterministically for 20
episodes. Ours runs `runner_core.train.train()` at its default `device.threads=1` (the
`conf/tuned/rl/sac_pendulum.yaml` preset); SB3 runs with one torch thread (the same as ours)
and at torch's default thread count (what a user gets).

Each repeat runs every side, alternating the order, so machine noise hits all alike; the report
gives medians over the repeats. A run is 5,000 env steps, not the preset's 20,000: throughput is
steady after the first 100 random steps, and a full set of repeats stays within minutes.

    python benchmarks/sac_pendulum.py [--repeats N] [--quick] [--out PATH]
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import common

common.require_sb3()

import stable_baselines3  # noqa: E402
import torch  # noqa: E402
from stable_baselines3 import SAC as SB3_SAC  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.common.evaluation import evaluate_policy  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from runner_core.train import SUMMARY_FILE, train  # noqa: E402  (imported before any timing)

NAME = "sac_pendulum"
TITLE = "SAC Pendulum-v1 (RL Zoo preset): training throughput"
OURS = "ours"
SB3 = f"Stable-Baselines3 {stable_baselines3.__version__}"

# RL Zoo, hyperparams/sac.yml, Pendulum-v1: n_timesteps 2e4, MlpPolicy, learning_rate 1e-3
ENV_ID = "Pendulum-v1"
LEARNING_RATE = 1e-3
ZOO_STEPS = 20_000
STEPS = 5_000  # per timed run (see the module docstring)
QUICK_STEPS = 400
WARMUP_STEPS = 300  # untimed: past learning_starts, so the first updates are paid for too
WARMUP_SEED = 12345
EVAL_EPISODES = 20
EVAL_SEED_OFFSET = 1_000_003  # as rl_runner.trainer: eval envs never share training seeds


@dataclass(frozen=True)
class Side:
    key: str  # short label in the per-run table
    threads: int | None  # torch threads while it runs; None: ours (device.threads=1 sets them)


@dataclass(frozen=True)
class Measurement:
    """One training run of one side: the env steps it took, its wall time and its final eval."""

    side: str
    repeat: int
    seed: int
    steps: int
    seconds: float  # training plus the final evaluation
    cpu_seconds: float  # CPU time of this process over the same span
    eval_return: float
    eval_seconds: float | None = None  # SB3: time of the final evaluation, part of `seconds`

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds

    @property
    def steps_per_cpu_s(self) -> float:
        """Steps per CPU second: on a machine that other processes share, what this process
        got of the CPU varies from run to run, and this figure leaves that out."""
        return self.steps / self.cpu_seconds


def sides() -> list[Side]:
    """Ours, SB3 at one thread, SB3 at torch's default thread count (once if they coincide)."""
    default = common.default_torch_threads()
    out = [Side(OURS, None), Side("SB3 1 thr", 1)]
    if default != 1:
        out.append(Side(f"SB3 {default} thr", default))
    return out


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run with `threads` torch threads, then put back the count from before (and numpy's BLAS
    threads, which our train() sets to device.threads as well)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=None):  # restores the BLAS threads on exit
            yield
    finally:
        torch.set_num_threads(before)


def run_ours(seed: int, steps: int, repeat: int) -> Measurement:
    """The runner in-process: compose its config with Hydra (untimed), then time `train()` end to
    end (env and model creation, training, final evaluation, final checkpoints, summary.json)."""
    cfg = common.compose(
        [
            "algo=sac",
            "env=pendulum",  # the tuned/rl/sac_pendulum preset applies RL Zoo's hyperparameters
            "device=cpu",
            f"seed={seed}",
            f"algo.total_steps={steps}",
            "logger.console=off",
            "logger.tensorboard=false",
            "checkpoint.every_steps=0",
            "eval.every_steps=0",
            "checkpoint.save_best=false",
        ]
    )
    assert cfg.device.threads == 1 and cfg.eval.episodes == EVAL_EPISODES
    assert cfg.algo.lr == LEARNING_RATE and cfg.env.num_envs == 1
    # start from torch's default, as a fresh process would: train() sets device.threads itself
    with (
        torch_threads(common.default_torch_threads()),
        tempfile.TemporaryDirectory(prefix="bench_sac_pendulum_") as tmp,
    ):
        run_dir = Path(tmp) / "run"
        cpu, start = common.own_cpu_seconds(), time.perf_counter()
        objective = train(cfg, run_dir=run_dir)
        elapsed, cpu = time.perf_counter() - start, common.own_cpu_seconds() - cpu
        summary = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
        assert summary["device"] == "cpu", summary["device"]
    steps = int(summary["global_step"])
    return Measurement(OURS, repeat, seed, steps, elapsed, cpu, objective)


def make_sb3_sac(seed: int) -> tuple[SB3_SAC, object]:
    """SB3 SAC with RL Zoo's Pendulum-v1 preset (SB3's defaults but the learning rate) on one
    Monitor-wrapped env in a DummyVecEnv, as RL Zoo builds it, on the CPU."""
    envs = make_vec_env(ENV_ID, n_envs=1, seed=seed)
    model = SB3_SAC(
        "MlpPolicy", envs, learning_rate=LEARNING_RATE, seed=seed, device="cpu", verbose=0
    )
    return model, envs


def run_sb3(side: Side, seed: int, steps: int, repeat: int) -> Measurement:
    """SB3 with `side.threads` torch threads: build the model and envs untimed, then time
    `learn()` plus a final deterministic 20-episode evaluation on a fresh Pendulum env."""
    assert side.threads is not None
    # SB3 runs as it would on its own, with torch's default (no flushing of denormals to zero),
    # whatever an earlier run in this process set
    torch.set_flush_denormal(False)
    with torch_threads(side.threads):
        model, envs = make_sb3_sac(seed)
        eval_env = make_vec_env(ENV_ID, n_envs=1, seed=seed + EVAL_SEED_OFFSET)
        cpu, start = common.own_cpu_seconds(), time.perf_counter()
        model.learn(total_timesteps=steps)
        learned = time.perf_counter()
        mean_return, _std = evaluate_policy(
            model, eval_env, n_eval_episodes=EVAL_EPISODES, deterministic=True
        )
        end, cpu = time.perf_counter(), common.own_cpu_seconds() - cpu
        assert torch.get_num_threads() == side.threads
        envs.close()
        eval_env.close()
    return Measurement(
        side.key,
        repeat,
        seed,
        int(model.num_timesteps),
        end - start,
        cpu,
        float(mean_return),
        eval_seconds=end - learned,
    )


def measure(side: Side, seed: int, steps: int, repeat: int) -> Measurement:
    if side.threads is None:
        return run_ours(seed, steps, repeat)
    return run_sb3(side, seed, steps, repeat)


def describe(m: Measurement) -> str:
    extra = "" if m.eval_seconds is None else f"  (final eval {m.eval_seconds:.2f} s)"
    return (
        f"  repeat {m.repeat + 1}  {m.side:<10} seed {m.seed}  {m.steps:>7,} steps  "
        f"{m.seconds:7.2f} s  {m.steps_per_s:8.1f} steps/s  {m.steps_per_cpu_s:8.1f} steps/CPU s"
        f"  eval {m.eval_return:7.1f}{extra}"
    )


def measure_all(repeats: int, steps: int) -> list[Measurement]:
    """`repeats` rounds of every side (seed = round), alternating the order."""
    all_sides = sides()
    for side in all_sides:  # untimed warm-up: lazy imports and first-call costs
        measure(side, WARMUP_SEED, WARMUP_STEPS, -1)
    results: list[Measurement] = []
    for repeat in range(repeats):
        for side in common.order(all_sides, repeat):
            result = measure(side, repeat, steps, repeat)
            print(describe(result), flush=True)
            results.append(result)
    return results


def run(opts: common.Options, ctx: common.Context) -> common.Result:
    repeats = opts.reps(3)
    steps = QUICK_STEPS if opts.quick else STEPS
    all_sides = sides()
    print(f"[{NAME}] {repeats} repeat(s) x {steps:,} steps: ours vs {SB3}", flush=True)
    results = measure_all(repeats, steps)

    def med(key: str, attr: str) -> float:
        return common.median(getattr(m, attr) for m in results if m.side == key)

    ours_sps = med(OURS, "steps_per_s")
    ctx.values["ours_sac_steps_per_s"] = ours_sps
    rows = []
    for side in all_sides[1:]:
        if side.threads == 1:
            label = "1 torch thread (as ours)"
        else:
            label = f"default threads ({side.threads})"
        peer_sps = med(side.key, "steps_per_s")
        cpu_ratio = med(OURS, "steps_per_cpu_s") / med(side.key, "steps_per_cpu_s")
        rows.append(
            common.Row(
                benchmark=f"SAC Pendulum-v1 training, RL Zoo preset, {steps:,} steps",
                peer=f"{SB3}, {label}",
                peer_figure=common.rate(peer_sps),
                ours=common.rate(ours_sps),
                ratio=common.ratio(ours_sps / peer_sps),
                notes=f"ours at device.threads=1; per CPU second {cpu_ratio:.2f}x; final eval "
                f"(peer / ours) {med(side.key, 'eval_return'):.1f} / "
                f"{med(OURS, 'eval_return'):.1f}",
            )
        )
    per_run = sorted(results, key=lambda m: (m.repeat, [s.key for s in all_sides].index(m.side)))
    details = [
        f"{steps:,} env steps per run (RL Zoo trains {ZOO_STEPS:,}); medians over {repeats} "
        "repeat(s). Ratio = ours / peer steps/s (wall time; the notes give it per CPU second "
        "of this process as well, which leaves out how much of the CPUs other processes took). "
        "Eval = mean return of the final policy over 20 deterministic episodes (0 is the "
        "maximum; after 5,000 steps neither side has converged, so it only shows that both "
        "learn).",
        "",
        *common.table(
            (
                "Side",
                "torch threads",
                "Steps/s (median)",
                "Steps/CPU s (median)",
                "Time (s, median)",
                "Eval (median)",
            ),
            (
                (
                    OURS if s.threads is None else SB3,
                    "1 (device.threads)" if s.threads is None else s.threads,
                    f"{med(s.key, 'steps_per_s'):,.1f}",
                    f"{med(s.key, 'steps_per_cpu_s'):,.1f}",
                    f"{med(s.key, 'seconds'):.2f}",
                    f"{med(s.key, 'eval_return'):.1f}",
                )
                for s in all_sides
            ),
            "lrrrrr",
        ),
        "",
        "Every run:",
        "",
        *common.table(
            (
                "Repeat",
                "Seed",
                "Side",
                "Env steps",
                "Time (s)",
                "CPU (s)",
                "of which final eval (s)",
                "Steps/s",
                "Eval return",
            ),
            (
                (
                    m.repeat + 1,
                    m.seed,
                    m.side,
                    f"{m.steps:,}",
                    f"{m.seconds:.2f}",
                    f"{m.cpu_seconds:.2f}",
                    "not timed apart" if m.eval_seconds is None else f"{m.eval_seconds:.2f}",
                    f"{m.steps_per_s:,.1f}",
                    f"{m.eval_return:.1f}",
                )
                for m in per_run
            ),
            "rrlrrrrrr",
        ),
        "",
        "How it is measured:",
        "",
        "- All sides run in one process, one after the other in each repeat (the order reverses "
        "on every other repeat). Seeds are 0, 1, 2, ... (one per repeat, the same for every "
        f"side). Before the repeats each side runs one untimed {WARMUP_STEPS}-step warm-up (past "
        "the 100 random steps), so one-time costs (lazy imports, first calls) count for none.",
        "- Threads: ours runs at its default `device.threads=1`; SB3 runs once with "
        "`torch.set_num_threads(1)` (the like-for-like figure: SAC's 256-unit layers on batches "
        "of 256 are bound by the matrix products, which more threads share out) and once at "
        "torch's default thread count (`torch.get_num_threads()` at process start: "
        f"{common.default_torch_threads()} here, what an SB3 user gets). The thread count is "
        "set before each side and restored after it.",
        "- Denormals: ours flushes denormal floats to zero on the CPU, as every run of this "
        "runner does (`runner_core.device.resolve_device`); SB3 runs with torch's default (no "
        "flushing), as it would on its own: it is set off before every SB3 run.",
        "- Hyperparameters (RL Zoo, `sac.yml`, Pendulum-v1): learning rate 1e-3 for the actor, "
        "the critics and alpha; SB3's defaults otherwise: one env, buffer 1e6, batch 256, "
        "learning_starts 100, train_freq 1, gradient_steps 1, tau 0.005, gamma 0.99, "
        "ent_coef auto (from 1.0, target entropy -1), target update every gradient step, "
        "256x256 ReLU actor and twin critics. Ours: `algo=sac env=pendulum` (the "
        "`conf/tuned/rl/sac_pendulum.yaml` preset) with console, TensorBoard, periodic "
        "evaluation and periodic/best checkpoints off.",
        "- Ours: `runner_core.train.train()` timed end to end: it includes creating the envs "
        "and the model, training, the final 20-episode deterministic evaluation (on 20 "
        "vectorized eval envs), writing metrics.jsonl (the losses of every update), the final "
        "checkpoints (with the replay buffer) and summary.json. Composing the Hydra config is "
        "not timed.",
        '- SB3: `SAC("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=1), learning_rate=1e-3)` '
        "built untimed; timed: `learn()` plus `evaluate_policy(model, eval_env, "
        "n_eval_episodes=20, deterministic=True)` on a fresh Pendulum env, so both sides do "
        "the same work.",
        "- Implementation differences that count in the timings: the actor loss's backward "
        "reaches only the actor's weights in ours (SB3 also computes the critics' weight "
        "gradients, then zeroes them), ours uses fused Adam, and ours updates the target "
        "critics with one `_foreach_lerp_` over tensors listed once. Differences that count "
        "in the learning: ours bounds the log-std with a tanh into [-5, 2] (SB3 clips to "
        "[-20, 2]) and includes the action scale (2) in log pi, and its actor has one output "
        "layer for mean and log-std (SB3 has two).",
    ]
    return common.Result(NAME, TITLE, rows, details)


if __name__ == "__main__":
    common.main_one(NAME, run, __doc__.split("\n\n")[0])
