"""A2C on CartPole-v1: this runner against Stable-Baselines3, side by side in one process.

All sides train with RL Zoo's A2C preset for CartPole-v1 (hyperparams/a2c.yml: 8 envs, 500k
steps, ent_coef 0, the rest SB3's A2C defaults: 5 steps per rollout, learning rate 7e-4
constant, gamma 0.99, GAE lambda 1 (n-step returns), vf_coef 0.5, max_grad_norm 0.5, RMSprop
with alpha 0.99 and eps 1e-5, no advantage normalization, separate 64x64 tanh actor and critic)
on the CPU, then evaluate the final policy deterministically for 20 episodes. Ours runs
`runner_core.train.train()` at its default `device.threads=1`, in torch (A2C has no numpy
version); SB3 runs twice: at torch's default thread count (what a user gets) and with one torch
thread.

Each repeat runs every side, alternating the order, so machine noise hits all alike; the report
gives medians over the repeats.

    python benchmarks/a2c_cartpole.py [--repeats N] [--quick] [--out PATH]
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import common
import rl_zoo
import torch

# ppo_cartpole exits with a hint when SB3 is missing, before stable_baselines3 is imported
from ppo_cartpole import OURS, SB3, WARMUP_SEED, Measurement, Side, describe, sides, torch_threads
from stable_baselines3.common.evaluation import evaluate_policy

from runner_core.train import SUMMARY_FILE, train  # imported before any timing

NAME = "a2c_cartpole"
TITLE = "A2C CartPole-v1 (RL Zoo preset): training throughput"

# RL Zoo's hyperparams/a2c.yml, CartPole-v1: n_envs 8, n_timesteps 5e5, ent_coef 0.0; the rest
# are SB3's A2C defaults, spelled out on both sides
N_ENVS = 8
TOTAL_STEPS = 500_000
N_STEPS = 5
LEARNING_RATE = 7e-4
GAMMA = 0.99
GAE_LAMBDA = 1.0
ENT_COEF = 0.0
VF_COEF = 0.5
MAX_GRAD_NORM = 0.5
RMS_PROP_EPS = 1e-5
ROLLOUT = N_ENVS * N_STEPS  # env steps per A2C update
RUN_COLUMNS = ("Repeat", "Seed", "Side", "Env steps", "Time (s)", "of which final eval (s)",
               "Steps/s", "Eval return")  # fmt: skip
QUICK_STEPS = 200 * ROLLOUT
WARMUP_STEPS = 10 * ROLLOUT

OUR_OVERRIDES = (
    "algo=a2c",
    "env=cartpole",
    f"env.num_envs={N_ENVS}",
    f"algo.num_steps={N_STEPS}",
    f"algo.lr={LEARNING_RATE}",
    "algo.anneal_lr=false",
    f"algo.gamma={GAMMA}",
    f"algo.gae_lambda={GAE_LAMBDA}",
    f"algo.ent_coef={ENT_COEF}",
    f"algo.vf_coef={VF_COEF}",
    f"algo.max_grad_norm={MAX_GRAD_NORM}",
    "algo.norm_adv=false",
    "algo.optimizer=rmsprop",
    "algo.rms_alpha=0.99",
    f"algo.optimizer_eps={RMS_PROP_EPS}",
    "network.hidden=[64,64]",
    "network.activation=tanh",
)


def make_sb3_a2c(seed: int) -> tuple[Any, Any]:
    """SB3 A2C with RL Zoo's CartPole-v1 preset on `make_vec_env` (8 envs in a DummyVecEnv), on
    the CPU. Returns (model, training envs)."""
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_vec_env

    envs = make_vec_env(rl_zoo.ENV_ID, n_envs=N_ENVS, seed=seed)
    model = A2C(
        "MlpPolicy",
        envs,
        learning_rate=LEARNING_RATE,
        n_steps=N_STEPS,
        gamma=GAMMA,
        gae_lambda=GAE_LAMBDA,
        ent_coef=ENT_COEF,
        vf_coef=VF_COEF,
        max_grad_norm=MAX_GRAD_NORM,
        rms_prop_eps=RMS_PROP_EPS,
        use_rms_prop=True,
        normalize_advantage=False,
        seed=seed,
        device="cpu",
        verbose=0,
    )
    return model, envs


def run_ours(seed: int, steps: int, repeat: int) -> Measurement:
    """The runner in-process: compose its config with Hydra (untimed), then time `train()` end to
    end (env and model creation, training, final evaluation, final checkpoints, summary.json)."""
    cfg = common.compose(
        [
            *OUR_OVERRIDES,
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
        tempfile.TemporaryDirectory(prefix="bench_a2c_cartpole_") as tmp,
    ):
        run_dir = Path(tmp) / "run"
        start = time.perf_counter()
        objective = train(cfg, run_dir=run_dir)
        elapsed = time.perf_counter() - start
        summary = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
        assert summary["device"] == "cpu", summary["device"]
    return Measurement(OURS, repeat, seed, int(summary["global_step"]), elapsed, objective)


def run_sb3(side: Side, seed: int, steps: int, repeat: int) -> Measurement:
    """SB3 with `side.threads` torch threads: build the model and envs untimed, then time
    `learn()` plus a final deterministic 20-episode evaluation on a fresh single CartPole env."""
    assert side.threads is not None
    # SB3 runs as it would on its own, with torch's default (no flushing of denormals to zero),
    # whatever an earlier run in this process set
    torch.set_flush_denormal(False)
    with torch_threads(side.threads):
        model, envs = make_sb3_a2c(seed)
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
    steps = QUICK_STEPS if opts.quick else TOTAL_STEPS
    all_sides = sides()
    print(f"[{NAME}] {repeats} repeat(s) x {steps:,} steps: ours vs {SB3}", flush=True)
    results = measure_all(repeats, steps)

    def med(key: str, attr: str) -> float:
        return common.median(getattr(m, attr) for m in results if m.side == key)

    ours_sps = med(OURS, "steps_per_s")
    ctx.values["ours_a2c_steps_per_s"] = ours_sps
    ctx.values["ours_a2c_steps"] = steps
    rows = []
    for side in all_sides[1:]:
        if side.threads == common.default_torch_threads():
            label = f"default threads ({side.threads})"
        else:
            label = f"{side.threads} torch thread"
        peer_sps = med(side.key, "steps_per_s")
        rows.append(
            common.Row(
                benchmark=f"A2C CartPole-v1 training, RL Zoo preset, {steps:,} steps",
                peer=f"{SB3}, {label}",
                peer_figure=common.rate(peer_sps),
                ours=common.rate(ours_sps),
                ratio=common.ratio(ours_sps / peer_sps),
                notes=f"ours in torch at device.threads=1; final eval (peer / ours) "
                f"{med(side.key, 'eval_return'):.1f} / {med(OURS, 'eval_return'):.1f}",
            )
        )
    order = [s.key for s in all_sides]
    per_run = sorted(results, key=lambda m: (m.repeat, order.index(m.side)))
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
            RUN_COLUMNS,
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
        f"side). Before the repeats each side runs one untimed {WARMUP_STEPS}-step warm-up, so "
        "one-time costs (lazy imports, first calls) count for none.",
        "- Ours runs the autograd A2C (`rl_runner.algos.on_policy.a2c`) in torch: there is no "
        "numpy version of A2C. Flushing of denormals is set off before every SB3 run, so SB3 "
        "runs with torch's default as it would on its own.",
        "- Threads: ours runs at its default `device.threads=1`; SB3 runs once at torch's "
        f"default thread count ({common.default_torch_threads()} here) and once with "
        "`torch.set_num_threads(1)`. The thread count is set before each side and restored "
        "after it.",
        "- Hyperparameters (RL Zoo, `a2c.yml`, CartPole-v1, and SB3's A2C defaults): 8 envs, "
        "n_steps 5, learning rate 7e-4 constant, gamma 0.99, GAE lambda 1, ent_coef 0, vf_coef "
        "0.5, max_grad_norm 0.5, RMSprop (alpha 0.99, eps 1e-5), no advantage normalization, "
        "separate 64x64 tanh actor and critic with orthogonal initialization. Ours gets them as "
        "explicit overrides of `algo=a2c env=cartpole`, with console, TensorBoard, periodic "
        "evaluation and periodic/best checkpoints off (metrics.jsonl on, one line per update).",
        "- Ours: `runner_core.train.train()` timed end to end: it includes creating the envs "
        "and the model, training, the final 20-episode deterministic evaluation (on 20 "
        "vectorized eval envs), writing metrics.jsonl, the final checkpoints and summary.json. "
        "Composing the Hydra config is not timed.",
        '- SB3: `A2C("MlpPolicy", make_vec_env("CartPole-v1", n_envs=8), ...)` built untimed; '
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
