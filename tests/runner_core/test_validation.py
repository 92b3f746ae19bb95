"""Validation rules: every message names the key, the bad value and what is allowed."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from runner_core.errors import ConfigError
from runner_core.validation import (
    COMMON_RULES,
    RL_RULES,
    Rule,
    boolean,
    check,
    in_range,
    int_list,
    non_negative,
    non_negative_int,
    one_of,
    positive,
    positive_int,
)
from tests.conftest import compose_cfg


def _cfg(**values):
    return OmegaConf.create({"a": values})


@pytest.mark.parametrize(
    ("rule", "good", "bad", "allowed"),
    [
        (positive("a.x"), [1, 0.5, 1e-9], [0, -1, "1", True, float("nan"), float("inf"), None],
         "a number > 0"),
        (non_negative("a.x"), [0, 0.0, 2], [-1e-9, "x", False], "a number >= 0"),
        (positive_int("a.x"), [1, 7], [0, -1, 1.0, 2.5, True], "an integer > 0"),
        (non_negative_int("a.x"), [0, 3], [-1, 0.0, True], "an integer >= 0"),
        (in_range("a.x", 0.0, 1.0), [0, 0.5, 1.0], [-0.1, 1.5, "0.5"], "a number in [0.0, 1.0]"),
        (in_range("a.x", 0.0, 1.0, hi_open=True), [0, 0.99], [1.0, 1], "a number in [0.0, 1.0)"),
        (one_of("a.x", ("p", "q")), ["p", "q"], ["r", 1, None], "one of p, q"),
        (boolean("a.x"), [True, False], [1, 0, "true"], "true or false"),
        (int_list("a.x"), [[1], [64, 64]], [[], [0], [1.5], 3, [True]], "a non-empty list"),
    ],
)  # fmt: skip
def test_rules(rule, good, bad, allowed):
    for value in good:
        check(_cfg(x=value), [rule])
    for value in bad:
        with pytest.raises(ConfigError) as err:
            check(_cfg(x=value), [rule])
        message = str(err.value)
        assert "'a.x'" in message
        assert repr(value) in message
        assert allowed in message
        assert "a.x=..." in message


def test_optional_rule_accepts_none():
    check(_cfg(x=None), [positive("a.x", optional=True)])
    with pytest.raises(ConfigError, match="has the value 0"):
        check(_cfg(x=0), [positive("a.x", optional=True)])


def test_missing_value_names_the_key():
    with pytest.raises(ConfigError) as err:
        check(_cfg(x="???"), [positive_int("a.x")])
    assert "'a.x' has no value" in str(err.value)
    assert "(a.x=...)" in str(err.value)


def test_first_broken_rule_is_reported():
    rules = [positive("a.x"), positive("a.y")]
    with pytest.raises(ConfigError, match=r"'a\.y'"):
        check(_cfg(x=1, y=-1), rules)


def test_where_suffix():
    with pytest.raises(ConfigError, match=r"sets it in conf/x\.yaml\.$"):
        check(_cfg(x=-1), [positive("a.x")], where=" in conf/x.yaml")


def test_custom_rule():
    rule = Rule("a.x", lambda v: v % 2 == 0, "an even number")
    check(_cfg(x=4), [rule])
    with pytest.raises(ConfigError, match="must be an even number"):
        check(_cfg(x=3), [rule])


@pytest.mark.parametrize("config_name", ["train", "dl"])
def test_shipped_configs_pass_the_common_rules(config_name):
    cfg = compose_cfg(config_name=config_name, fast=False)
    check(cfg, COMMON_RULES)
    if cfg.algo.family == "rl":
        check(cfg, RL_RULES)


def test_rl_rules_want_an_env_id():
    cfg = compose_cfg(["env=gym"])
    with pytest.raises(ConfigError, match=r"'env\.id' has no value.*\(env\.id=\.\.\.\)"):
        check(cfg, RL_RULES)


@pytest.mark.parametrize(
    ("override", "key", "value"),
    [
        ("env.max_episode_steps=true", "env.max_episode_steps", "True"),
        ("env.max_episode_steps=0", "env.max_episode_steps", "0"),
        ("env.vectorization=threads", "env.vectorization", "'threads'"),
        ("eval.episodes=0", "eval.episodes", "0"),
        ("env.id=7", "env.id", "7"),
    ],
)
def test_rl_rules(override, key, value):
    with pytest.raises(ConfigError) as err:
        check(compose_cfg([override]), RL_RULES)
    assert f"'{key}' has the value {value}," in str(err.value)


def test_rl_rules_accept_a_limit():
    check(compose_cfg(["env.max_episode_steps=50"]), RL_RULES)
