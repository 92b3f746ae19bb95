"""Shared helpers: compose the real Hydra config (shrunk for speed), run `train()` in a tmp dir,
run the CLI as a subprocess, and read what a run wrote."""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from runner_core.entrypoint import CONF_DIR
from runner_core.metrics import WALL_CLOCK_KEYS

REPO = CONF_DIR.parent
# keys whose values depend on the wall clock, not on the computation
IGNORED_KEYS = frozenset({*WALL_CLOCK_KEYS, "train/steps_per_s"})

# overrides that keep every run small and quiet (CLI overrides given by a test come after them)
FAST_RL = (
    "logger.console=off",
    "device=cpu",
    "eval.episodes=2",
    "eval.every_steps=0",
    "checkpoint.every_steps=0",
)
FAST_DL = ("logger.console=off", "device=cpu", "algo.epochs=2")
# small settings for quick runs, applied to every RL algorithm whose config has the key (so a
# new algorithm needs no entry here): budgets in each loop's unit, then what makes a step cheap
# (planning sweeps are cheap: they run to convergence)
FAST_ALGO_KEYS = {
    "total_steps": 512,
    "generations": 2,
    "num_steps": 64,
    "num_epochs": 2,
    "learning_starts": 100,
    "train_freq": 4,
    "gradient_steps": 1,
    "buffer_size": 1000,
    "target_update_interval": 100,
    "population": 8,
}
FAST_ENV = ("env.num_envs=2",)


def options(group: str) -> list[str]:
    """The options of a config group, read from conf/<group>/ (new files are picked up)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def algo_node(option: str) -> dict[str, Any]:
    return yaml.safe_load((CONF_DIR / "algo" / f"{option}.yaml").read_text())


def algo_family(option: str) -> str:
    return algo_node(option)["family"]


def fast_overrides(algo: str) -> tuple[str, ...]:
    """The speed overrides for an algorithm option."""
    if algo_family(algo) == "dl":
        return FAST_DL
    node = algo_node(algo)
    keys = tuple(f"algo.{k}={v}" for k, v in FAST_ALGO_KEYS.items() if k in node)
    return FAST_RL + FAST_ENV + keys


def compose_cfg(
    overrides: list[str] | tuple[str, ...] = (),
    config_name: str = "train",
    fast: bool = True,
) -> DictConfig:
    """The real config, composed like the CLI does; with `fast`, shrunk for a quick run (the
    caller's overrides win over the speed overrides)."""
    overrides = list(overrides)
    if fast:
        algo = next((o.split("=", 1)[1] for o in overrides if o.startswith("algo=")), None)
        algo = algo or ("supervised" if config_name == "dl" else "ppo")
        overrides = [*fast_overrides(algo), *overrides]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


@pytest.fixture
def make_cfg():
    return compose_cfg


def run_train(cfg: DictConfig, run_dir: Path, resume: dict[str, Any] | None = None) -> float:
    """`train(cfg, run_dir)` in process."""
    from runner_core.train import train

    return train(cfg, run_dir, resume=resume)


@pytest.fixture
def train_run(tmp_path):
    """train_run(overrides, config_name="train", name="run") -> run dir after a finished run."""

    def go(overrides=(), config_name: str = "train", name: str = "run") -> Path:
        cfg = compose_cfg(overrides, config_name)
        run_dir = tmp_path / name
        run_train(cfg, run_dir)
        return run_dir

    return go


# subprocesses ------------------------------------------------------------------------------------
# (their timeouts are guards against a hung process, far above any run's time on a loaded
# machine: no test limits how fast anything runs)
@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    env.pop("HYDRA_FULL_ERROR", None)
    env.update(extra or {})
    return env


def cli_command(module: str, *args: str, python_flags: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, *python_flags, "-m", module, *args]


def run_cli(
    module: str,
    *args: str,
    cwd: Path,
    timeout: float = 900,
    python_flags: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> Result:
    """`python -m <module> args...` in `cwd` (so outputs/ lands there); `env` adds variables."""
    proc = subprocess.run(
        cli_command(module, *args, python_flags=python_flags),
        cwd=cwd,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def run_command(cmd: list[str], cwd: Path, timeout: float = 900) -> Result:
    proc = subprocess.run(
        cmd, cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def interrupt_cli(
    module: str,
    *args: str,
    cwd: Path,
    sig: int = signal.SIGINT,
    min_lines: int = 5,
    timeout: float = 900,
) -> tuple[Result, Path]:
    """Start a run, wait until its metrics.jsonl has `min_lines` lines, send `sig`, and return
    the result with the run dir."""
    proc = subprocess.Popen(
        cli_command(module, *args),
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + timeout
    run_dir = None
    try:
        while time.monotonic() < deadline:
            found = list((cwd / "outputs").glob("*/*/metrics.jsonl"))
            if found and count_lines(found[0]) >= min_lines:
                run_dir = found[0].parent
                break
            if proc.poll() is not None:
                break
            time.sleep(0.01)
        if proc.poll() is None:
            proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if run_dir is None:
        raise AssertionError(f"the run wrote no metrics before exiting: {stderr[-2000:]}")
    return Result(proc.returncode, stdout, stderr), run_dir


def count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for line in f if line.endswith(b"\n"))


# run directories --------------------------------------------------------------------------------
def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    with (run_dir / "metrics.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def read_summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))


def event_files(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("events.out.tfevents.*"))


def comparable(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Metrics records without the wall-clock keys."""
    return [{k: v for k, v in r.items() if k not in IGNORED_KEYS} for r in records]


def steps_by_tag(records: list[dict[str, Any]]) -> dict[str, list[int]]:
    tags: dict[str, list[int]] = collections.defaultdict(list)
    for record in records:
        for key in record:
            if key not in ("step", "wall_time"):
                tags[key].append(record["step"])
    return dict(tags)


def assert_continuous(records: list[dict[str, Any]], intervals: dict[str, int]) -> None:
    """Per tag: steps strictly increase (no duplicated or backwards step), and for the tags in
    `intervals` no gap exceeds the tag's logging interval."""
    for tag, steps in steps_by_tag(records).items():
        assert steps == sorted(set(steps)), f"{tag}: duplicated or backwards steps {steps}"
        if tag in intervals:
            gaps = [b - a for a, b in itertools.pairwise(steps)]
            assert max(gaps, default=0) <= intervals[tag], f"{tag}: gap in {steps}"


def tree_hashes(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under root (but the run's lock file, whose only
    content is the pid of the last process that owned the directory)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def leftovers(cwd: Path) -> list[str]:
    """What a CLI run left under cwd/outputs/."""
    root = cwd / "outputs"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def assert_run_dir(run_dir: Path, tensorboard: bool = True) -> dict[str, Any]:
    """A finished run dir has its metrics, summary, checkpoints, events and log."""
    assert (run_dir / "metrics.jsonl").is_file()
    assert read_metrics(run_dir), "metrics.jsonl is empty"
    summary = read_summary(run_dir)
    for key in ("global_step", "wall_time_s", "seed", "device", "objective", "objective_name"):
        assert key in summary, f"summary.json lacks {key}: {summary}"
    assert (run_dir / "checkpoints" / "final.pt").is_file()
    assert (run_dir / "checkpoints" / "latest.pt").is_file()
    assert (run_dir / "train.log").is_file()
    if tensorboard:
        assert event_files(run_dir), "no TensorBoard events file"
    return summary
