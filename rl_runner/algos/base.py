"""Thin bases. `Algorithm` holds what every RL algorithm shares; each family base owns its loop,
so an algorithm writes only its setup and its update:

| family base | loop | progress in |
|---|---|---|
| `OnPolicyAlgorithm` | collect a rollout, estimate advantages, `update(buffer, progress)` | steps |
| `OffPolicyAlgorithm` | act, store transitions, every `train_freq` steps `update(batch)` | steps |
| `TabularAlgorithm` | act, `update(transition)` after every env step | steps |
| `PlanningAlgorithm` | `sweep()` over the env's known model until converged | sweeps |
| `PopulationAlgorithm` | `ask()` candidates, play an episode each, `tell(returns)` | generations |

Env stepping goes through the trainer (`t.env_step`) and the collectors; checkpoints, resume,
evaluation, logging, stop requests and the NaN guard are the trainer's, whatever the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from omegaconf import DictConfig

from rl_runner.collectors import RolloutCollector, Transition, play_episodes
from rl_runner.normalize import ObsNormalizer, RewardScaler
from rl_runner.specs import EnvSpec
from runner_core.errors import ConfigError
from runner_core.validation import Hyper, Rule, check, select

if TYPE_CHECKING:
    from rl_runner.buffers import RolloutBuffer
    from rl_runner.trainer import RLTrainer

Policy = Callable[[np.ndarray], np.ndarray]  # observations -> env actions


class Algorithm:
    """Config, env spec, device, a seeded generator, observation and reward normalization,
    networks by role, and checkpointable state."""

    obs_kinds: ClassVar[tuple[str, ...]] = ("vector",)
    action_kinds: ClassVar[tuple[str, ...]] = ("discrete",)
    roles: ClassVar[tuple[str, ...]] = ()  # the networks it builds, by role (network.<role>)
    rules: ClassVar[tuple[Rule, ...]] = ()
    unit: ClassVar[str] = "steps"  # what its progress counts: env steps, sweeps, generations
    budget_key: ClassVar[str] = "algo.total_steps"
    # "numpy": the algorithm never needs torch (tabular and planning methods, and the numpy
    # backend's versions of PPO and DQN in `rl_runner.fast`): its run imports no torch, and its
    # periodic evaluations may run in a forked process (see `RLTrainer`)
    backend: ClassVar[str] = "torch"

    def __init__(self, cfg: DictConfig, spec: EnvSpec, device: Any, seed: int) -> None:
        self.cfg = cfg
        self.hp = Hyper(cfg.algo)
        self.spec = spec
        self.device = device
        self.rng = np.random.default_rng(seed)
        self.num_updates = 0
        # an optional key: `Hyper` answers a missing one with a ConfigError, not the
        # AttributeError that getattr's default needs
        self.obs_norm = (
            ObsNormalizer(spec.obs.shape) if self.hp.get("normalize_obs", False) else None
        )

    # what it can run on ---------------------------------------------------------------------
    @classmethod
    def check(cls, cfg: DictConfig, spec: EnvSpec) -> None:
        """Refuse configs out of range and envs this algorithm cannot handle."""
        check(cfg, cls.rules)
        name = cfg.algo.name
        if spec.action_kind not in cls.action_kinds:
            raise ConfigError(
                f"algo={name} handles {' and '.join(cls.action_kinds)} action spaces, but "
                f"{spec.id} has a {spec.action_kind} action space. Pick another env, or an "
                "algorithm for that action space."
            )
        if spec.obs_kind not in cls.obs_kinds:
            raise ConfigError(
                f"algo={name} handles {' and '.join(cls.obs_kinds)} observations, but {spec.id} "
                f"has {spec.obs_kind} observations. Pick another env, or an algorithm for them."
            )
        if cls.roles:
            from runner_core.networks import check_roles

            check_roles(cfg.network, cls.roles, f"algo={name}")
        if getattr(cfg.algo, "normalize_obs", False) and spec.obs_kind != "vector":
            raise ConfigError(
                f"Config key 'algo.normalize_obs' is true, but {spec.id} has {spec.obs_kind} "
                "observations: only vector observations are normalized."
            )

    @classmethod
    def budget(cls, cfg: DictConfig) -> int:
        """The run's length in `unit`s."""
        return int(select(cfg, cls.budget_key))

    @classmethod
    def warnings(cls, cfg: DictConfig) -> list[str]:
        """Settings that are allowed but make the run learn nothing or next to nothing, each
        said in one line at start."""
        return []

    # networks ---------------------------------------------------------------------------------
    def build(self, role: str, out_features: int, extra_features: int = 0) -> Any:
        """The torch network for `role`: an encoder for this env's observations, then the body
        the `network` group configures (with `network.<role>`'s overrides), on the device.
        With `extra_features` the body takes vector observations with that many more features
        concatenated (a critic Q(s, a) of [s, a])."""
        from runner_core.networks import build

        obs = self.spec.obs
        if extra_features:
            if obs.kind != "vector":
                raise ConfigError(
                    f"algo={self.cfg.algo.name}'s {role} network takes [observation, action] "
                    f"and needs vector observations; {self.spec.id} has {obs.kind} ones."
                )
            shape = (obs.flat_dim + extra_features,)
            net = build(self.cfg.network, role, "vector", shape, out_features)
        else:
            net = build(self.cfg.network, role, obs.kind, obs.shape, out_features, obs.n)
        return net.to(self.device)

    def tensor(self, x: np.ndarray) -> Any:
        import torch

        return torch.as_tensor(x, device=self.device)

    # observations and rewards (numpy, on the host) ------------------------------------------
    def observe(self, obs: np.ndarray, update: bool = False) -> np.ndarray:
        """Env observations as the networks take them: normalized if `algo.normalize_obs`
        (updating the running statistics while collecting, not while evaluating)."""
        return obs if self.obs_norm is None else self.obs_norm(obs, update)

    # acting -----------------------------------------------------------------------------------
    def evaluation_policy(self, deterministic: bool, rng: np.random.Generator) -> Policy:
        """observations -> env actions for one evaluation, with the weights as they are now:
        the greedy (mode) action, or a sample drawn from `rng` (its own stream, so evaluating
        does not change what training draws)."""
        raise NotImplementedError

    # state -------------------------------------------------------------------------------------
    def stateful(self) -> dict[str, Any]:
        """name -> object with state_dict()/load_state_dict() (networks, optimizers, buffers,
        normalizers)."""
        return {"obs_norm": self.obs_norm} if self.obs_norm is not None else {}

    def state_dict(self) -> dict[str, Any]:
        state = {name: obj.state_dict() for name, obj in self.stateful().items()}
        state["num_updates"] = self.num_updates
        state["rng"] = self.rng.bit_generator.state
        state["backend"] = self.backend
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("backend", self.backend)
        if saved != self.backend:
            raise ValueError(
                f"it was written by the {saved} backend and this run is on the {self.backend} "
                "backend (their optimizer states differ)"
            )
        for name, obj in self.stateful().items():
            if name in state:
                obj.load_state_dict(state[name])
        self.num_updates = int(state["num_updates"])
        self.rng.bit_generator.state = state["rng"]

    # entries of `stateful()` that belong to the training run rather than to what it learned
    # (a run started with `init_from` begins them fresh), and those a checkpoint may lack
    training_state: ClassVar[tuple[str, ...]] = ("optimizer",)
    optional_state: ClassVar[tuple[str, ...]] = ("buffer", "reward_scaler")

    def load_learned(self, state: dict[str, Any], buffers: bool = True) -> None:
        """What another run learned (`init_from`): its networks, normalizer statistics and, if
        it stored one (and `buffers`), its replay buffer; optimizer state, counters and RNGs
        stay fresh."""
        for name, obj in self.stateful().items():
            if name in self.training_state or (name not in state and name in self.optional_state):
                continue
            if not buffers and name == "buffer":
                continue
            if name not in state:
                raise KeyError(f"the checkpoint holds no {name!r}")
            obj.load_state_dict(state[name])

    def learn(self, t: RLTrainer) -> None:
        raise NotImplementedError


