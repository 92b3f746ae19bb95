"""The shipped presets reach their published scores (slow: run by default and in CI; skip them
with -m "not slow")."""

from __future__ import annotations

import pytest

from tests.conftest import compose_cfg, read_summary, run_train


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_cartpole_preset_solves(tmp_path, algo):
    cfg = compose_cfg([f"algo={algo}", "env=cartpole", "seed=0", "logger.console=off"], fast=False)
    assert cfg.eval.episodes == 20
    assert cfg.eval.deterministic
    run_train(cfg, tmp_path / "run")
    summary = read_summary(tmp_path / "run")
    assert summary["global_step"] >= cfg.algo.total_steps
    assert summary["eval/mean_return"] >= 475, summary
