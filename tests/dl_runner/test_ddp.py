"""Data-parallel DL training under torchrun (two CPU processes, gloo): the same steps as one
process with the same global batch, one run directory written by rank 0 alone, and an
interrupted run that resumes in place."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from dl_runner.data import Minibatches
from dl_runner.trainer import _check_shards
from runner_core import checkpoint
from runner_core.entrypoint import follower_args
from runner_core.errors import ConfigError
from tests.conftest import (
    REPO,
    Result,
    cli_env,
    comparable,
    compose_cfg,
    event_files,
    leftovers,
    read_metrics,
    read_summary,
    run_train,
)

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch without gloo",
)

# dropout off: a process's dropout masks depend on its share of the batch
DDP = ("logger.console=off", "device=cpu", "algo.epochs=2", "network.dropout=0.0",
       "logger.log_every_steps=1")  # fmt: skip
STEPS = 40  # 2 epochs of ceil(1259 / 64) steps; the last step of an epoch has 43 examples
TIMEOUT = 900  # a hang guard only: the work is bounded by the steps


def torchrun(*args: str, cwd: Path, module: str = "dl_runner") -> Result:
    """`torchrun --standalone --nproc_per_node=2 -m <module> args...` in `cwd` (a free port)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", module, *args]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=cwd, env=cli_env({"PYTHONPATH": str(REPO)}), capture_output=True, text=True,
        timeout=TIMEOUT,
    )  # fmt: skip
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> tuple[Path, Path, Result]:
    """(cwd, run dir, result) of an uninterrupted 2-process run in the default (timestamped)
    directory."""
    cwd = tmp_path_factory.mktemp("ddp")
    result = torchrun(*DDP, "logger.console=plain", cwd=cwd)
    assert result.rc == 0, result.output[-3000:]
    runs = list((cwd / "outputs").glob("*/*/summary.json"))
    assert len(runs) == 1, leftovers(cwd)
    return cwd, runs[0].parent, result


def losses(run_dir: Path) -> list[float]:
    return [r["train/loss"] for r in read_metrics(run_dir) if "train/loss" in r]


def test_two_processes_match_one_process_with_the_same_global_batch(ddp_run, tmp_path):
    _, ddp_dir, _ = ddp_run
    run_train(
        compose_cfg(["network.dropout=0.0", "logger.log_every_steps=1"], "dl"), tmp_path / "one"
    )
    one, two = losses(tmp_path / "one"), losses(ddp_dir)
    assert len(one) == len(two) == STEPS
    # measured: at most 2e-7 relative over the 40 steps (summation order only)
    assert two == pytest.approx(one, rel=1e-5)
    summary_one, summary_two = read_summary(tmp_path / "one"), read_summary(ddp_dir)
    assert summary_two["global_step"] == summary_one["global_step"] == STEPS
    assert summary_two["val/acc"] == pytest.approx(summary_one["val/acc"], abs=1e-9)
    assert summary_two["test/loss"] == pytest.approx(summary_one["test/loss"], rel=1e-5)
    weights_one = checkpoint.load(tmp_path / "one" / "checkpoints" / "final.pt")
    weights_two = checkpoint.load(ddp_dir / "checkpoints" / "final.pt")
    for name, tensor in weights_one["session"]["model"].items():
        # measured: at most 1e-6 apart
        torch.testing.assert_close(weights_two["session"]["model"][name], tensor, atol=1e-5,
                                   rtol=1e-4)  # fmt: skip


def test_rank_zero_alone_writes_one_run_directory(ddp_run):
    cwd, run_dir, result = ddp_run
    # nothing but the one run directory (no other rank's timestamped directory or .hydra copy)
    assert [p.name for p in cwd.iterdir()] == ["outputs"]
    date = run_dir.parent.name
    assert leftovers(cwd) == sorted(
        [date, f"{date}/{run_dir.name}"]
        + [f"{date}/{run_dir.name}/{p.relative_to(run_dir)}" for p in run_dir.rglob("*")]
    )
    assert len(event_files(run_dir)) == 1
    assert sorted(p.name for p in run_dir.iterdir() if p.is_file()) == sorted(
        [".lock", "metrics.jsonl", "summary.json", "train.log", event_files(run_dir)[0].name]
    )
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "best.pt", "final.pt", "latest.pt",
    ]  # fmt: skip
    summary = read_summary(run_dir)
    assert summary["processes"] == 2
    steps = [r["step"] for r in read_metrics(run_dir) if "train/loss" in r]
    assert steps == list(range(1, STEPS + 1))  # one row per step: one writer
    assert result.stdout.count("supervised_digits: done") == 1  # one console
    latest = checkpoint.load(run_dir / "checkpoints" / "latest.pt")
    assert len(latest["rng_ranks"]) == 2  # every process's RNG, to resume each exactly
    assert not torch.equal(latest["rng_ranks"][0]["torch"], latest["rng_ranks"][1]["torch"])


