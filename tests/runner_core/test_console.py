"""Console output: the compact header, progress lines with the latest return, evaluation and
loss, train.log's copy of them, and an ETA that stays sane past the budget."""

from __future__ import annotations

import time

from omegaconf import OmegaConf

from runner_core.console import Console


def test_plain_progress_lines_carry_the_latest_fields(tmp_path, capsys):
    console = Console("plain", tmp_path, print_every_s=0.0)
    console.start(1000, "steps")
    console.update(100, **{"return": 20.5})
    console.update(200, eval=475.0)
    console.update(300, policy_loss=-0.0123)
    console.close()
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("steps 300/1,000 (30%)")
    assert "return 20.5 | eval 475 | policy_loss -0.0123" in lines[-1]
    log = (tmp_path / "train.log").read_text()
    assert "eval 475 | policy_loss -0.0123" in log


def test_eta_at_and_past_the_budget(tmp_path):
    """At 100% the line said `eta 23:59:59`: a negative time left wrapped around."""
    console = Console("plain", tmp_path)
    console.start(100_000, "steps")
    console._start -= 10.0  # ten seconds in
    now = time.time()
    assert console._plain_line(100_096, now).endswith("eta 0:00:00")
    assert "(100%)" in console._plain_line(100_096, now)
    assert console._plain_line(50_000, now).endswith("eta 0:00:10")
    console.close()


def test_rich_mode_still_writes_progress_to_train_log(tmp_path):
    console = Console("rich", tmp_path, print_every_s=0.0)
    console.start(10, "steps")
    console.update(5, loss=0.5)
    console.close()
    assert "steps 5/10 (50%)" in (tmp_path / "train.log").read_text()


def test_compact_header_by_default_whole_tree_on_request(tmp_path, capsys):
    cfg = OmegaConf.create({"algo": {"name": "ppo", "lr": 0.001}, "seed": 3})
    facts = {"overrides": "algo.lr=1e-3", "algo": "ppo", "seed": 3, "unused": None}
    console = Console("plain", tmp_path)
    console.config(cfg, facts)
    out = capsys.readouterr().out
    assert out.splitlines() == ["overrides: algo.lr=1e-3", "algo: ppo", "seed: 3"]
    console.config(cfg, facts, full=True)
    assert "lr: 0.001" in capsys.readouterr().out
    console.close()
    assert "lr: 0.001" in (tmp_path / "train.log").read_text()  # the log always has the tree
