"""PPO on CartPole-v1: this runner against Stable-Baselines3, side by side in one process.

All sides train with RL Zoo's preset for CartPole-v1 (rl_zoo.py: 8 envs x 32 steps, batch 256,
20 epochs, gamma 0.98, GAE lambda 0.8, no entropy bonus, learning rate and clip range decaying
linearly from 1e-3 and 0.2, 100k steps, separate 64x64 tanh actor and critic) on the CPU, then
evaluate the final policy deterministically for 20 episodes. Ours runs `runner_core.train.train()`
at its default `device.threads=1`, on numpy alone (`device=cpu` gives the `cpu (numpy)` device
for PPO's plain MLPs); SB3 runs twice: at torch's default thread count (what a user
gets) and with one torch thread (the faster setting for 64-unit networks).

Each repeat runs every side, alternating the order, so machine noise hits all alike; the report
gives medians over the repeats.

    python benchmarks/ppo_cartpole.py [--repeats N] [--quick] [--out PATH]
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
import rl_zoo

common.require_sb3()

import stable_baselines3  # noqa: E402
import torch  # noqa: E402
from stable_baselines3.common.evaluation import evaluate_policy  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from runner_core.train import SUMMARY_FILE, train  # noqa: E402  (imported before any timing)

NAME = "ppo_cartpole"
TITLE = "PPO CartPole-v1 (RL Zoo preset): training throughput"
WARMUP_SEED = 12345
OURS = "ours"
SB3 = f"Stable-Baselines3 {stable_baselines3.__version__}"


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
    seconds: float  # what steps/s is computed from (see the notes)
    eval_return: float
    eval_seconds: float | None = None  # SB3: time of the final evaluation, part of `seconds`

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds


def sides() -> list[Side]:
    """Ours, SB3 at torch's default thread count, SB3 at one thread (once if they coincide)."""
    default = common.default_torch_threads()
    out = [Side(OURS, None), Side(f"SB3 {default} thr", default)]
    if default != 1:
        out.append(Side("SB3 1 thr", 1))
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
            "algo=ppo",
            "env=cartpole",  # the tuned/rl/ppo_cartpole preset applies RL Zoo's hyperparameters
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
    assert cfg.device.threads == 1 and cfg.eval.episodes == rl_zoo.EVAL_EPISODES
    # start from torch's default, as a fresh process would: train() sets device.threads itself
    with (
        torch_threads(common.default_torch_threads()),
        tempfile.TemporaryDirectory(prefix="bench_ppo_cartpole_") as tmp,
    ):
        run_dir = Path(tmp) / "run"
        start = time.perf_counter()
        objective = train(cfg, run_dir=run_dir)
        elapsed = time.perf_counter() - start
        summary = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
        assert summary["device"] == "cpu (numpy)", summary["device"]
    return Measurement(OURS, repeat, seed, int(summary["global_step"]), elapsed, objective)


def run_sb3(side: Side, seed: int, steps: int, repeat: int) -> Measurement:
    """SB3 with `side.threads` torch threads: build the model and envs untimed, then time
    `learn()` plus a final deterministic 20-episode evaluation on a fresh single CartPole env."""
    assert side.threads is not None
    # SB3 runs as it would on its own, with torch's default (no flushing of denormals to zero),
    # whatever an earlier run in this process set
    torch.set_flush_denormal(False)
    with torch_threads(side.threads):
        model, envs = rl_zoo.make_sb3_ppo(seed)
        eval_env = rl_zoo.make_sb3_eval_env(seed)
        start = time.perf_counter()
        model.learn(total_timesteps=steps)
        learned = time.perf_counter()
        mean_return, _std = evaluate_policy(
            model, eval_env, n_eval_episodes=rl_zoo.EVAL_EPISODES, deterministic=True
        )
        end = time.perf_counter()
        assert torch.get_num_threads() == side.threads
        envs.close()
        eval_env.close()
    return Measurement(
        side.key,
        repeat,
        seed,
        int(model.num_timesteps),
        end - start,
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
        f"{m.seconds:7.2f} s  {m.steps_per_s:8.1f} steps/s  eval {m.eval_return:6.1f}{extra}"
    )


def measure_all(repeats: int, steps: int) -> list[Measurement]:
    """`repeats` rounds of every side (seed = round), alternating the order."""
    all_sides = sides()
    for side in all_sides:  # untimed warm-up: lazy imports and first-call costs
        measure(side, WARMUP_SEED, rl_zoo.ROLLOUT, -1)
    results: list[Measurement] = []
    for repeat in range(repeats):
        for side in common.order(all_sides, repeat):
            result = measure(side, repeat, steps, repeat)
            print(describe(result), flush=True)
            results.append(result)
    return results


def ours_steps_per_s(repeats: int, steps: int) -> float:
    """Median steps/s of ours alone (for benchmarks run without this one)."""
    run_ours(WARMUP_SEED, rl_zoo.ROLLOUT, -1)
    return common.median(run_ours(r, steps, r).steps_per_s for r in range(repeats))


