"""Tabular Q-learning: one update against a hand computation (bootstrapping, termination,
truncation, reset steps, sub-envs in order), the epsilon and step-size schedules, greedy
tie-breaking, refusals, state dicts, and short runs through `train()`."""

from __future__ import annotations

import signal

import numpy as np
import pytest

from rl_runner.algos.tabular.q_learning import QLearning
from rl_runner.algos.tabular.table import greedy
from rl_runner.collectors import Transition
from rl_runner.envs import env_spec
from runner_core import checkpoint
from runner_core.device import NUMPY_CPU
from runner_core.entrypoint import _resume
from runner_core.errors import ConfigError, Interrupted
from tests.conftest import (
    assert_continuous,
    compose_cfg,
    read_metrics,
    read_summary,
    run_cli,
    run_train,
    steps_by_tag,
)

SHORT = ("algo=q_learning", "env=frozenlake", "algo.total_steps=2000", "env.num_envs=2")


# hyper-parameters the hand computations assume, whatever the env's preset says
HAND = ("algo.total_steps=1000", "algo.lr=0.5", "algo.anneal_lr=false", "algo.gamma=0.9",
        "algo.exploration_fraction=0.5", "algo.exploration_initial_eps=1.0",
        "algo.exploration_final_eps=0.05")  # fmt: skip


def make_q(*overrides: str, env: str = "frozenlake", seed: int = 0) -> QLearning:
    cfg = compose_cfg(["algo=q_learning", f"env={env}", *HAND, *overrides])
    QLearning.check(cfg, env_spec(cfg.env))
    return QLearning(cfg, env_spec(cfg.env), NUMPY_CPU, seed)


def transition(obs, actions, rewards, next_obs, terminated=None, truncated=None, valid=None):
    n = len(obs)
    no = np.zeros(n, dtype=bool)
    return Transition(
        np.asarray(obs), np.asarray(actions), np.asarray(rewards, dtype=np.float64),
        np.asarray(next_obs), no if terminated is None else np.asarray(terminated),
        no if truncated is None else np.asarray(truncated),
        ~no if valid is None else np.asarray(valid),
    )  # fmt: skip


# one update ------------------------------------------------------------------------------------
def _hand_table(q: QLearning) -> None:
    q.q[3] = [0.1, 0.2, 0.3, 0.4]
    q.q[7] = [1.0, -2.0, 0.5, 0.0]


@pytest.mark.parametrize(
    ("terminated", "truncated", "expected_delta"),
    [
        (False, False, 1.0 + 0.9 * 1.0 - 0.3),  # r + gamma max_a' Q(7, a') - Q(3, 2)
        (True, False, 1.0 - 0.3),  # no bootstrap past a terminal state
        (False, True, 1.0 + 0.9 * 1.0 - 0.3),  # a truncated episode bootstraps
    ],
)
def test_one_update_matches_hand_computation(terminated, truncated, expected_delta):
    q = make_q()
    _hand_table(q)
    before = q.q.copy()
    stats = q.update(transition([3], [2], [1.0], [7], [terminated], [truncated]))
    expected = before.copy()
    expected[3, 2] = 0.3 + 0.5 * expected_delta
    np.testing.assert_allclose(q.q, expected, rtol=0, atol=1e-15)
    assert stats["td_error"] == pytest.approx(abs(expected_delta))
    assert stats["q_values"] == pytest.approx(expected[3, 2])
    assert stats["charts/learning_rate"] == 0.5
    assert stats["charts/epsilon"] == 1.0  # step 0


def test_reset_steps_are_not_learned_from():
    q = make_q()
    _hand_table(q)
    before = q.q.copy()
    assert q.update(transition([3], [2], [1.0], [7], valid=[False])) == {}
    stats = q.update(transition([3, 5], [2, 0], [1.0, 1.0], [7, 7], valid=[False, True]))
    assert np.flatnonzero(q.q != before).tolist() == [5 * 4 + 0]  # only sub-env 1's Q(5, 0)
    assert stats["td_error"] == pytest.approx(1.0 + 0.9 * 1.0)


