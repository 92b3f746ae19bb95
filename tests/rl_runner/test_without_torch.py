"""PPO on plain MLPs and vector observations runs on numpy alone (`NUMPY_CPU`): the process never
imports torch, yet its checkpoints are torch files that load with weights_only=True. (Resuming
such runs, which reads the checkpoint with torch, is tested in runner_core/test_resume.py and
test_cli_resume.py: PPO there runs on `NUMPY_CPU` too.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from runner_core.checkpoint import load
from tests.conftest import fast_overrides, run_cli


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_ppo_cartpole_runs_without_importing_torch(tmp_path, activation):
    run_dir = tmp_path / "run"
    result = run_cli(
        "rl_runner", "algo=ppo", "env=cartpole", *fast_overrides("ppo"), "device=cpu",
        f"network.activation={activation}", f"hydra.run.dir={run_dir}", cwd=tmp_path,
        python_flags=("-X", "importtime"),
    )  # fmt: skip
    assert result.rc == 0, result.stderr[-3000:]
    imported = [
        ln.split("|")[-1].strip() for ln in result.stderr.splitlines() if "import time:" in ln
    ]
    assert len(imported) > 100, "expected -X importtime output on stderr"
    assert [m for m in imported if m == "torch" or m.startswith("torch.")] == []
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["device"] == "cpu (numpy)"

    for name in ("latest.pt", "best.pt", "final.pt"):
        state = load(run_dir / "checkpoints" / name)  # torch.load(weights_only=True)
        policy = state["session"]["algo"]["policy"]
        assert policy["actor.body.0.weight"].dtype == torch.float32
        assert policy["actor.body.0.weight"].shape == (64, 4)
        assert "torch" not in state["rng"]  # torch's generator was never created
    optimizer = load(run_dir / "checkpoints" / "final.pt")["session"]["algo"]["optimizer"]
    assert optimizer["steps"] > 0 and np.isfinite(optimizer["exp_avg_sq"].numpy()).all()


def test_auto_device_goes_without_torch_for_a_cpu_build(tmp_path):
    """device=auto (the default) with this machine's CPU build of torch."""
    run_dir = tmp_path / "run"
    result = run_cli(
        "rl_runner", "algo=ppo", "env=acrobot", *fast_overrides("ppo"),
        f"hydra.run.dir={run_dir}", cwd=tmp_path,
    )  # fmt: skip
    assert result.rc == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    if torch.__version__.endswith("+cpu"):
        assert summary["device"] == "cpu (numpy)"
