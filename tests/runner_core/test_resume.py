"""Interrupt and resume in process: a stop request raised at a chosen update checkpoints and
stops; `resume=` (the entrypoint's path) continues the run in place."""

from __future__ import annotations

import collections
import signal

import pytest

from dl_runner.tasks.supervised import Supervised
from rl_runner.algos.on_policy.ppo import PPO
from runner_core import checkpoint
from runner_core.entrypoint import _resume
from runner_core.errors import ConfigError, Interrupted
from tests.conftest import (
    assert_continuous,
    comparable,
    compose_cfg,
    event_files,
    read_metrics,
    read_summary,
    run_train,
    steps_by_tag,
    tree_hashes,
)


def step_method(cls: type) -> str:
    return "training_step" if hasattr(cls, "training_step") else "update"


def runtime_classes(cls: type) -> list[type]:
    """`cls` and the numpy backend's version of it (what a CPU run actually runs)."""
    from rl_runner import fast

    name = f"{cls.__module__}.{cls.__qualname__}"
    if name in fast.VARIANTS:
        from hydra.utils import get_class

        return [cls, get_class(fast.VARIANTS[name])]
    return [cls]


def interrupt_at(monkeypatch, cls, call: int, sig: int = signal.SIGINT) -> None:
    """Deliver `sig` to this process during the `call`-th update of `cls` (1-based; its numpy
    backend's version too)."""
    calls = [0]
    for klass in runtime_classes(cls):
        method = step_method(klass)
        original = klass.__dict__.get(method) or getattr(klass, method)

        def update(self, *args, _original=original, **kwargs):
            calls[0] += 1
            if calls[0] == call:
                signal.raise_signal(sig)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(klass, method, update)


DL = ("algo.epochs=3",)


def test_dl_resume_continues_exactly(tmp_path, monkeypatch):
    """Interrupted mid-epoch and resumed, the DL run logs exactly what an uninterrupted run logs."""
    run_train(compose_cfg(DL, "dl"), tmp_path / "straight")

    interrupt_at(monkeypatch, Supervised, call=25)
    with pytest.raises(Interrupted) as err:
        run_train(compose_cfg(DL, "dl"), tmp_path / "cut")
    monkeypatch.undo()
    assert err.value.exit_code == 130
    message = str(err.value)
    assert "SIGINT received at step 25" in message
    assert f"resume={tmp_path / 'cut'}" in message
    state = checkpoint.load(tmp_path / "cut" / "checkpoints" / "latest.pt")
    assert state["step"] == 25
    assert not (tmp_path / "cut" / "summary.json").exists()
    events_before = len(event_files(tmp_path / "cut"))

    _resume(str(tmp_path / "cut"), ["logger.console=off"])
    assert read_summary(tmp_path / "cut")["global_step"] == 60
    assert len(event_files(tmp_path / "cut")) > events_before
    cut, straight = read_metrics(tmp_path / "cut"), read_metrics(tmp_path / "straight")
    assert comparable(cut) == comparable(straight)
    for key in ("val/acc", "test/acc", "objective"):
        assert read_summary(tmp_path / "cut")[key] == read_summary(tmp_path / "straight")[key]


def test_sigterm_stops_with_143(tmp_path, monkeypatch):
    interrupt_at(monkeypatch, Supervised, call=3, sig=signal.SIGTERM)
    with pytest.raises(Interrupted, match="SIGTERM received at step 3") as err:
        run_train(compose_cfg(DL, "dl"), tmp_path / "run")
    assert err.value.exit_code == 143
    assert checkpoint.load(tmp_path / "run" / "checkpoints" / "latest.pt")["step"] == 3


def test_signal_handlers_are_restored(tmp_path, monkeypatch):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    interrupt_at(monkeypatch, Supervised, call=2)
    with pytest.raises(Interrupted):
        run_train(compose_cfg(DL, "dl"), tmp_path / "run")
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


PPO_RUN = ("algo.total_steps=1024", "eval.every_steps=256", "checkpoint.every_steps=256")


def test_ppo_resume_in_place(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    interrupt_at(monkeypatch, PPO, call=3)  # rollouts of 2 envs x 64 steps: stops at step 384
    with pytest.raises(Interrupted, match="at step 384"):
        run_train(compose_cfg(PPO_RUN), run_dir)
    monkeypatch.undo()
    assert max(r["step"] for r in read_metrics(run_dir)) == 384
    _resume(str(run_dir), ["logger.console=off"])
    summary = read_summary(run_dir)
    assert summary["global_step"] == 1024
    records = read_metrics(run_dir)
    assert_continuous(records, {"losses/policy_loss": 128, "eval/mean_return": 256})
    assert steps_by_tag(records)["eval/mean_return"] == [256, 512, 768, 1024]


def test_resume_from_an_explicit_checkpoint_file(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    interrupt_at(monkeypatch, PPO, call=5)
    with pytest.raises(Interrupted, match="at step 640"):
        run_train(compose_cfg(PPO_RUN), run_dir)
    monkeypatch.undo()
    # best.pt holds an earlier step than latest.pt: resuming from it would cut the run's later
    # history, so it is refused (a new run from it is init_from=), and nothing changes
    best = run_dir / "checkpoints" / "best.pt"
    best_step = checkpoint.load(best)["step"]
    assert best_step in (256, 512)
    before = tree_hashes(run_dir)
    with pytest.raises(ConfigError, match=f"init_from={best}"):
        _resume(str(best), ["logger.console=off"])
    assert tree_hashes(run_dir) == before
    # the newest checkpoint named as a file is the same as the run directory
    _resume(str(run_dir / "checkpoints" / "latest.pt"), ["logger.console=off"])
    assert read_summary(run_dir)["global_step"] == 1024
    records = read_metrics(run_dir)
    assert_continuous(records, {"losses/policy_loss": 128, "eval/mean_return": 256})
    assert steps_by_tag(records)["losses/policy_loss"] == list(range(128, 1025, 128))


def test_resume_accepts_logger_overrides_only(tmp_path):
    run_dir = tmp_path / "run"
    run_train(compose_cfg(), run_dir)
    before = tree_hashes(run_dir)
    with pytest.raises(
        ConfigError, match=r"only logger\.\*.* may be overridden \(got algo\.lr=1\)"
    ):
        _resume(str(run_dir), ["algo.lr=1"])
    with pytest.raises(ConfigError, match=r"'logger\.console' has the value 'loud'"):
        _resume(str(run_dir), ["logger.console=loud"])
    with pytest.raises(ConfigError, match=r"logger\.nope"):
        _resume(str(run_dir), ["logger.nope=1"])
    assert tree_hashes(run_dir) == before


def _duplicates(run_dir):
    return {
        tag: [s for s, n in collections.Counter(steps).items() if n > 1]
        for tag, steps in steps_by_tag(read_metrics(run_dir)).items()
        if len(steps) != len(set(steps))
    }


def test_resuming_a_finished_dl_run_logs_nothing_twice(tmp_path):
    run_dir = tmp_path / "run"
    run_train(compose_cfg(["algo.epochs=1"], "dl"), run_dir)
    summary = read_summary(run_dir)
    _resume(str(run_dir), ["logger.console=off"])
    assert _duplicates(run_dir) == {}
    again = read_summary(run_dir)
    assert again["global_step"] == summary["global_step"]
    assert again["test/acc"] == summary["test/acc"]


def test_resuming_a_finished_rl_run_logs_nothing_twice(tmp_path):
    run_dir = tmp_path / "run"
    run_train(compose_cfg(), run_dir)
    _resume(str(run_dir), ["logger.console=off"])
    assert _duplicates(run_dir) == {}
