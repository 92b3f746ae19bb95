"""Value iteration: the dense model and one Bellman sweep against a hand computation on a tiny
model, the residual and convergence, the greedy policy, refusals, state dicts, and runs through
`train()`."""

from __future__ import annotations

import itertools
import signal

import numpy as np
import pytest
from gymnasium import spaces

from rl_runner.algos.planning import value_iteration
from rl_runner.algos.planning.value_iteration import ValueIteration, dense_model
from rl_runner.envs import env_spec
from rl_runner.specs import env_spec as make_spec
from runner_core import checkpoint
from runner_core.device import NUMPY_CPU
from runner_core.entrypoint import _resume
from runner_core.errors import ConfigError, EnvironmentFault, Interrupted
from tests.conftest import compose_cfg, read_metrics, read_summary, run_cli, run_train

# 3 states, 2 actions: P[s][a] = [(p, s', r, terminated), ...]; state 2 is terminal, and
# (1, 0) lists one outcome twice, as toy-text models do when two slips hit the same wall
TINY = {
    0: {0: [(1.0, 1, 0.0, False)], 1: [(0.5, 0, 1.0, False), (0.5, 2, 2.0, True)]},
    1: {0: [(0.4, 1, 1.0, False), (0.4, 1, 1.0, False), (0.2, 2, 0.0, True)],
        1: [(1.0, 2, 5.0, True)]},
    2: {0: [(1.0, 2, 0.0, True)], 1: [(1.0, 2, 0.0, True)]},
}  # fmt: skip


def make_tiny(monkeypatch, *overrides: str) -> ValueIteration:
    monkeypatch.setattr(value_iteration, "transition_model", lambda env_cfg: TINY)
    cfg = compose_cfg(["algo=value_iteration", "env=frozenlake", "algo.gamma=0.9", *overrides])
    spec = make_spec(spaces.Discrete(3), spaces.Discrete(2), "Tiny", None, has_model=True)
    return ValueIteration(cfg, spec, NUMPY_CPU, seed=0)


def test_dense_model_by_hand():
    R, P = dense_model(TINY, 3, 2)
    np.testing.assert_allclose(R, [[0.0, 0.5 * 1.0 + 0.5 * 2.0], [0.8 * 1.0, 5.0], [0.0, 0.0]])
    expected = np.zeros((3, 2, 3))
    expected[0, 0, 1] = 1.0
    expected[0, 1, 0] = 0.5  # the other half terminates: no value of state 2 follows
    expected[1, 0, 1] = 0.8  # 0.4 + 0.4
    np.testing.assert_allclose(P, expected)


def test_model_probabilities_must_sum_to_one():
    bad = {**TINY, 1: {**TINY[1], 1: [(0.7, 2, 5.0, True)]}}
    with pytest.raises(EnvironmentFault, match=r"state 1, action 1 .* sum to 0\.7"):
        dense_model(bad, 3, 2, "Tiny")


def test_one_sweep_by_hand(monkeypatch):
    vi = make_tiny(monkeypatch)
    vi.v[:] = [1.0, 2.0, 3.0]
    stats = vi.sweep()
    q = [
        [0.0 + 0.9 * 2.0, 0.5 * (1.0 + 0.9 * 1.0) + 0.5 * 2.0],  # 1.8, 1.95
        [0.8 * (1.0 + 0.9 * 2.0) + 0.2 * 0.0, 5.0],  # 2.24, 5
        [0.0, 0.0],  # terminal: its value 3.0 (never reached) falls to 0
    ]
    np.testing.assert_allclose(vi.q_values([1.0, 2.0, 3.0]), q)
    np.testing.assert_allclose(vi.v, [1.95, 5.0, 0.0])
    assert stats["dp/residual"] == pytest.approx(3.0)  # max(|1.95 - 1|, |5 - 2|, |0 - 3|)
    assert stats["dp/mean_value"] == pytest.approx((1.95 + 5.0) / 3)
    assert not vi.converged(stats)


def test_sweeps_converge_to_the_fixed_point(monkeypatch):
    """V*(1) = max(0.8 + 0.72 V*(1), 5) = 5, V*(0) = max(0.9 V*(1), 1.5 + 0.45 V*(0)) = 4.5."""
    vi = make_tiny(monkeypatch, "algo.tol=1e-12")
    residuals = []
    while True:
        stats = vi.sweep()
        residuals.append(stats["dp/residual"])
        if vi.converged(stats):
            break
    np.testing.assert_allclose(vi.v, [4.5, 5.0, 0.0], atol=1e-12)
    assert residuals[-1] < 1e-12 <= residuals[-2]
    # a sweep is a gamma-contraction: each residual is at most gamma times the one before
    assert all(b <= 0.9 * a + 1e-15 for a, b in itertools.pairwise(residuals))
    policy = vi.evaluation_policy(True, np.random.default_rng(0))
    assert policy(np.array([0, 1, 2])).tolist() == [0, 1, 0]  # state 2: a tie, the lowest


def test_stochastic_evaluation_draws_among_tied_actions(monkeypatch):
    vi = make_tiny(monkeypatch)
    for _ in range(200):
        vi.sweep()
    policy = vi.evaluation_policy(False, np.random.default_rng(0))
    assert set(policy(np.full(100, 1)).tolist()) == {1}
    assert set(policy(np.full(100, 2)).tolist()) == {0, 1}  # terminal: both actions are worth 0


