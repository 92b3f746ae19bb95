"""Child process of startup.py: time from this interpreter's start to the first CartPole step.

    python benchmarks/_first_step.py ours algo=ppo env=cartpole logger.console=off ...
    python benchmarks/_first_step.py sb3

It patches the CartPole env's `step` (ours: gymnasium's native `CartPoleVectorEnv`; SB3: the
single `CartPoleEnv` its DummyVecEnv steps) so that the first call writes one JSON line to stdout
(`start` and `first_step`: `time.time()` at this script's first line and after the step returns)
and ends the process at once with `os._exit(0)`. Then it starts training as a user would: ours
runs `python -m rl_runner <overrides>` via runpy; SB3 imports stable_baselines3, builds RL Zoo's
PPO and calls `learn()`.
"""

import time

START = time.time()  # before any other import

import json  # noqa: E402
import os  # noqa: E402
import runpy  # noqa: E402
import sys  # noqa: E402


def patch_first_step(cls: type) -> None:
    original = cls.step

    def step(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        line = json.dumps({"start": START, "first_step": time.time()})
        os.write(sys.stdout.fileno(), f"FIRST_STEP {line}\n".encode())
        os._exit(0)
        return result  # unreachable

    cls.step = step


def main() -> None:
    side, overrides = sys.argv[1], sys.argv[2:]
    from gymnasium.envs.classic_control import cartpole  # the runner imports it anyway

    if side == "ours":
        patch_first_step(cartpole.CartPoleVectorEnv)
        sys.argv = ["rl_runner", *overrides]
        runpy.run_module("rl_runner", run_name="__main__", alter_sys=True)
    elif side == "sb3":
        patch_first_step(cartpole.CartPoleEnv)
        import rl_zoo  # this script's folder is on sys.path

        model, _envs = rl_zoo.make_sb3_ppo(seed=0)
        model.learn(total_timesteps=rl_zoo.TOTAL_STEPS)
    else:
        sys.exit(f"unknown side {side!r}: ours or sb3")
    sys.exit("the env was never stepped")


if __name__ == "__main__":
    main()
