"""The DL default reaches its published accuracy (slow: run by default and in CI)."""

from __future__ import annotations

import pytest

from tests.conftest import compose_cfg, read_summary, run_train


@pytest.mark.slow
def test_digits_default_reaches_97_percent(tmp_path):
    cfg = compose_cfg(["seed=0", "logger.console=off"], "dl", fast=False)
    run_train(cfg, tmp_path / "run")
    summary = read_summary(tmp_path / "run")
    assert summary["global_step"] == cfg.algo.epochs * 20
    assert summary["test/acc"] >= 0.97, summary
