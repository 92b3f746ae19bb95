"""Periodic evaluations in a forked process (eval.background): the same results, best.pt and
logs as evaluating in the run's own process, and a run resumed from a best.pt written in the
background logs that evaluation once."""

from __future__ import annotations

import sys

import pytest
import torch

import rl_runner.trainer as trainer_module
from runner_core import checkpoint
from tests.conftest import comparable, compose_cfg, read_metrics, run_train, steps_by_tag

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="background evaluation: Linux")


def _evaluations(run_dir) -> list[tuple[int, float, float]]:
    return [
        (r["step"], r["eval/mean_return"], r["eval/std_return"])
        for r in read_metrics(run_dir)
        if "eval/mean_return" in r
    ]


def _forks(monkeypatch) -> list[int]:
    forks: list[int] = []
    real_fork = trainer_module.os.fork

    def counting_fork() -> int:
        forks.append(1)
        return real_fork()

    monkeypatch.setattr(trainer_module.os, "fork", counting_fork)
    return forks


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_background_evaluation_gives_what_the_foreground_gives(tmp_path, monkeypatch, algo):
    forks = _forks(monkeypatch)
    runs = {}
    for background in (True, False):
        flag = f"eval.background={str(background).lower()}"
        cfg = compose_cfg([f"algo={algo}", "eval.every_steps=256", "checkpoint.every_steps=512",
                           "algo.total_steps=1536", flag])  # fmt: skip
        run_dir = tmp_path / f"background={background}"
        runs[background] = run_dir, run_train(cfg, run_dir)
        if background:
            assert len(forks) == 5  # 256, 512, ..., 1280; the final one in the process
    assert len(forks) == 5  # none in the foreground run
    (bg_dir, bg_objective), (fg_dir, fg_objective) = runs[True], runs[False]
    assert bg_objective == fg_objective
    assert _evaluations(bg_dir) == _evaluations(fg_dir)
    assert steps_by_tag(read_metrics(bg_dir))["eval/mean_return"] == [256 * i for i in range(1, 7)]
    # the rows of metrics.jsonl in step order, as the foreground run writes them (a background
    # evaluation's row, logged when its result comes in, used to land after later steps' rows)
    rows = [r["step"] for r in read_metrics(bg_dir)]
    assert rows == sorted(rows)
    assert comparable(read_metrics(bg_dir)) == comparable(read_metrics(fg_dir))
    best = [checkpoint.load(d / "checkpoints" / checkpoint.BEST) for d in (bg_dir, fg_dir)]
    assert best[0]["step"] == best[1]["step"] and best[0]["eval"] == best[1]["eval"]
    for name, tensor in best[0]["session"]["algo"].items():
        if isinstance(tensor, dict):  # a network's or optimizer's state
            for key, value in tensor.items():
                if isinstance(value, torch.Tensor):
                    assert torch.equal(value, best[1]["session"]["algo"][name][key]), (name, key)


def test_resuming_from_a_best_checkpoint_written_in_the_background(tmp_path, monkeypatch):
    """The child writes best.pt before the parent has logged that evaluation; a run resumed from
    it logs the evaluation first, so metrics.jsonl holds each evaluation once."""
    forks = _forks(monkeypatch)
    # a learning rate too small to change the greedy policy: every evaluation scores the same,
    # so the first one, played in the background, stays the best
    cfg = compose_cfg(["algo=ppo", "eval.every_steps=256", "checkpoint.every_steps=0",
                       "algo.total_steps=1024", "algo.lr=1e-12"])  # fmt: skip
    run_dir = tmp_path / "run"
    run_train(cfg, run_dir)
    assert forks
    best = checkpoint.load(run_dir / "checkpoints" / checkpoint.BEST)
    assert best["step"] == 256 and best["session"]["last_eval_logged"] is False
    run_train(cfg, run_dir, resume=best)
    steps = steps_by_tag(read_metrics(run_dir))["eval/mean_return"]
    assert steps == [256, 512, 768, 1024]