class OnPolicyAlgorithm(Algorithm):
    """Loop: collect a (num_steps x num_envs) rollout with the current policy (`rollout_policy`),
    estimate advantages with GAE, then `update(buffer, progress)`."""

    def __init__(self, cfg: DictConfig, spec: EnvSpec, device: Any, seed: int) -> None:
        super().__init__(cfg, spec, device, seed)
        self.reward_scaler = (
            RewardScaler(cfg.env.num_envs, self.hp.gamma)
            if self.hp.get("normalize_reward", False)
            else None
        )

    @classmethod
    def warnings(cls, cfg: DictConfig) -> list[str]:
        rollout = int(cfg.algo.num_steps) * int(cfg.env.num_envs)
        total = int(cfg.algo.total_steps)
        if rollout <= total:
            return []
        return [
            f"one rollout (algo.num_steps {cfg.algo.num_steps} x env.num_envs "
            f"{cfg.env.num_envs} = {rollout:,} env steps) is longer than algo.total_steps "
            f"({total:,}): the run makes a single update."
        ]

    def stateful(self) -> dict[str, Any]:
        extra = {"reward_scaler": self.reward_scaler} if self.reward_scaler is not None else {}
        return {**super().stateful(), **extra}

    def learn(self, t: RLTrainer) -> None:
        from rl_runner.buffers import RolloutBuffer, gae

        hp = self.hp
        buf = RolloutBuffer(hp.num_steps, t.num_envs, self.spec.obs, self.spec.act)
        collector = RolloutCollector(t, buf, self.observe, self.reward_scaler)
        while not t.done:
            next_values = collector.collect(self.rollout_policy(), self.values)
            # advantage estimation
            buf.advantages[:], buf.returns[:] = gae(
                buf.rewards, buf.values, next_values, buf.terminated, buf.dones,
                hp.gamma, hp.get("gae_lambda", 1.0),
            )  # fmt: skip
            stats = self.update(buf, t.fraction_done)
            self.num_updates += 1
            t.after_update(stats)

    def rollout_policy(self) -> Callable[[np.ndarray], tuple[np.ndarray, ...]]:
        """For one rollout: observations -> (actions to store, actions for the env,
        log pi(a|s), V(s)), as numpy arrays, with the weights as they are now."""
        raise NotImplementedError

    def values(self, obs: np.ndarray) -> np.ndarray:
        """V(s) for observations (numpy), to bootstrap the rollout's last step."""
        raise NotImplementedError

    def update(self, buf: RolloutBuffer, progress: float) -> dict[str, float]:
        raise NotImplementedError


