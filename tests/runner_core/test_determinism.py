"""The same seed on CPU gives the same metrics, the wall-clock keys aside."""

from __future__ import annotations

import pytest

from tests.conftest import comparable, compose_cfg, read_metrics, read_summary, run_train

CASES = {
    "ppo": ("train", ["algo=ppo", "eval.every_steps=256", "env.num_envs=4"]),
    "dqn": ("train", ["algo=dqn", "eval.every_steps=300", "algo.double_q=true"]),
    "ppo-normalized": ("train", ["algo=ppo", "algo.normalize_obs=true", "env=acrobot"]),
    "dl": ("dl", ["network.dropout=0.2"]),
}


@pytest.mark.parametrize("case", CASES)
def test_same_seed_same_metrics(tmp_path, case):
    config_name, overrides = CASES[case]
    runs = []
    for name in ("a", "b"):
        run_train(compose_cfg([*overrides, "seed=3"], config_name), tmp_path / name)
        runs.append(comparable(read_metrics(tmp_path / name)))
    assert len(runs[0]) > 3
    assert runs[0] == runs[1]
    assert read_summary(tmp_path / "a")["objective"] == read_summary(tmp_path / "b")["objective"]


@pytest.mark.parametrize("case", ["ppo", "dl"])
def test_another_seed_other_metrics(tmp_path, case):
    config_name, overrides = CASES[case]
    for seed in (1, 2):
        run_train(compose_cfg([*overrides, f"seed={seed}"], config_name), tmp_path / str(seed))
    assert comparable(read_metrics(tmp_path / "1")) != comparable(read_metrics(tmp_path / "2"))
