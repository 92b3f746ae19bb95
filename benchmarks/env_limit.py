"""The environment alone: how fast CartPole-v1 steps with 8 sub-envs and random actions, the
ceiling for any PPO on it. Our PPO's training throughput (from ppo_cartpole.py in the same suite
run, else measured here) is shown as a fraction of that ceiling.

    python benchmarks/env_limit.py [--repeats N] [--quick] [--out PATH]
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import common
import gymnasium as gym
import numpy as np
import rl_zoo

NAME = "env_limit"
WARMUP_SEED = 12345
TITLE = "Environment limit: CartPole-v1 alone, 8 envs, random actions"
MODES = {
    "vector_entry_point": "native `CartPoleVectorEnv` (numpy-vectorized; what ours steps)",
    "sync": "`SyncVectorEnv` of 8 `CartPoleEnv`s (generic; like SB3's `DummyVecEnv`)",
}


@dataclass(frozen=True)
class Timing:
    mode: str
    repeat: int
    steps: int
    seconds: float

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds


def step_env(mode: str, steps: int, repeat: int, seed: int) -> Timing:
    """Reset (untimed), then time `steps // 8` vector steps with pre-generated random actions."""
    envs = gym.make_vec(rl_zoo.ENV_ID, num_envs=rl_zoo.N_ENVS, vectorization_mode=mode)
    n = steps // rl_zoo.N_ENVS
    actions = np.random.default_rng(seed).integers(0, 2, size=(n, rl_zoo.N_ENVS))
    envs.reset(seed=seed)
    start = time.perf_counter()
    for action in actions:
        envs.step(action)
    elapsed = time.perf_counter() - start
    envs.close()
    return Timing(mode, repeat, n * rl_zoo.N_ENVS, elapsed)


def run(opts: common.Options, ctx: common.Context) -> common.Result:
    repeats = opts.reps(3)
    steps = 10_000 if opts.quick else 100_000
    print(f"[{NAME}] {repeats} repeat(s) x {steps:,} steps per vectorization mode", flush=True)
    for mode in MODES:  # untimed warm-up
        step_env(mode, 1_000, -1, WARMUP_SEED)
    timings = []
    for repeat in range(repeats):
        for mode in common.order(list(MODES), repeat):
            t = step_env(mode, steps, repeat, seed=repeat)
            timings.append(t)
            print(f"  repeat {repeat + 1}  {mode:<20} {t.steps_per_s:12,.0f} steps/s", flush=True)
    limit = {m: common.median(t.steps_per_s for t in timings if t.mode == m) for m in MODES}

    if "ours_ppo_steps_per_s" in ctx.values:
        ours = ctx.values["ours_ppo_steps_per_s"]
        source = "from the PPO throughput benchmark above, same suite run"
    else:
        import ppo_cartpole  # imports torch, SB3 and the runner: only when needed

        ppo_steps = 4 * rl_zoo.ROLLOUT if opts.quick else rl_zoo.TOTAL_STEPS
        ours = ppo_cartpole.ours_steps_per_s(repeats, ppo_steps)
        source = (
            f"measured here: median of {repeats} in-process train() run(s) of {ppo_steps:,} steps"
        )
    native, sync = limit["vector_entry_point"], limit["sync"]
    gym_version = common.package_version("gymnasium")
    row = common.Row(
        benchmark="Env limit: CartPole-v1 alone, 8 envs, random actions vs our PPO training",
        peer=f"gymnasium {gym_version} native vector env (`make_vec`, vector_entry_point)",
        peer_figure=common.rate(native),
        ours=common.rate(ours) + " (PPO)",
        ratio=f"{ours / native:.1%} of the limit",
        notes=f"ratio = ours / env alone, not a speed-up; `SyncVectorEnv`: {common.rate(sync)} "
        f"(ours = {ours / sync:.1%} of it)",
    )
    details = [
        f"{steps:,} env steps ({steps // rl_zoo.N_ENVS:,} vector steps of 8 sub-envs) per run; "
        f"medians over {repeats} repeat(s).",
        "",
        *common.table(
            ("Vectorization", "Steps/s (median)", "Every run (steps/s)", "Our PPO as a fraction"),
            (
                (
                    desc,
                    f"{limit[m]:,.0f}",
                    ", ".join(f"{t.steps_per_s:,.0f}" for t in timings if t.mode == m),
                    f"{ours / limit[m]:.2%}",
                )
                for m, desc in MODES.items()
            ),
            "lrlr",
        ),
        "",
        f"Our PPO: {ours:,.0f} env steps/s ({source}).",
        "",
        "How it is measured:",
        "",
        '- `gym.make_vec("CartPole-v1", num_envs=8, vectorization_mode=<mode>)`, reset with '
        "the repeat's seed (untimed), then `envs.step(actions[i])` in a loop over actions drawn "
        "beforehand (`numpy.random.default_rng(repeat).integers(0, 2, (n, 8))`), timed with "
        "`time.perf_counter()`. Autoreset is the vector env's own (next-step). One untimed "
        "1,000-step warm-up per mode first.",
        "- This is the most any agent could do on this machine with this env and no learning: "
        "PPO also runs the policy on every step and trains 20 epochs per 256-step rollout.",
    ]
    return common.Result(NAME, TITLE, [row], details)


if __name__ == "__main__":
    common.main_one(NAME, run, __doc__.split("\n\n")[0])