class OffPolicyAlgorithm(Algorithm):
    """Loop: act (exploring), store the real transitions in a replay buffer, and every
    `train_freq` env steps after `learning_starts` run `gradient_steps` updates on sampled
    batches. Observations are stored as the env gives them and normalized (if asked) when
    acting and when sampled."""

    buffer: Any
    last_train_step: int = 0

    @classmethod
    def warnings(cls, cfg: DictConfig) -> list[str]:
        starts, total = int(cfg.algo.learning_starts), int(cfg.algo.total_steps)
        if starts < total:
            return []
        return [
            f"algo.learning_starts ({starts:,}) >= algo.total_steps ({total:,}): the run only "
            "acts at random and never trains; lower learning_starts or raise total_steps."
        ]

    def explore(self, obs: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(actions to store, actions for the env) for raw observations at env step `step`."""
        raise NotImplementedError

    def learn(self, t: RLTrainer) -> None:
        hp = self.hp
        while not t.done:
            obs = t.obs
            actions, env_actions = self.explore(obs, t.step)
            next_obs, reward, terminated, _truncated, valid = t.env_step(env_actions)
            if valid.all():
                self.buffer.add(obs, actions, reward, next_obs, terminated)
            else:
                self.buffer.add(
                    obs[valid], actions[valid], reward[valid], next_obs[valid], terminated[valid]
                )
            if self.obs_norm is not None:
                self.obs_norm.rms.update(next_obs[valid])
            self.on_env_step(t.step)
            if t.step >= hp.learning_starts and t.step - self.last_train_step >= hp.train_freq:
                self.last_train_step = t.step
                stats = [self.update(self.sample()) for _ in range(hp.gradient_steps)]
                self.num_updates += len(stats)
                t.after_update({k: float(np.mean([s[k] for s in stats])) for k in stats[0]})
            else:
                t.tick()

    def sample(self) -> Any:
        """A batch from the replay buffer, observations normalized if asked (numpy)."""
        batch = self.buffer.sample(self.hp.batch_size, self.rng)
        if self.obs_norm is None:
            return batch
        return batch._replace(obs=self.obs_norm(batch.obs), next_obs=self.obs_norm(batch.next_obs))

    def on_env_step(self, step: int) -> None:
        """Per env step bookkeeping (target-network updates, schedules)."""

    def update(self, batch: Any) -> dict[str, float]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "last_train_step": self.last_train_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.last_train_step = int(state["last_train_step"])


class TabularAlgorithm(Algorithm):
    """Loop: act, then `update(transition)` after every env step (one transition per sub-env);
    losses are logged every `log_every` env steps and at the end. For methods that learn from
    each transition as it comes (Q-learning, SARSA), with tables in numpy."""

    obs_kinds = ("discrete",)
    backend = "numpy"
    log_every: ClassVar[int] = 1000

    def act(self, obs: np.ndarray, step: int) -> np.ndarray:
        raise NotImplementedError

    def learn(self, t: RLTrainer) -> None:
        next_log = (t.step // self.log_every + 1) * self.log_every
        stats: list[dict[str, float]] = []
        while not t.done:
            obs = t.obs
            actions = self.act(obs, t.step)
            next_obs, reward, terminated, truncated, valid = t.env_step(actions)
            step_stats = self.update(Transition(obs, actions, reward, next_obs, terminated,
                                                truncated, valid))  # fmt: skip
            if step_stats:  # {}: a step that only reset sub-envs, nothing learned
                stats.append(step_stats)
            self.num_updates += 1
            if stats and (t.step >= next_log or t.step >= t.total):  # and the budget's end
                next_log = (t.step // self.log_every + 1) * self.log_every
                t.after_update({k: float(np.mean([s[k] for s in stats])) for k in stats[0]})
                stats.clear()
            else:
                t.tick()

    def update(self, transition: Transition) -> dict[str, float]:
        """Learn from one vector-env step; {} when it holds no valid transition."""
        raise NotImplementedError


class PlanningAlgorithm(Algorithm):
    """Loop: `sweep()` over a known model (the env's `unwrapped.P`) until `converged()` or the
    budget of sweeps is spent. Progress is counted in sweeps; evaluations play the greedy
    policy in the env."""

    obs_kinds = ("discrete",)
    unit = "sweeps"
    budget_key = "algo.max_sweeps"
    backend = "numpy"

    @classmethod
    def check(cls, cfg: DictConfig, spec: EnvSpec) -> None:
        # the model first: it is the reason an env without one cannot be planned over (such
        # envs mostly have vector observations too, which the base would name instead)
        if not spec.has_model:
            raise ConfigError(
                f"algo={cfg.algo.name} plans over the environment's transition model, but "
                f"{spec.id} exposes none (env.unwrapped.P, as gymnasium's toy-text envs have). "
                "Pick such an env (frozenlake, frozenlake8x8, taxi, cliffwalking) or a "
                "learning algorithm."
            )
        super().check(cfg, spec)

    def learn(self, t: RLTrainer) -> None:
        while not t.done:
            stats = self.sweep()
            self.num_updates += 1
            t.advance()
            t.after_update(stats)
            if self.converged(stats):
                t.finish_early()

    def sweep(self) -> dict[str, float]:
        raise NotImplementedError

    def converged(self, stats: dict[str, float]) -> bool:
        return False


class PopulationAlgorithm(Algorithm):
    """Loop, in generations: `ask()` for candidate parameter vectors, play `episodes_per_candidate`
    episodes of each over the vector envs (`play_candidates`), then `tell(returns)`. Progress is
    counted in generations; the env steps played are logged as `charts/env_steps`."""

    unit = "generations"
    budget_key = "algo.generations"

    def ask(self) -> np.ndarray:
        raise NotImplementedError

    def tell(self, candidates: np.ndarray, returns: np.ndarray) -> dict[str, float]:
        raise NotImplementedError

    def candidate_policy(self, candidates: np.ndarray) -> Policy:
        """A policy for the vector envs whose sub-env i acts with candidate i."""
        raise NotImplementedError

    def learn(self, t: RLTrainer) -> None:
        while not t.done:
            candidates = self.ask()
            returns, steps = play_episodes(
                t.population_envs(len(candidates)), self.candidate_policy(candidates),
                int(self.rng.integers(2**31)),
            )  # fmt: skip
            stats = self.tell(candidates, returns)
            self.num_updates += 1
            t.advance(env_steps=steps)
            t.after_update(stats)
