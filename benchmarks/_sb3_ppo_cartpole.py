"""Child process of time_to_solve.py: SB3 PPO with RL Zoo's CartPole-v1 preset, trained until a
deterministic 20-episode evaluation reaches 475 (or the budget runs out); prints one JSON line.

    python benchmarks/_sb3_ppo_cartpole.py --seed S --eval-every 10000 --budget 100000

Evaluation: SB3's EvalCallback on one CartPole-v1 env every `eval_every` env steps (its
eval_freq counts vector steps, so eval_every // n_envs), stopping at the first evaluation whose
mean reaches the threshold (StopTrainingOnRewardThreshold as callback_on_new_best). SB3 runs at
torch's default thread count, as a user gets it.
"""

from __future__ import annotations

import argparse
import json
import time

import rl_zoo
from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold


class StopAndStamp(StopTrainingOnRewardThreshold):
    """SB3's stop-at-threshold callback that also notes when it stopped training (Unix time):
    EvalCallback calls it right after an evaluation with a new best mean."""

    solved_time: float | None = None

    def _on_step(self) -> bool:
        go_on = super()._on_step()
        if not go_on and self.solved_time is None:
            self.solved_time = time.time()
        return go_on


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=10_000, help="env steps")
    parser.add_argument("--budget", type=int, default=rl_zoo.TOTAL_STEPS, help="env steps")
    args = parser.parse_args()

    model, _envs = rl_zoo.make_sb3_ppo(args.seed)
    eval_env = rl_zoo.make_sb3_eval_env(args.seed)
    stop = StopAndStamp(reward_threshold=rl_zoo.SOLVED_RETURN, verbose=0)
    evaluation = EvalCallback(
        eval_env,
        callback_on_new_best=stop,
        n_eval_episodes=rl_zoo.EVAL_EPISODES,
        eval_freq=args.eval_every // rl_zoo.N_ENVS,
        deterministic=True,
        verbose=0,
    )
    model.learn(total_timesteps=args.budget, callback=evaluation)
    solved = evaluation.best_mean_reward >= rl_zoo.SOLVED_RETURN
    result = {
        "solved_at_step": int(model.num_timesteps) if solved else None,
        "solved_at_time": stop.solved_time if solved else None,
        "steps": int(model.num_timesteps),
        "last_mean_return": float(evaluation.last_mean_reward),
        "best_mean_return": float(evaluation.best_mean_reward),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