def test_sub_envs_are_applied_in_order():
    """Sub-env 1 bootstraps from state 3, which sub-env 0 has just updated; sub-env 2 updates
    the same Q(3, 2) again, from its new value."""
    q = make_q()
    q.q[3] = [0.0, 0.0, 0.3, 0.0]
    q.q[7] = [2.0, 0.0, 0.0, 0.0]
    stats = q.update(transition([3, 5, 3], [2, 1, 2], [0.0, 0.0, 1.0], [7, 3, 7]))
    d0 = 0.0 + 0.9 * 2.0 - 0.3  # Q(3, 2): 0.3 -> 1.05
    d1 = 0.0 + 0.9 * 1.05 - 0.0  # Q(5, 1): 0 -> 0.4725 (0.135 if it saw the old Q(3, .))
    d2 = 1.0 + 0.9 * 2.0 - 1.05  # Q(3, 2): 1.05 -> 1.925
    assert q.q[5, 1] == pytest.approx(0.5 * d1)
    assert q.q[3, 2] == pytest.approx(1.05 + 0.5 * d2)
    assert stats["td_error"] == pytest.approx((abs(d0) + abs(d1) + abs(d2)) / 3)


# schedules -------------------------------------------------------------------------------------
def test_epsilon_decays_linearly_over_its_fraction():
    q = make_q()  # from 1.0 to 0.05 over half of 1,000 steps
    assert q.epsilon(0) == 1.0
    assert q.epsilon(250) == pytest.approx(0.525)
    assert q.epsilon(500) == pytest.approx(0.05)
    assert q.epsilon(900) == pytest.approx(0.05)
    assert make_q("algo.exploration_fraction=0").epsilon(0) == pytest.approx(0.05)


def test_learning_rate_optionally_decays_to_zero():
    q = make_q("algo.lr=0.4", "algo.anneal_lr=true")
    assert [q.learning_rate(s) for s in (0, 500, 1000)] == pytest.approx([0.4, 0.2, 0.0])
    assert make_q("algo.lr=0.4").learning_rate(500) == 0.4
    # the update learns with the step size of the step `act` was called at
    q.act(np.array([3]), 750)
    _hand_table(q)
    q.update(transition([3], [2], [1.0], [7], [True]))
    assert q.q[3, 2] == pytest.approx(0.3 + 0.1 * (1.0 - 0.3))


# acting ----------------------------------------------------------------------------------------
def test_greedy_ties_are_broken_at_random():
    q = make_q("algo.exploration_initial_eps=0", "algo.exploration_final_eps=0")
    q.q[6] = [0.0, 1.0, 0.5, 1.0]
    actions = q.act(np.full(4000, 6), 0)
    counts = np.bincount(actions, minlength=4)
    assert counts[0] == counts[2] == 0
    assert 0.45 < counts[1] / 4000 < 0.55
    # without a generator (and in a deterministic evaluation) the lowest tied action
    assert greedy(q.q[[6, 6]]).tolist() == [1, 1]
    policy = q.evaluation_policy(True, np.random.default_rng(0))
    assert policy(np.full(10, 6)).tolist() == [1] * 10


def test_epsilon_one_explores_uniformly():
    q = make_q("algo.exploration_fraction=0", "algo.exploration_final_eps=1.0")
    q.q[6] = [0.0, 1.0, 0.0, 0.0]
    counts = np.bincount(q.act(np.full(8000, 6), 0), minlength=4) / 8000
    np.testing.assert_allclose(counts, 0.25, atol=0.03)


def test_acting_is_reproducible_from_the_seed():
    def actions(seed: int) -> list[int]:
        q = make_q(seed=seed)
        return np.concatenate([q.act(np.arange(16), s) for s in range(0, 1000, 100)]).tolist()

    assert actions(0) == actions(0)
    assert actions(0) != actions(1)


def test_stochastic_evaluation_draws_from_its_own_generator():
    q = make_q("algo.exploration_final_eps=0.5")
    before = q.rng.bit_generator.state
    policy = q.evaluation_policy(False, np.random.default_rng(7))
    actions = policy(np.full(4000, 6))
    assert q.rng.bit_generator.state == before
    assert len(set(actions.tolist())) == 4  # epsilon 0.5: every action is drawn


# what it runs on -------------------------------------------------------------------------------
def test_refuses_vector_observations(tmp_path):
    cfg = compose_cfg(["algo=q_learning", "env=cartpole"])
    with pytest.raises(ConfigError, match="discrete observations") as err:
        run_train(cfg, tmp_path / "run")
    assert "CartPole-v1 has vector observations" in str(err.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("algo.lr=1.5", "algo.lr"),
        ("algo.lr=0", "algo.lr"),
        ("algo.exploration_final_eps=2", "algo.exploration_final_eps"),
        ("algo.gamma=1.1", "algo.gamma"),
    ],
)
def test_rules(override, key):
    cfg = compose_cfg(["algo=q_learning", "env=frozenlake", override])
    with pytest.raises(ConfigError, match=f"Config key '{key}'"):
        QLearning.check(cfg, env_spec(cfg.env))


