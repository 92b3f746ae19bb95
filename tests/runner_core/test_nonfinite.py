"""A NaN loss stops the run with NonFiniteError, naming the step, and leaves the last good
checkpoint untouched."""

from __future__ import annotations

import pytest

from dl_runner.tasks.supervised import Supervised
from rl_runner.algos.on_policy.ppo import PPO
from runner_core.errors import NonFiniteError
from tests.conftest import compose_cfg, read_metrics, run_train
from tests.runner_core.test_resume import runtime_classes, step_method


def nan_at(monkeypatch, cls, call: int, key: str, latest):
    """Make the `call`-th update of `cls` (its numpy backend's version too) return a NaN `key`;
    remember latest.pt's bytes then."""
    seen = {"calls": 0, "latest": None}
    for klass in runtime_classes(cls):
        method = step_method(klass)
        original = klass.__dict__.get(method) or getattr(klass, method)

        def update(self, *args, _original=original, **kwargs):
            stats = _original(self, *args, **kwargs)
            seen["calls"] += 1
            if seen["calls"] == call:
                seen["latest"] = latest.read_bytes()
                stats = {**stats, key: float("nan")}
            return stats

        monkeypatch.setattr(klass, method, update)
    return seen


def test_nan_ppo_loss_stops_the_run(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    latest = run_dir / "checkpoints" / "latest.pt"
    seen = nan_at(monkeypatch, PPO, call=3, key="policy_loss", latest=latest)
    cfg = compose_cfg(["checkpoint.every_steps=128", "algo.total_steps=1024"])
    with pytest.raises(NonFiniteError) as err:
        run_train(cfg, run_dir)
    assert err.value.exit_code == 3
    message = str(err.value)
    assert "'policy_loss' became nan at step 384" in message  # 3 rollouts of 2 envs x 64 steps
    assert str(latest) in message
    assert "is intact" in message
    assert seen["latest"] is not None
    assert latest.read_bytes() == seen["latest"]  # not overwritten after the NaN
    assert not (run_dir / "checkpoints" / "final.pt").exists()
    assert not (run_dir / "summary.json").exists()
    assert max(r["step"] for r in read_metrics(run_dir)) < 384  # the NaN update is not logged


def test_nan_dl_loss_stops_the_run(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    latest = run_dir / "checkpoints" / "latest.pt"
    seen = nan_at(monkeypatch, Supervised, call=25, key="loss", latest=latest)  # in epoch 2
    with pytest.raises(NonFiniteError, match="'loss' became nan at step 25"):
        run_train(compose_cfg(["algo.epochs=3", "checkpoint.every_steps=20"], "dl"), run_dir)
    assert latest.read_bytes() == seen["latest"]
    assert not (run_dir / "checkpoints" / "final.pt").exists()
    assert all(r["step"] <= 24 for r in read_metrics(run_dir))


def test_nan_before_any_checkpoint(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    nan_at(monkeypatch, PPO, call=1, key="value_loss", latest=run_dir / "metrics.jsonl")
    with pytest.raises(NonFiniteError, match="No checkpoint had been written yet"):
        run_train(compose_cfg(), run_dir)
    assert not (run_dir / "checkpoints" / "latest.pt").exists()
