"""Thin bases: `Algorithm` holds what every RL algorithm shares; the family bases own the loop,
so an algorithm writes only its setup and `update(...) -> dict[str, float]`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from omegaconf import DictConfig

from rl_runner.buffers import RolloutBuffer, gae
from rl_runner.envs import EnvInfo
from runner_core.errors import ConfigError
from runner_core.validation import Rule, check, plain

if TYPE_CHECKING:
    import torch

    from rl_runner.trainer import RLTrainer


class Algorithm:
    """Config, env facts, device, observation encoding and checkpointable state."""

    action_kinds: ClassVar[tuple[str, ...]] = ("discrete",)
    rules: ClassVar[tuple[Rule, ...]] = ()

    def __init__(self, cfg: DictConfig, info: EnvInfo, device: Any, seed: int) -> None:
        """`device`: a torch device, or `NUMPY_CPU` where `runs_without_torch` allowed it."""
        self.hp = plain(cfg.algo)
        self.net_cfg = cfg.network
        self.info = info
        self.device = device
        self.rng = np.random.default_rng(seed)
        self.obs_rms = None
        if self.hp.normalize_obs:
            from rl_runner.normalize import RunningMeanStd

            self.obs_rms = RunningMeanStd(info.obs_dim)
        self.num_updates = 0

    @classmethod
    def check(cls, cfg: DictConfig, info: EnvInfo) -> None:
        """Refuse configs out of range and envs this algorithm cannot handle."""
        check(cfg, cls.rules)
        if info.action_kind not in cls.action_kinds:
            raise ConfigError(
                f"algo={cfg.algo.name} handles {' and '.join(cls.action_kinds)} action spaces, but "
                f"{info.id} has a {info.action_kind} action space. Pick another env, or an "
                "algorithm for that action space."
            )

    @classmethod
    def runs_without_torch(cls, cfg: DictConfig, info: EnvInfo) -> bool:
        """Whether this algorithm has numpy code for everything the run needs (network,
        observations, updates), so that on the CPU it can run without importing torch (see
        `runner_core.device.NUMPY_CPU`)."""
        return False

    # observations ------------------------------------------------------------------------------
    def encode(self, obs: np.ndarray, update_stats: bool = False) -> torch.Tensor:
        """Env observations -> float tensor (one-hot for Discrete, normalized if asked)."""
        import torch
        import torch.nn.functional as F

        x = torch.as_tensor(obs, device=self.device)
        if self.info.obs_discrete is not None:
            return F.one_hot(x.long(), self.info.obs_discrete).float()
        x = x.reshape(x.shape[0], -1).float()
        if self.obs_rms is not None:
            if update_stats:
                self.obs_rms.update(x)
            x = self.obs_rms(x)
        return x

    def encode_numpy(self, obs: np.ndarray, update_stats: bool = False) -> np.ndarray:
        """`encode` for the CPU-side rollout and evaluation loops: float32 numpy, and without a
        round trip through torch for plain vector observations (most envs)."""
        if self.info.obs_discrete is None and self.obs_rms is None:
            return np.asarray(obs, dtype=np.float32).reshape(len(obs), -1)
        return self.encode(obs, update_stats).cpu().numpy()

    def predict(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions for evaluation."""
        raise NotImplementedError

    def sample(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Actions drawn from the trained policy's own randomness (stochastic evaluation)."""
        raise NotImplementedError

    def evaluation_policy(
        self, deterministic: bool, rng: np.random.Generator
    ) -> Callable[[np.ndarray], np.ndarray]:
        """obs -> actions for one evaluation, with the weights as they are now: `predict`, or
        `sample` drawing from `rng` (its own stream, so evaluating does not change what
        training draws). Algorithms may prepare the policy once here instead of per step."""
        if deterministic:
            return self.predict
        return lambda obs: self.sample(obs, rng)

    @property
    def numpy_evaluation(self) -> bool:
        """Whether `evaluation_policy` runs in numpy alone, without torch calls, so that a forked
        process can run it (see `RLTrainer`): plain CPU networks, and observations that need no
        torch encoding."""
        return False

    def _numpy_observations(self) -> bool:
        return self.info.obs_discrete is None and self.obs_rms is None

    # state -------------------------------------------------------------------------------------
    def stateful(self) -> dict[str, Any]:
        """name -> object with state_dict()/load_state_dict() (networks, optimizers, buffers)."""
        return {"obs_rms": self.obs_rms} if self.obs_rms is not None else {}

    def state_dict(self) -> dict[str, Any]:
        state = {name: obj.state_dict() for name, obj in self.stateful().items()}
        state["num_updates"] = self.num_updates
        state["rng"] = self.rng.bit_generator.state
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, obj in self.stateful().items():
            if name in state:
                obj.load_state_dict(state[name])
        self.num_updates = int(state["num_updates"])
        self.rng.bit_generator.state = state["rng"]

    # entries of `stateful()` that belong to the training run rather than to what it learned
    # (a run started with `init_from` begins them fresh), and those a checkpoint may lack
    training_state: ClassVar[tuple[str, ...]] = ("optimizer",)
    optional_state: ClassVar[tuple[str, ...]] = ("buffer",)

    def load_learned(self, state: dict[str, Any]) -> None:
        """What another run learned (`init_from`): its networks, normalizer statistics and, if
        it stored one, its replay buffer; optimizer state, counters and RNGs stay fresh."""
        for name, obj in self.stateful().items():
            if name in self.training_state or (name not in state and name in self.optional_state):
                continue
            if name not in state:
                raise KeyError(f"the checkpoint holds no {name!r}")
            obj.load_state_dict(state[name])

    def learn(self, t: RLTrainer) -> None:
        raise NotImplementedError


class OnPolicyAlgorithm(Algorithm):
    """Loop: collect a (num_steps x num_envs) rollout with the current policy, estimate advantages
    with GAE, then `update(buffer)`. Subclasses set `self.policy` (an actor-critic)."""

    policy: Any

    def learn(self, t: RLTrainer) -> None:
        buf = RolloutBuffer(self.hp.num_steps, t.num_envs, self.info.obs_dim)
        while not t.done:
            self.collect(t, buf)
            stats = self.update(buf, progress=t.step / t.total)
            self.num_updates += 1
            t.after_update(stats)

    def collect(self, t: RLTrainer, buf: RolloutBuffer) -> None:
        forward = self.policy.forward_numpy()  # this rollout's snapshot of the policy
        sample = self.policy.sampler(self.rng, forward)
        obs = self.encode_numpy(t.obs, update_stats=True)
        for i in range(buf.obs.shape[0]):
            actions, buf.logprobs[i], buf.values[i] = sample(obs)
            buf.obs[i], buf.actions[i] = obs, actions
            next_obs, reward, terminated, truncated, valid = t.env_step(actions)
            buf.rewards[i], buf.terminated[i], buf.valid[i] = reward, terminated, valid
            np.logical_or(terminated, truncated, out=buf.dones[i])
            obs = self.encode_numpy(next_obs, update_stats=True)
        # advantage estimation
        next_value = forward(obs)[1]
        buf.advantages[:], buf.returns[:] = gae(
            buf.rewards, buf.values, next_value, buf.terminated, buf.dones,
            self.hp.gamma, self.hp.gae_lambda,
        )  # fmt: skip

    def update(self, buf: RolloutBuffer, progress: float) -> dict[str, float]:
        raise NotImplementedError

    @property
    def numpy_evaluation(self) -> bool:
        return self._numpy_observations() and self.policy.numpy_inference()

    def predict(self, obs: np.ndarray) -> np.ndarray:
        return self.policy.greedy(self.encode_numpy(obs))

    def sample(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.policy.sampler(rng)(self.encode_numpy(obs))[0]

    def evaluation_policy(
        self, deterministic: bool, rng: np.random.Generator
    ) -> Callable[[np.ndarray], np.ndarray]:
        if deterministic:
            greedy = self.policy.greedy_policy()
            return lambda obs: greedy(self.encode_numpy(obs))
        sample = self.policy.sampler(rng)
        return lambda obs: sample(self.encode_numpy(obs))[0]


class OffPolicyAlgorithm(Algorithm):
    """Loop: act (exploring), store valid transitions in a replay buffer, and every `train_freq`
    env steps after `learning_starts` run `gradient_steps` updates on sampled batches."""

    buffer: Any

    def explore(self, obs: np.ndarray, step: int) -> np.ndarray:
        raise NotImplementedError

    def learn(self, t: RLTrainer) -> None:
        hp = self.hp
        while not t.done:
            obs = t.obs
            actions = self.explore(obs, t.step)
            next_obs, reward, terminated, _truncated, valid = t.env_step(actions)
            if valid.all():
                self.buffer.add(obs, actions, reward, next_obs, terminated)
            else:
                self.buffer.add(
                    obs[valid], actions[valid], reward[valid], next_obs[valid], terminated[valid]
                )
            if self.obs_rms is not None:
                self.encode(next_obs, update_stats=True)
            self.on_env_step(t.step, t.num_envs)
            if t.step >= hp.learning_starts and t.step - self.last_train_step >= hp.train_freq:
                self.last_train_step = t.step
                stats = [
                    self.update(self.buffer.sample(hp.batch_size, self.rng))
                    for _ in range(hp.gradient_steps)
                ]
                self.num_updates += len(stats)
                t.after_update({k: float(np.mean([s[k] for s in stats])) for k in stats[0]})
            else:
                t.tick()

    last_train_step: int = 0

    def on_env_step(self, step: int, num_envs: int) -> None:
        """Per env step bookkeeping (target-network updates, schedules)."""

    def update(self, batch: Any) -> dict[str, float]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "last_train_step": self.last_train_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.last_train_step = int(state["last_train_step"])