# state -----------------------------------------------------------------------------------------
def test_state_dict_round_trip():
    a = make_q()
    gen = np.random.default_rng(3)
    for step in range(0, 200, 2):
        obs = gen.integers(0, 16, 2)
        actions = a.act(obs, step)
        a.update(transition(obs, actions, gen.random(2), gen.integers(0, 16, 2)))
        a.num_updates += 1
    state = a.state_dict()
    assert state["backend"] == "numpy"
    assert state["q_table"]["values"].dtype == np.float64
    b = make_q(seed=5)
    b.load_state_dict(state)
    np.testing.assert_array_equal(b.q, a.q)
    assert b.num_updates == 100
    assert b.act(np.arange(16), 300).tolist() == a.act(np.arange(16), 300).tolist()
    a.q[0, 0] = 123.0  # the state dict holds a copy
    assert state["q_table"]["values"][0, 0] != 123.0


def test_a_table_of_another_shape_is_refused():
    state = make_q(env="taxi").state_dict()
    with pytest.raises(ValueError, match=r"\(500, 6\).*\(16, 4\)"):
        make_q().load_state_dict(state)


# runs ------------------------------------------------------------------------------------------
def test_short_run_through_train(tmp_path):
    run_dir = tmp_path / "run"
    run_train(compose_cfg([*SHORT, "eval.every_steps=1000"]), run_dir)
    summary = read_summary(run_dir)
    assert summary["global_step"] == 2000
    assert summary["unit"] == "steps"
    assert summary["device"] == "cpu (numpy)"
    tags = steps_by_tag(read_metrics(run_dir))
    for tag in ("losses/td_error", "losses/q_values", "charts/epsilon", "charts/learning_rate"):
        assert tags[tag] == [1000, 2000], tag
    assert tags["eval/mean_return"] == [1000, 2000]
    state = checkpoint.load(run_dir / "checkpoints" / "final.pt")["session"]["algo"]
    table = state["q_table"]["values"].numpy()
    assert table.shape == (16, 4) and table.dtype == np.float64
    assert np.isfinite(table).all() and (table != 0).any()
    assert state["num_updates"] == 1000  # one per vector step of 2 sub-envs


def test_one_sub_env_skips_its_reset_steps(tmp_path):
    """With one sub-env every episode's end is followed by a step that only resets: it has
    nothing to learn from, and the logged losses stay finite."""
    run_dir = tmp_path / "run"
    run_train(compose_cfg([*SHORT, "env.num_envs=1"]), run_dir)
    records = read_metrics(run_dir)
    td = [r["losses/td_error"] for r in records if "losses/td_error" in r]
    assert len(td) == 2 and np.isfinite(td).all()
    assert read_summary(run_dir)["episodes"] > 20  # so there were reset steps


def test_resume_continues_the_run(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    cfg = compose_cfg([*SHORT, "algo.total_steps=4000", "eval.every_steps=2000"])
    original = QLearning.update
    calls = [0]

    def update(self, *args):
        calls[0] += 1
        if calls[0] == 600:  # env step 1200
            signal.raise_signal(signal.SIGINT)
        return original(self, *args)

    monkeypatch.setattr(QLearning, "update", update)
    with pytest.raises(Interrupted, match="at step 1,200"):
        run_train(cfg, run_dir)
    monkeypatch.undo()
    saved = checkpoint.load(run_dir / "checkpoints" / "latest.pt")["session"]["algo"]
    assert saved["num_updates"] == 600 and saved["q_table"]["values"].abs().sum() > 0

    _resume(str(run_dir), ["logger.console=off"])
    assert read_summary(run_dir)["global_step"] == 4000
    records = read_metrics(run_dir)
    assert_continuous(records, {"losses/td_error": 1000, "eval/mean_return": 2000})
    assert steps_by_tag(records)["losses/td_error"] == [1000, 2000, 3000, 4000]
    final = checkpoint.load(run_dir / "checkpoints" / "final.pt")["session"]["algo"]
    assert final["num_updates"] == 2000


def test_cli_run_never_imports_torch(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(
        "rl_runner", "algo=q_learning", "env=frozenlake", "algo.total_steps=1000",
        "logger.console=off", "eval.episodes=4", f"hydra.run.dir={run_dir}", cwd=tmp_path,
        python_flags=("-X", "importtime"),
    )  # fmt: skip
    assert result.rc == 0, result.stderr[-3000:]
    imported = [
        ln.split("|")[-1].strip() for ln in result.stderr.splitlines() if "import time:" in ln
    ]
    assert len(imported) > 100, "expected -X importtime output on stderr"
    assert [m for m in imported if m == "torch" or m.startswith("torch.")] == []
    assert read_summary(run_dir)["device"] == "cpu (numpy)"
