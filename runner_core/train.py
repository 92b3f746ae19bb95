"""`train(cfg)`: the one straight data path of every run.

own the run directory -> validate -> the family validates its part, then asks for the device
(and the seeds) and prepares its session (env or data, model) -> open the run (logger,
checkpoints) -> fit -> summary. Returns the run's objective, so Hydra sweepers can optimise it.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from runner_core import distributed
from runner_core.errors import ConfigError, StorageError
from runner_core.rundir import RunDir, claim, is_storage_error, storage_message
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


def train(
    cfg: DictConfig,
    run_dir: Path | RunDir,
    resume: dict[str, Any] | None = None,
    *,
    rename_if_taken: bool = False,
    keep_if_refused: bool = False,
) -> float:
    """Run one experiment in `run_dir` (a path, or a directory this process already owns); with
    `resume` (a loaded checkpoint of that directory) continue it.

    A fresh run refused before it starts (bad config, unusable init_from) leaves nothing behind,
    unless `keep_if_refused` (a sweep job keeps its directory to record why it failed).

    In a data-parallel run (torchrun; `runner_core.distributed`) every process calls it: rank 0
    with the directory it owns, the others with its path, which they only read. Every process
    returns the same objective."""
    from runner_core.device import resolve_device
    from runner_core.run import Run
    from runner_core.seeding import seed_everything

    def start(torch_free: bool) -> Any:
        device = resolve_device(cfg.device.type, cfg.device.threads, torch_free)
        if distributed.active():
            device = distributed.place(device)
            seed_everything(distributed.seed(cfg.seed))
        else:
            seed_everything(cfg.seed)
        return device

    if distributed.is_follower() and distributed.active():
        path = run_dir.path if isinstance(run_dir, RunDir) else Path(run_dir)
        return _follow(cfg, path.absolute(), resume, start)
    fresh = resume is None
    owner = (
        run_dir
        if isinstance(run_dir, RunDir)
        else claim(run_dir, fresh=fresh, rename_if_taken=rename_if_taken)
    )
    try:
        check(cfg, COMMON_RULES)
        distributed.check_config(cfg)
        init = load_init(cfg) if fresh and cfg.get("init_from") else None
        session = load_family(cfg.algo.family).prepare(cfg, start)
        if init is not None:
            apply_init(session, init, cfg)
        opened = False
        try:
            run = Run(cfg, owner, session, resume)
            opened = True
        finally:  # the other ranks of a data-parallel run go on once the run is open here
            distributed.share(opened)
    except BaseException:
        if fresh and not keep_if_refused:
            owner.discard()
        else:
            owner.release()
        raise

    failed = True
    try:
        if resume is None:
            run.console.config(cfg, _facts(cfg, session, owner), full=cfg.logger.print_config)
            run.logger.text("config", "```\n" + OmegaConf.to_yaml(cfg, resolve=True) + "\n```")
            for warning in session.warnings():
                run.console.warn(warning)
        else:
            source = resume.get("loaded_from", "its checkpoint")
            run.console.info(f"Resuming {owner.path} from {source} at step {run.step:,}")
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
            "run_dir": str(owner.path),
            **session.describe(),
        }
        write_json_atomic(owner.path / SUMMARY_FILE, summary)
        overrides, sweep_dir = _job_overrides()
        run.logger.hparams(
            _hparams(cfg, overrides), _hparams_metrics(summary, run.logger.last),
            experiment_dir=sweep_dir,
        )  # fmt: skip
        run.console.summary(
            f"{cfg.name}: done", {k: v for k, v in summary.items() if k != "run_dir"}
        )
        run.console.info(
            f"Run directory: {owner.path}\nTensorBoard: tensorboard --logdir "
            f"{_outputs_root(owner.path)}  (or make tensorboard), then open http://localhost:6006"
        )
        run.close()
        failed = False
        return float(summary["objective"])
    except OSError as exc:
        if not is_storage_error(exc):
            raise
        raise StorageError(_storage_stop(exc, run)) from None
    finally:
        if failed:
            run.close(failed=True)


def _follow(cfg: DictConfig, run_dir: Path, resume: dict[str, Any] | None, start: Any) -> float:
    """`train` on a rank > 0: the same session and steps as rank 0, nothing written."""
    from runner_core.run import FollowerRun

    check(cfg, COMMON_RULES)
    distributed.check_config(cfg)
    init = load_init(cfg) if resume is None and cfg.get("init_from") else None
    session = load_family(cfg.algo.family).prepare(cfg, start)
    if init is not None:
        apply_init(session, init, cfg)
    if not distributed.share(False):  # rank 0 could not open the run (it reports why)
        raise distributed.Abandoned("rank 0 did not open the run")
    run = FollowerRun(cfg, run_dir, session, resume)
    try:
        run.install_signal_handlers()
        startup_done()
        results = session.fit(run)
    finally:
        run.close()
    return float(results[session.objective_name])


def _facts(cfg: DictConfig, session: Any, owner: RunDir) -> dict[str, Any]:
    """The compact header of a run: what was asked and where it goes."""
    overrides = ""
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = " ".join(HydraConfig.get().overrides.task)
    except ValueError:  # not started by Hydra (train() called directly)
        pass
    subject = "env" if cfg.algo.family == "rl" else "dataset"
    described = session.describe()
    return {
        "overrides": overrides,
        "algo": cfg.algo.name,
        subject: described.get("env_id") or described.get("dataset"),
        "device": str(session.device),
        "seed": cfg.seed,
        "run dir": str(owner.path),
    }


def _outputs_root(run_dir: Path) -> Path:
    """Where TensorBoard should look: the `outputs` folder above the run (every day's runs and
    sweeps), else the run's own folder."""
    for folder in run_dir.parents:
        if folder.name == "outputs":
            return folder
    return run_dir