def run(opts: common.Options, ctx: common.Context) -> common.Result:
    repeats = opts.reps(3)
    steps = 4 * rl_zoo.ROLLOUT if opts.quick else rl_zoo.TOTAL_STEPS
    all_sides = sides()
    print(f"[{NAME}] {repeats} repeat(s) x {steps:,} steps: ours vs {SB3}", flush=True)
    results = measure_all(repeats, steps)

    def med(key: str, attr: str) -> float:
        return common.median(getattr(m, attr) for m in results if m.side == key)

    ours_sps = med(OURS, "steps_per_s")
    ctx.values["ours_ppo_steps_per_s"] = ours_sps
    ctx.values["ours_ppo_steps"] = steps
    rows = []
    for side in all_sides[1:]:
        if side.threads == common.default_torch_threads():
            label = f"default threads ({side.threads})"
        else:
            label = f"{side.threads} torch thread"
        peer_sps = med(side.key, "steps_per_s")
        rows.append(
            common.Row(
                benchmark=f"PPO CartPole-v1 training, RL Zoo preset, {steps:,} steps",
                peer=f"{SB3}, {label}",
                peer_figure=common.rate(peer_sps),
                ours=common.rate(ours_sps),
                ratio=common.ratio(ours_sps / peer_sps),
                notes=f"ours at device.threads=1; final eval (peer / ours) "
                f"{med(side.key, 'eval_return'):.1f} / {med(OURS, 'eval_return'):.1f}",
            )
        )
    per_run = sorted(results, key=lambda m: (m.repeat, [s.key for s in all_sides].index(m.side)))
    details = [
        f"{steps:,} env steps per run; medians over {repeats} repeat(s). Ratio = ours / peer "
        "steps/s. Eval = mean return of the final policy over 20 deterministic episodes (500 is "
        "the maximum).",
        "",
        *common.table(
            ("Side", "torch threads", "Steps/s (median)", "Time (s, median)", "Eval (median)"),
            (
                (
                    OURS if s.threads is None else SB3,
                    "1 (device.threads)" if s.threads is None else s.threads,
                    f"{med(s.key, 'steps_per_s'):,.0f}",
                    f"{med(s.key, 'seconds'):.2f}",
                    f"{med(s.key, 'eval_return'):.1f}",
                )
                for s in all_sides
            ),
            "lrrrr",
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
                    "not timed apart" if m.eval_seconds is None else f"{m.eval_seconds:.2f}",
                    f"{m.steps_per_s:,.0f}",
                    f"{m.eval_return:.1f}",
                )
                for m in per_run
            ),
            "rrlrrrrr",
        ),
        "",
        "How it is measured:",
        "",
        "- All sides run in one process, one after the other in each repeat (the order reverses "
        "on every other repeat). Seeds are 0, 1, 2, ... (one per repeat, the same for every "
        "side). Before the repeats each side runs one untimed 256-step warm-up, so one-time "
        "costs (lazy imports, first calls) count for none.",
        "- Ours runs on numpy alone: `device=cpu` resolves to `cpu (numpy)` for PPO's plain "
        "MLPs, so its networks, Adam and checkpoints never touch torch (a fresh process of ours "
        "never imports it). Flushing of denormals is set off before every SB3 run, so SB3 runs "
        "with torch's default as it would on its own.",
        "- Threads: ours runs at its default `device.threads=1` (train() limits numpy's BLAS to "
        "one thread through threadpoolctl); SB3 runs once at torch's default thread count "
        f"(`torch.get_num_threads()` at process start: {common.default_torch_threads()} here, "
        "what an SB3 user gets) and once with `torch.set_num_threads(1)`. The thread count is "
        "set before each side and restored after it. On a 2-core machine torch at 2 threads is "
        "fragile: while another process keeps one core busy, its OpenMP threads wait on each "
        "other and SB3 at the default slows down by orders of magnitude (seen while writing "
        "this benchmark); the header's bracketed load figure tells whether that happened.",
        "- Hyperparameters (RL Zoo, `ppo.yml`, CartPole-v1): 8 envs, n_steps 32, batch 256, "
        "20 epochs, gamma 0.98, GAE lambda 0.8, ent_coef 0, learning rate linear from 1e-3 and "
        "clip range linear from 0.2 (both to 0), separate 64x64 tanh actor and critic, vf_coef "
        "0.5, max_grad_norm 0.5, unclipped value loss. Ours: `algo=ppo env=cartpole` (the "
        "`conf/tuned/rl/ppo_cartpole.yaml` preset) with console, TensorBoard, periodic "
        "evaluation and periodic/best checkpoints off. Both sides finish the last 256-step "
        "rollout, so they take slightly more steps than asked.",
        "- Ours: `runner_core.train.train()` timed end to end: it includes creating the envs "
        "and the model, training, the final 20-episode deterministic evaluation (on 20 "
        "vectorized eval envs), writing metrics.jsonl, the final checkpoints and summary.json. "
        "Composing the Hydra config is not timed.",
        '- SB3: `PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=8), ...)` built untimed; '
        "timed: `learn()` plus `evaluate_policy(model, eval_env, n_eval_episodes=20, "
        "deterministic=True)` on a fresh single CartPole env, so all sides do the same work.",
        "- Implementation differences that count in the timings: ours steps CartPole's native "
        "numpy-vectorized env (`gymnasium.make_vec`), SB3 steps 8 Python envs in a "
        "`DummyVecEnv`; ours uses next-step autoreset, so the step after each episode's end "
        "only resets that sub-env, counts as an env step and is dropped from training.",
    ]
    return common.Result(NAME, TITLE, rows, details)


if __name__ == "__main__":
    common.main_one(NAME, run, __doc__.split("\n\n")[0])
