"""Stop a CLI run with SIGINT or SIGTERM, then `resume=<run dir>`: the run finishes its budget in
place, its curves continue without duplicated steps or gaps, and TensorBoard gets a new events
file in the same directory."""

from __future__ import annotations

import signal

from runner_core import checkpoint
from tests.conftest import (
    assert_continuous,
    event_files,
    interrupt_cli,
    read_metrics,
    read_summary,
    run_cli,
    steps_by_tag,
)

QUIET = ("logger.console=off", "device=cpu")
PPO = (  # rollouts of 2 x 64 = 128 steps; about 2 s of training
    "algo=ppo", "algo.total_steps=6400", "env.num_envs=2", "algo.num_steps=64",
    "algo.num_epochs=4", "algo.batch_size=64", "eval.every_steps=1280", "eval.episodes=2",
    "checkpoint.every_steps=1280", *QUIET,
)  # fmt: skip
DQN = (  # losses logged every 10 updates = 40 env steps
    "algo=dqn", "algo.total_steps=3000", "env.num_envs=1", "algo.learning_starts=200",
    "algo.train_freq=4", "algo.gradient_steps=1", "algo.target_update_interval=100",
    "logger.log_every_updates=10", "eval.every_steps=1000", "eval.episodes=2",
    "checkpoint.every_steps=1000", "network.hidden=[32,32]", *QUIET,
)  # fmt: skip
DL = ("algo.epochs=40", *QUIET)  # 20 optimizer steps an epoch


def interrupt_and_resume(tmp_path, module, args, sig, min_lines, target=None):
    """Interrupt a CLI run, then resume it with resume=<run dir> (or resume=<run dir>/<target>)."""
    result, run_dir = interrupt_cli(module, *args, cwd=tmp_path, sig=sig, min_lines=min_lines)
    assert result.rc == 128 + sig, f"rc {result.rc}: {result.stderr[-2000:]}"
    assert "Traceback" not in result.output
    assert f"{signal.Signals(sig).name} received at step" in result.stderr
    assert f"python -m {module} resume={run_dir}" in result.stderr  # the right program
    # train.log keeps why the run stopped, and the wall time goes on across the resume
    assert f"Stopped: {signal.Signals(sig).name} received" in (run_dir / "train.log").read_text()
    wall_before = read_metrics(run_dir)[-1]["wall_time"]
    latest = run_dir / "checkpoints" / "latest.pt"
    assert latest.is_file()
    stopped_at = checkpoint.load(latest)["step"]
    assert not (run_dir / "summary.json").exists()
    events = len(event_files(run_dir))

    where = run_dir / target if target else run_dir
    resumed = run_cli(module, f"resume={where}", "logger.console=off", cwd=tmp_path)
    assert resumed.rc == 0, resumed.stderr[-3000:]
    assert "Traceback" not in resumed.output
    assert len(event_files(run_dir)) > events, "no new TensorBoard events file after resume"
    assert [p.parent for p in (tmp_path / "outputs").glob("*/*/metrics.jsonl")] == [run_dir]
    records = read_metrics(run_dir)
    resumed_rows = records[next(i for i, r in enumerate(records) if r["step"] > stopped_at) :]
    # the resumed segment's wall times go on from the first segment's, not from near 0
    assert min(r["wall_time"] for r in resumed_rows) >= 0.5 * wall_before
    # every file of the run is as readable as the others (summary.json and checkpoints were 600)
    modes = {p.relative_to(run_dir): p.stat().st_mode & 0o777 for p in run_dir.rglob("*")
             if p.is_file()}  # fmt: skip
    assert set(modes.values()) == {0o644}, modes
    return run_dir, stopped_at


def test_ppo_sigint_then_resume(tmp_path):
    run_dir, stopped_at = interrupt_and_resume(tmp_path, "rl_runner", PPO, signal.SIGINT, 4)
    summary = read_summary(run_dir)
    assert stopped_at < 6400
    assert stopped_at % 128 == 0
    assert summary["global_step"] == 6400  # a multiple of the 128-step rollout
    records = read_metrics(run_dir)
    assert_continuous(records, {"losses/policy_loss": 128, "eval/mean_return": 1280})
    assert steps_by_tag(records)["losses/policy_loss"][-1] == 6400


def test_dqn_sigterm_then_resume(tmp_path):
    # resumed from the checkpoint file itself rather than the run dir
    run_dir, stopped_at = interrupt_and_resume(
        tmp_path, "rl_runner", DQN, signal.SIGTERM, 6, target="checkpoints/latest.pt"
    )
    assert stopped_at < 3000
    assert read_summary(run_dir)["global_step"] == 3000
    records = read_metrics(run_dir)
    assert_continuous(records, {"losses/td_loss": 40, "eval/mean_return": 1000})
    assert steps_by_tag(records)["eval/mean_return"] == [1000, 2000, 3000]


def test_dl_sigint_then_resume(tmp_path):
    run_dir, stopped_at = interrupt_and_resume(tmp_path, "dl_runner", DL, signal.SIGINT, 30)
    assert 0 < stopped_at < 40 * 20
    summary = read_summary(run_dir)
    assert summary["global_step"] == 40 * 20  # epochs x steps per epoch
    records = read_metrics(run_dir)
    assert_continuous(records, {"train/loss": 10, "val/acc": 20})
    tags = steps_by_tag(records)
    assert tags["train/loss"] == list(range(10, 801, 10))
    assert tags["val/acc"] == list(range(20, 801, 20))
    assert tags["test/acc"] == [800]
