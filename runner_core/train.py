"""`train(cfg)`: the one straight data path of every run.

validate -> the family validates its part, then asks for the device (and the seeds) and
prepares its session (env or data, model) -> open the run (directory, logger, checkpoints) -> fit
-> summary. Returns the run's objective, so Hydra
sweepers can optimise it.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from runner_core.errors import ConfigError, RunnerError
from runner_core.validation import COMMON_RULES, check

# algo.family -> the module whose `prepare(cfg, start)` builds a session for it: it validates
# the config, calls `start(torch_free)` for the device (numpy alone where `torch_free` says the
# run can go without torch) with the RNGs seeded, and builds the session on that device
FAMILIES: dict[str, str] = {
    "rl": "rl_runner.trainer",
    "dl": "dl_runner.trainer",
}
SUMMARY_FILE = "summary.json"


def load_family(family: str) -> Any:
    return importlib.import_module(FAMILIES[family])


def train(cfg: DictConfig, run_dir: Path, resume: dict[str, Any] | None = None) -> float:
    """Run one experiment in `run_dir`; with `resume` (a loaded checkpoint) continue it."""
    from runner_core.device import resolve_device
    from runner_core.run import Run
    from runner_core.seeding import seed_everything

    def start(torch_free: bool) -> Any:
        device = resolve_device(cfg.device.type, cfg.device.threads, torch_free)
        seed_everything(cfg.seed)
        return device

    try:
        check(cfg, COMMON_RULES)
        session = load_family(cfg.algo.family).prepare(cfg, start)
    except RunnerError:
        if resume is None:
            discard_unstarted(run_dir)
        raise

    run = Run(cfg, run_dir, session, resume)
    try:
        if resume is None:
            run.console.config(cfg)
            run.logger.text("config", "```\n" + OmegaConf.to_yaml(cfg, resolve=True) + "\n```")
        else:
            run.console.info(f"Resuming {run_dir} at step {run.step:,}")
        run.install_signal_handlers()
        startup_done()
        results = session.fit(run)
        summary = {
            "objective": results[session.objective_name],
            "objective_name": session.objective_name,
            **results,
            "global_step": run.step,
            "unit": session.unit,
            "wall_time_s": round(run.elapsed, 2),
            "seed": cfg.seed,
            "device": str(session.device),
            "run_dir": str(run_dir),
            **session.describe(),
        }
        write_json_atomic(run_dir / SUMMARY_FILE, summary)
        hparams = _hparams(cfg)
        run.logger.hparams(hparams, {"hparams/objective": float(summary["objective"])})
        run.console.summary(
            f"{cfg.name}: done", {k: v for k, v in summary.items() if k != "run_dir"}
        )
        run.console.info(
            f"Run directory: {run_dir}\nTensorBoard: tensorboard --logdir {run_dir.parent}"
            "  (or make tensorboard), then open http://localhost:6006"
        )
        return float(summary["objective"])
    finally:
        run.close()


def startup_done() -> None:
    """Called just before training: if the entrypoint turned the garbage collector off for
    start-up, freeze what start-up created (torch, gymnasium, Hydra: ~10^6 objects that never
    die) into the collector's permanent generation, out of its passes, and turn it back on, so
    that cycles made while training are collected as usual."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def _hparams(cfg: DictConfig) -> dict[str, Any]:
    from runner_core.metrics import flatten_hparams

    tree = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(tree, dict)
    picked = {k: tree[k] for k in ("algo", "network", "seed") if k in tree}
    picked["env" if cfg.algo.family == "rl" else "dataset"] = tree[
        "env" if cfg.algo.family == "rl" else "dataset"
    ]
    return flatten_hparams(picked)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, default=str)
        f.write("\n")
    os.replace(tmp, path)


def discard_unstarted(run_dir: Path) -> None:
    """A run refused before it started leaves nothing behind: remove what Hydra wrote into its
    fresh directory (.hydra/) and the directory itself when that leaves it empty."""
    if not run_dir.is_dir():
        return
    hydra_dir = run_dir / ".hydra"
    if hydra_dir.is_dir() and set(p.name for p in hydra_dir.iterdir()) <= {
        "config.yaml",
        "hydra.yaml",
        "overrides.yaml",
    }:
        shutil.rmtree(hydra_dir)
    # the run dir, then the date dir Hydra made for it, where that leaves them empty
    for folder in (run_dir, run_dir.parent):
        with contextlib.suppress(OSError):
            folder.rmdir()


__all__ = ["ConfigError", "train"]