# what it runs on -------------------------------------------------------------------------------
def test_refuses_envs_without_a_model(tmp_path):
    cfg = compose_cfg(["algo=value_iteration", "env=cartpole"])
    with pytest.raises(ConfigError, match="transition model") as err:
        run_train(cfg, tmp_path / "run")
    assert "CartPole-v1 exposes none" in str(err.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("algo.tol=0", "algo.tol"),
        ("algo.tol=null", "algo.tol"),
        ("algo.gamma=1.5", "algo.gamma"),
        ("algo.max_sweeps=0", "algo.max_sweeps"),
    ],
)
def test_rules(override, key):
    cfg = compose_cfg(["algo=value_iteration", "env=frozenlake", override])
    with pytest.raises(ConfigError, match=f"Config key '{key}'"):
        ValueIteration.check(cfg, env_spec(cfg.env))


# state -----------------------------------------------------------------------------------------
def test_state_dict_round_trip(monkeypatch):
    a = make_tiny(monkeypatch)
    for _ in range(3):
        a.sweep()
        a.num_updates += 1
    state = a.state_dict()
    assert state["backend"] == "numpy"
    b = make_tiny(monkeypatch)
    b.load_state_dict(state)
    np.testing.assert_array_equal(b.v, a.v)
    assert b.num_updates == 3
    assert b.sweep() == a.sweep()


# runs ------------------------------------------------------------------------------------------
def test_run_ends_when_converged(tmp_path):
    run_dir = tmp_path / "run"
    cfg = compose_cfg(["algo=value_iteration", "env=frozenlake", "algo.tol=1e-8"])
    run_train(cfg, run_dir)
    summary = read_summary(run_dir)
    sweeps = summary["global_step"]
    assert summary["unit"] == "sweeps"
    assert summary["device"] == "cpu (numpy)"
    assert 10 < sweeps < cfg.algo.max_sweeps
    records = read_metrics(run_dir)
    residuals = [(r["step"], r["dp/residual"]) for r in records if "dp/residual" in r]
    assert [s for s, _ in residuals] == list(range(1, sweeps + 1))  # one per sweep
    assert residuals[-1][1] < 1e-8 <= residuals[-2][1]
    assert not any(k.startswith("losses/") for r in records for k in r)
    assert [r["step"] for r in records if "eval/mean_return" in r] == [sweeps]
    v = checkpoint.load(run_dir / "checkpoints" / "final.pt")["session"]["algo"]["v_table"]
    assert v["values"].shape == (16,) and float(v["values"].max()) > 0.5


def test_run_stops_at_max_sweeps(tmp_path):
    run_dir = tmp_path / "run"
    run_train(compose_cfg(["algo=value_iteration", "env=taxi", "algo.max_sweeps=5"]), run_dir)
    assert read_summary(run_dir)["global_step"] == 5
    residuals = [r["dp/residual"] for r in read_metrics(run_dir) if "dp/residual" in r]
    assert len(residuals) == 5 and residuals[-1] >= 1e-10


def test_resumed_run_ends_with_the_same_values(tmp_path, monkeypatch):
    """Planning draws nothing at random: interrupted and resumed, the sweeps continue from the
    saved values and end where an uninterrupted run ends."""
    overrides = ["algo=value_iteration", "env=frozenlake8x8", "checkpoint.save_best=false"]
    run_train(compose_cfg(overrides), tmp_path / "straight")
    original = ValueIteration.sweep
    calls = [0]

    def sweep(self):
        calls[0] += 1
        if calls[0] == 100:
            signal.raise_signal(signal.SIGINT)
        return original(self)

    monkeypatch.setattr(ValueIteration, "sweep", sweep)
    with pytest.raises(Interrupted, match="at step 100"):
        run_train(compose_cfg(overrides), tmp_path / "cut")
    monkeypatch.undo()
    _resume(str(tmp_path / "cut"), ["logger.console=off"])

    def final(name: str) -> tuple[int, np.ndarray]:
        state = checkpoint.load(tmp_path / name / "checkpoints" / "final.pt")
        return state["step"], state["session"]["algo"]["v_table"]["values"].numpy()

    (cut_step, cut_v), (straight_step, straight_v) = final("cut"), final("straight")
    assert cut_step == straight_step
    np.testing.assert_array_equal(cut_v, straight_v)


def test_cli_run_never_imports_torch(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(
        "rl_runner", "algo=value_iteration", "env=frozenlake", "logger.console=off",
        "eval.episodes=4", f"hydra.run.dir={run_dir}", cwd=tmp_path,
        python_flags=("-X", "importtime"),
    )  # fmt: skip
    assert result.rc == 0, result.stderr[-3000:]
    imported = [
        ln.split("|")[-1].strip() for ln in result.stderr.splitlines() if "import time:" in ln
    ]
    assert len(imported) > 100, "expected -X importtime output on stderr"
    assert [m for m in imported if m == "torch" or m.startswith("torch.")] == []
    assert read_summary(run_dir)["device"] == "cpu (numpy)"