def test_interrupted_run_resumes_in_place(ddp_run, tmp_path):
    """SIGTERM reaches one process (rank 1) at step 25: every process stops there, rank 0 writes
    latest.pt, and torchrun ... resume= continues to the metrics of an uninterrupted run."""
    _, straight, _ = ddp_run
    cut = tmp_path / "cut"
    stopped = torchrun("25", *DDP, f"hydra.run.dir={cut}", cwd=tmp_path,
                       module="tests.dl_runner.ddp_interrupt")  # fmt: skip
    assert stopped.rc != 0
    assert "Stopped: SIGTERM received at step 25" in stopped.stderr
    assert f"torchrun --nproc_per_node=2 -m dl_runner resume={cut}" in stopped.stderr
    assert stopped.stderr.count("Stopped:") == 1
    assert checkpoint.load(cut / "checkpoints" / "latest.pt")["step"] == 25
    assert not (cut / "summary.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["cut"]  # the other rank made nothing

    # a fresh run is refused there by rank 0, which alone reports it; the other rank stands down
    refused = torchrun(*DDP, f"hydra.run.dir={cut}", cwd=tmp_path)
    assert refused.rc != 0
    assert refused.stderr.count(f"Error: Run directory '{cut}' already holds a run") == 1
    assert "[rank1]" not in refused.stderr  # torchrun's prefix of a worker's traceback
    assert "rank      : 1" not in refused.stderr  # torchrun's list of the failed workers

    resumed = torchrun(f"resume={cut}", cwd=tmp_path)
    assert resumed.rc == 0, resumed.output[-3000:]
    assert read_summary(cut)["global_step"] == STEPS
    assert comparable(read_metrics(cut)) == comparable(read_metrics(straight))
    assert [p.name for p in tmp_path.iterdir()] == ["cut"]


# without torchrun -------------------------------------------------------------------------------
def test_batch_order_gives_each_rank_a_piece_of_every_batch():
    order = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    examples = TensorDataset(torch.arange(10))
    whole = [x for (x,) in Minibatches(examples, order, 4, first=1)]
    pieces = [[x for (x,) in Minibatches(examples, order, 4, first=1, shard=(r, 3))]
              for r in range(3)]  # fmt: skip
    for i, batch in enumerate(whole):
        joined = torch.cat([rank_pieces[i] for rank_pieces in pieces])
        assert torch.equal(joined, batch)
        assert max(len(p[i]) for p in pieces) - min(len(p[i]) for p in pieces) <= 1


def test_too_small_a_batch_for_the_processes_is_refused():
    _check_shards(1259, 64, 2)  # last batch 43
    with pytest.raises(ConfigError, match=r"'algo\.batch_size'"):
        _check_shards(1259, 2, 4)
    with pytest.raises(ConfigError, match="fewer than one per process"):
        _check_shards(1281, 64, 2)  # last batch 1


def test_other_ranks_write_no_hydra_directory():
    args = follower_args(["algo.lr=0.1", "hydra.run.dir=runs/x", "hydra.output_subdir=.hydra"])
    assert args == ["algo.lr=0.1", "hydra.run.dir=.", "hydra.output_subdir=null"]


def test_a_single_process_run_is_unchanged(tmp_path):
    run_train(compose_cfg(["algo.epochs=1"], "dl"), tmp_path / "run")
    assert "processes" not in read_summary(tmp_path / "run")
    assert "rng_ranks" not in checkpoint.load(tmp_path / "run" / "checkpoints" / "latest.pt")
