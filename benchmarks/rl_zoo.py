"""RL Zoo's PPO preset for CartPole-v1 and the Stable-Baselines3 model built from it.

One place for the hyperparameters every benchmark uses (ppo_cartpole.py, time_to_solve.py,
startup.py and their child scripts). It imports nothing heavy at module level, so a child
process that times its own start-up pays only for what it really uses.

Source: rl-baselines3-zoo, hyperparams/ppo.yml, CartPole-v1 (normalize: false, n_envs 8,
n_timesteps 1e5, policy MlpPolicy, n_steps 32, batch_size 256, gae_lambda 0.8, gamma 0.98,
n_epochs 20, ent_coef 0.0, learning_rate lin_0.001, clip_range lin_0.2). Our runner's
conf/tuned/rl/ppo_cartpole.yaml preset sets the same values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ENV_ID = "CartPole-v1"
N_ENVS = 8
N_STEPS = 32
BATCH_SIZE = 256
N_EPOCHS = 20
GAMMA = 0.98
GAE_LAMBDA = 0.8
ENT_COEF = 0.0
LEARNING_RATE = 1e-3
CLIP_RANGE = 0.2
TOTAL_STEPS = 100_000
ROLLOUT = N_ENVS * N_STEPS  # env steps per PPO update

SOLVED_RETURN = 475.0  # CartPole-v1's reward threshold
EVAL_EPISODES = 20
EVAL_SEED_OFFSET = 1_000_003  # as rl_runner.trainer: eval envs never share training seeds


def linear(start: float) -> Callable[[float], float]:
    """SB3 schedule (RL Zoo's `lin_<value>`): `progress_remaining` goes from 1 to 0."""

    def schedule(progress_remaining: float) -> float:
        return start * progress_remaining

    return schedule


def make_sb3_ppo(seed: int) -> tuple[Any, Any]:
    """SB3 PPO with RL Zoo's CartPole-v1 preset on `make_vec_env` (8 envs in a DummyVecEnv),
    on the CPU. Returns (model, training envs)."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    envs = make_vec_env(ENV_ID, n_envs=N_ENVS, seed=seed)
    model = PPO(
        "MlpPolicy",
        envs,
        n_steps=N_STEPS,
        batch_size=BATCH_SIZE,
        gae_lambda=GAE_LAMBDA,
        gamma=GAMMA,
        n_epochs=N_EPOCHS,
        ent_coef=ENT_COEF,
        learning_rate=linear(LEARNING_RATE),
        clip_range=linear(CLIP_RANGE),
        seed=seed,
        device="cpu",
        verbose=0,
    )
    return model, envs


def make_sb3_eval_env(seed: int) -> Any:
    """One CartPole-v1 env (in a DummyVecEnv, Monitor-wrapped like the training envs)."""
    from stable_baselines3.common.env_util import make_vec_env

    return make_vec_env(ENV_ID, n_envs=1, seed=seed + EVAL_SEED_OFFSET)
