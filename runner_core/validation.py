"""Declarative checks of config values. Each rule names a key, a test and what is allowed, so
every error message reads the same: key, bad value, what is allowed."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from runner_core.errors import ConfigError


@dataclass(frozen=True)
class Rule:
    key: str  # dotted path in the composed config
    test: Callable[[Any], bool]
    allowed: str  # human description of the allowed values
    optional: bool = False  # None passes


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def positive(key: str, optional: bool = False) -> Rule:
    return Rule(key, lambda v: _is_number(v) and v > 0, "a number > 0", optional)


def non_negative(key: str) -> Rule:
    return Rule(key, lambda v: _is_number(v) and v >= 0, "a number >= 0")


def positive_int(key: str) -> Rule:
    return Rule(key, lambda v: _is_int(v) and v > 0, "an integer > 0")


def non_negative_int(key: str) -> Rule:
    return Rule(key, lambda v: _is_int(v) and v >= 0, "an integer >= 0")


def in_range(key: str, lo: float, hi: float, hi_open: bool = False) -> Rule:
    bracket = ")" if hi_open else "]"
    return Rule(
        key,
        lambda v: _is_number(v) and lo <= v and (v < hi if hi_open else v <= hi),
        f"a number in [{lo}, {hi}{bracket}",
    )


def one_of(key: str, options: Iterable[str]) -> Rule:
    opts = tuple(options)
    return Rule(key, lambda v: v in opts, "one of " + ", ".join(opts))


def boolean(key: str) -> Rule:
    return Rule(key, lambda v: isinstance(v, bool), "true or false")


def int_list(key: str, allow_empty: bool = False) -> Rule:
    return Rule(
        key,
        lambda v: (
            isinstance(v, list | tuple)
            and (allow_empty or len(v) > 0)
            and all(_is_int(x) and x > 0 for x in v)
        ),
        f"a {'' if allow_empty else 'non-empty '}list of integers > 0, e.g. [256,128]",
    )


def select(cfg: DictConfig, key: str) -> Any:
    """The value at a dotted key, resolved, with containers as plain Python objects."""
    value = OmegaConf.select(cfg, key, throw_on_missing=True)
    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value, resolve=True)
    return value


def check(cfg: DictConfig, rules: Sequence[Rule], where: str = "") -> None:
    """Raise ConfigError for the first rule the config breaks."""
    for rule in rules:
        try:
            value = select(cfg, rule.key)
        except MissingMandatoryValue:
            raise ConfigError(
                f"Config key '{rule.key}' has no value; it must be {rule.allowed}. "
                f"Set it on the command line ({rule.key}=...){where}."
            ) from None
        if value is None and rule.optional:
            continue
        if not rule.test(value):
            raise ConfigError(
                f"Config key '{rule.key}' has the value {value!r}, which is not allowed; "
                f"it must be {rule.allowed}. Fix it on the command line "
                f"({rule.key}=...) or in the YAML file that sets it{where}."
            )


# keys every run has, whatever its family
SEED_LIMIT = 2**32  # numpy's legacy seeding, gymnasium and torch all take seeds below this
COMMON_RULES: tuple[Rule, ...] = (
    Rule(
        "seed", lambda v: _is_int(v) and 0 <= v < SEED_LIMIT, f"an integer in [0, {SEED_LIMIT - 1}]"
    ),
    one_of("algo.family", ("rl", "dl")),
    one_of("device.type", ("auto", "cpu", "cuda", "mps")),
    positive_int("device.threads"),
    Rule(
        "network._target_",
        lambda v: isinstance(v, str) and "." in v,
        "a builder's import path, e.g. runner_core.networks.MLP",
    ),
    one_of("device.backend", ("auto", "torch", "numpy")),
    one_of("logger.console", ("auto", "rich", "plain", "off")),
    positive("logger.print_every_s"),
    boolean("logger.print_config"),
    positive_int("logger.log_every_updates"),
    positive_int("logger.log_every_steps"),
    non_negative_int("checkpoint.every_steps"),
    non_negative("checkpoint.every_minutes"),
    Rule(
        "init_from",
        lambda v: isinstance(v, str) and v != "",
        "null or a checkpoint path",
        optional=True,
    ),
)
RL_RULES: tuple[Rule, ...] = (
    Rule("env.id", lambda v: isinstance(v, str) and v != "", "a gymnasium id, e.g. CartPole-v1"),
    positive_int("env.num_envs"),
    one_of("env.vectorization", ("auto", "vector_entry_point", "sync", "async")),
    Rule(
        "env.max_episode_steps",
        lambda v: _is_int(v) and v > 0,
        "null or an integer > 0",
        optional=True,
    ),
    non_negative_int("eval.every_steps"),
    positive_int("eval.episodes"),
    boolean("eval.deterministic"),
    boolean("eval.background"),
    boolean("eval.video"),
    Rule("eval.stop_at_return", _is_number, "null or a number", optional=True),
)


class Hyper(SimpleNamespace):
    """Hyper-parameters as plain attributes (read in hot loops without OmegaConf's per-access
    cost). A key the algorithm reads but its config lacks is a ConfigError, not an
    AttributeError."""

    def __init__(self, node: DictConfig, where: str = "algo") -> None:
        values = OmegaConf.to_container(node, resolve=True)
        assert isinstance(values, dict)
        super().__init__(**{str(k): v for k, v in values.items()})
        object.__setattr__(self, "_where", where)

    def get(self, key: str, default: Any = None) -> Any:
        """An optional key: its value, or `default` when the config lacks it."""
        return self.__dict__.get(key, default)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        name = self.__dict__.get("name", "?")
        where = self.__dict__.get("_where", "algo")
        raise ConfigError(
            f"Config key '{where}.{key}' is missing: algo={name} needs it. Add it to "
            f"conf/{where}/{name}.yaml or set it on the command line (+{where}.{key}=...)."
        )


def plain(node: DictConfig) -> Hyper:
    return Hyper(node)


# rules of the keys that several algorithms share: an algorithm lists the ones it reads
# (`shared("total_steps", "lr")`) and adds its own
SHARED_RULES: dict[str, Rule] = {
    rule.key.split(".", 1)[1]: rule
    for rule in (
        positive_int("algo.total_steps"),
        positive("algo.lr"),
        boolean("algo.anneal_lr"),
        in_range("algo.gamma", 0.0, 1.0),
        positive_int("algo.batch_size"),
        positive_int("algo.buffer_size"),
        non_negative_int("algo.learning_starts"),
        positive("algo.max_grad_norm"),
        positive("algo.adam_eps"),
        boolean("algo.normalize_obs"),
        boolean("algo.normalize_reward"),
        in_range("algo.tau", 0.0, 1.0),
        positive_int("algo.num_steps"),
        in_range("algo.gae_lambda", 0.0, 1.0),
        non_negative("algo.ent_coef"),
        non_negative("algo.vf_coef"),
    )
}


def shared(*keys: str) -> tuple[Rule, ...]:
    return tuple(SHARED_RULES[k] for k in keys)


def algo_class(cfg: DictConfig) -> type:
    """The class named by `algo._target_`, or a ConfigError saying why it cannot be imported."""
    from hydra.utils import get_class

    try:
        return get_class(cfg.algo._target_)
    except Exception as exc:
        raise ConfigError(
            f"Config key 'algo._target_' is {cfg.algo._target_!r}, which cannot be imported "
            f"({exc})."
        ) from None
