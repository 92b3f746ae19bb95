"""SAC's Pendulum preset reaches RL Zoo's score (slow: run by default and in CI; skip it with
-m "not slow")."""

from __future__ import annotations

import pytest

from tests.conftest import compose_cfg, read_summary, run_train

# with conf/tuned/rl/sac_pendulum.yaml, seed 0's deterministic evaluations at 5k, 10k, 15k and
# 20k steps were -151.5, -150.0, -155.6 and -150.1 (RL Zoo reports about -157 at 20k)
SEED = 0


@pytest.mark.slow
def test_pendulum_preset_solves(tmp_path):
    overrides = ["algo=sac", "env=pendulum", f"seed={SEED}", "logger.console=off"]
    cfg = compose_cfg(overrides, fast=False)
    assert cfg.algo.total_steps == 20000
    assert cfg.eval.episodes == 20
    assert cfg.eval.deterministic
    run_train(cfg, tmp_path / "run")
    summary = read_summary(tmp_path / "run")
    assert summary["global_step"] >= 20000
    assert summary["eval/mean_return"] >= -200, summary