def _storage_stop(exc: OSError, run: Any) -> str:
    """What a user needs to know when the run's files cannot be written any more."""
    from runner_core import checkpoint
    from runner_core.run import resume_command

    kept = [
        f"{checkpoint.CHECKPOINT_DIR}/{name} (step {step:,})" for name, step in run.saved.items()
    ]
    intact = (
        f"The checkpoints written before it are intact: {', '.join(kept)}."
        if kept
        else "Checkpoints written before it, if any, are intact."
    )
    step = getattr(run.session, "progress", run.step)
    return (
        f"{storage_message(exc, 'The run cannot write its files')} The run stopped at step "
        f"{step:,}. {intact} Once that is fixed, continue with: "
        f"{resume_command(run.cfg, run.dir)}"
    )


def load_init(cfg: DictConfig) -> dict[str, Any]:
    """The checkpoint named by `init_from`, checked against this run's algorithm."""
    from runner_core import checkpoint

    path = Path(str(cfg.init_from)).expanduser()
    if path.is_dir():
        path = checkpoint.newest(path).path
    state = checkpoint.load(path)
    saved_algo = state.get("config", {}).get("algo", {})
    if saved_algo.get("name") != cfg.algo.name:
        raise ConfigError(
            f"Config key 'init_from' is '{path}', a checkpoint of algo={saved_algo.get('name')}; "
            f"this run is algo={cfg.algo.name}. A run starts only from a checkpoint of its own "
            "algorithm."
        )
    return state


def apply_init(session: Any, state: dict[str, Any], cfg: DictConfig) -> None:
    """Load what the checkpoint learned (networks, normalizer statistics, a stored replay
    buffer) into the new session; its optimizer, schedules, counters and RNGs start fresh."""
    try:
        session.load_learned(state["session"])
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise ConfigError(
            f"Config key 'init_from' is '{cfg.init_from}', whose networks do not fit this run's "
            f"({exc}). The environment or data set and the network must have the same shapes as "
            "in the run that wrote it."
        ) from None


def startup_done() -> None:
    """Called just before training: if the entrypoint turned the garbage collector off for
    start-up, freeze what start-up created (torch, gymnasium, Hydra: about a million objects
    that never die) into the collector's permanent generation, out of its passes, and turn it
    back on, so that cycles made while training are collected as usual."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def _job_overrides() -> tuple[list[str], Path | None]:
    """The command-line overrides of this job, and its sweep's directory (None outside a
    --multirun, or when not started by Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
    except (ImportError, ValueError):
        return [], None
    sweep = Path(str(hydra_cfg.sweep.dir)) if hydra_cfg.mode == RunMode.MULTIRUN else None
    return list(hydra_cfg.overrides.task), sweep


def _hparams(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, Any]:
    """The run's hyper-parameters for TensorBoard's HParams tab, in the order its columns show
    them: the keys set on the command line (a sweep's swept keys) first, then what identifies
    the run (algorithm, env or data set, seed), then every other setting."""
    from runner_core.metrics import flatten_hparams

    tree = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(tree, dict)
    subject = "env" if cfg.algo.family == "rl" else "dataset"
    picked = {k: tree[k] for k in ("algo", "network", "seed", subject) if k in tree}
    flat = flatten_hparams(picked)
    first = []
    for override in overrides or ():
        key = override.lstrip("+~").split("=", 1)[0]
        if key in flat:
            first.append(key)
        elif key in ("algo", "network", subject):  # a group option: what names it
            first += [k for k in (f"{key}.name", f"{key}.id", f"{key}._target_") if k in flat]
    identity = ["algo.name", f"{subject}.id" if subject == "env" else "dataset.name", "seed"]
    order = list(dict.fromkeys([*first, *identity, *flat]))
    return {k: flat[k] for k in order if k in flat}


def _hparams_metrics(summary: dict[str, Any], last: dict[str, float]) -> dict[str, float]:
    """The HParams tab's metrics: the objective, the best evaluation, the final training
    return (RL) or validation loss (DL), the wall time, and the step that solved the env when
    eval.stop_at_return was set."""
    metrics = {"hparams/objective": float(summary["objective"])}
    best = next((v for k, v in summary.items() if k.startswith(("eval/best_", "val/best_"))), None)
    if best is not None:
        metrics["hparams/best"] = float(best)
    final = last.get("charts/episodic_return", summary.get("val/loss"))
    if final is not None:
        metrics["hparams/final_train_return" if "charts/episodic_return" in last
                else "hparams/final_val_loss"] = float(final)  # fmt: skip
    metrics["hparams/wall_time_s"] = float(summary["wall_time_s"])
    if summary.get("solved_at_step") is not None:
        metrics["hparams/solved_at_step"] = float(summary["solved_at_step"])
    return metrics


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, default=str)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; run files are readable like the rest
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["ConfigError", "train"]
