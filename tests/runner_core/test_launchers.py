"""Sweeps under Hydra's other launchers (joblib, submitit, Ray) and the Optuna sweeper, as a user
runs them: jobs in other processes, failed jobs reported from their failed.json, Optuna's best
trial. Each test needs its optional extra and is skipped only when that cannot be imported."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from omegaconf import OmegaConf

from runner_core import entrypoint
from runner_core.entrypoint import CONF_DIR, FAILED_FILE
from tests.conftest import assert_run_dir, read_summary, run_cli

TINY_PPO = ("algo.total_steps=512", "env.num_envs=2", "algo.num_steps=64", "algo.num_epochs=1",
            "eval.episodes=2", "logger.console=off", "device=cpu")  # fmt: skip
# long enough that two jobs started together are still training when the other starts
LONGER_PPO = (*TINY_PPO, "algo.total_steps=4096", "eval.every_steps=0")
TINY_DL = ("algo.epochs=1", "logger.console=off", "device=cpu")


def has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def needs(extra: str, *modules: str, then: str = "") -> pytest.MarkDecorator:
    missing = [m for m in modules if not has(m)]
    return pytest.mark.skipif(
        bool(missing),
        reason=f"the {extra} extra is not installed (cannot import {', '.join(missing)}): "
        f"pip install 'rl-runner[{extra}]'{then}",
    )


joblib_extra = needs("joblib", "joblib", "hydra_plugins.hydra_joblib_launcher")
slurm_extra = needs("slurm", "submitit", "hydra_plugins.hydra_submitit_launcher")
ray_extra = needs("ray", "ray", "hydra_plugins.hydra_ray_launcher")
optuna_extra = needs("optuna", "optuna", "hydra_plugins.hydra_optuna_sweeper",
                     then=" && pip install --no-deps hydra-optuna-sweeper==1.3.0")  # fmt: skip


def the_sweep(cwd: Path) -> Path:
    (sweep,) = (cwd / "outputs" / "multirun").glob("*/*")
    return sweep


def job_dirs(sweep: Path) -> list[Path]:
    """The sweep's job directories in job order (named `<job>_<overrides>`)."""
    jobs = [p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(jobs, key=lambda p: int(p.name.split("_", 1)[0]))


def job_pid(job: Path) -> int:
    """The process that ran a job, from its TensorBoard file's name (...<host>.<pid>.0)."""
    (events,) = job.glob("events.out.tfevents.*")
    return int(events.name.split(".")[-2])


def overrides(job: Path) -> list[str]:
    return yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())


# joblib ----------------------------------------------------------------------------------------
@joblib_extra
def test_joblib_runs_two_jobs_at_once(tmp_path):
    result = run_cli("rl_runner", "--multirun", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                     "seed=0,1", *LONGER_PPO, cwd=tmp_path)  # fmt: skip
    assert result.rc == 0, result.output
    jobs = job_dirs(the_sweep(tmp_path))
    assert [read_summary(job)["seed"] for job in jobs] == [0, 1]
    for job in jobs:
        assert_run_dir(job)
    assert job_pid(jobs[0]) != job_pid(jobs[1])
    # a job starts when it writes its .hydra/ and ends with its summary.json
    starts = [(job / ".hydra" / "config.yaml").stat().st_mtime for job in jobs]
    ends = [(job / "summary.json").stat().st_mtime for job in jobs]
    assert max(starts) < min(ends), f"the jobs ran one after the other: {starts} {ends}"
    assert "Traceback" not in result.output


@joblib_extra
def test_joblib_sweep_with_a_failed_job_runs_the_others_and_names_it(tmp_path):
    result = run_cli("rl_runner", "--multirun", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                     "algo.lr=1e-3,0,3e-4", *TINY_PPO, cwd=tmp_path)  # fmt: skip
    assert result.rc == 1, result.output
    assert "1 job(s) of the sweep failed" in result.stderr
    assert "#1 (algo.lr=0 " in result.stderr
    assert "'algo.lr' has the value 0" in result.stderr
    assert "Traceback" not in result.output
    jobs = job_dirs(the_sweep(tmp_path))
    assert len(jobs) == 3
    failed = json.loads((jobs[1] / FAILED_FILE).read_text())
    assert failed["kind"] == "ConfigError" and "'algo.lr'" in failed["error"]
    assert failed["job"] == 1 and "algo.lr=0" in failed["overrides"]
    assert not (jobs[1] / "summary.json").exists()
    for job in (jobs[0], jobs[2]):
        assert_run_dir(job)
        assert not (job / FAILED_FILE).exists()


# submitit --------------------------------------------------------------------------------------
@slurm_extra
def test_submitit_local_runs_a_sweep_in_separate_processes(tmp_path):
    result = run_cli("rl_runner", "--multirun", "hydra/launcher=submitit_local", "seed=0,1",
                     *TINY_PPO, cwd=tmp_path)  # fmt: skip
    assert result.rc == 0, result.output
    jobs = job_dirs(the_sweep(tmp_path))
    assert [read_summary(job)["seed"] for job in jobs] == [0, 1]
    for job in jobs:
        assert_run_dir(job)
    assert job_pid(jobs[0]) != job_pid(jobs[1])


@slurm_extra
def test_submitit_local_reports_a_failed_job(tmp_path):
    result = run_cli("rl_runner", "--multirun", "hydra/launcher=submitit_local", "algo.lr=0,1e-3",
                     *TINY_PPO, cwd=tmp_path)  # fmt: skip
    assert result.rc == 1, result.output
    assert "1 job(s) of the sweep failed" in result.stderr and "#0 (algo.lr=0 " in result.stderr
    jobs = job_dirs(the_sweep(tmp_path))
    assert (jobs[0] / FAILED_FILE).is_file()
    assert_run_dir(jobs[1])


@slurm_extra
def test_slurm_launcher_takes_partition_time_and_gpus():
    """The README's Slurm settings are the plugin's config keys (composed, not submitted)."""
    from hydra import compose, initialize_config_dir

    keys = ("hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=240",
            "hydra.launcher.gpus_per_node=1", "hydra.launcher.cpus_per_task=4")  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", ["hydra/launcher=submitit_slurm", *keys], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.timeout_min, launcher.gpus_per_node) == ("gpu", 240, 1)
    assert launcher.cpus_per_task == 4


# Ray -------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Ray on this machine alone: its processes talk over 127.0.0.1 instead of the address of the
# machine's network interface (Ray's single-machine mode, as on macOS and Windows), with a token
# of the tests' own (Ray otherwise reads or writes ~/.ray/auth_token, which a Ray started by
# ray.init() creates and a later `ray start` then requires of its clients)
RAY_LOOPBACK = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "token",
    "RAY_AUTH_TOKEN": secrets.token_hex(32),
}


@pytest.fixture
def ray_head(tmp_path) -> Iterator[str]:
    """A Ray head node started for the test on 127.0.0.1 (its address), stopped afterwards with
    every process it started (its own process group)."""
    ray_cli = Path(sys.executable).with_name("ray")
    if not ray_cli.exists():
        pytest.skip(f"no ray command next to {sys.executable}")
    port = free_port()
    # the session folder holds Unix sockets, whose paths must stay short
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    log = tmp_path / "ray_head.log"
    env = {**os.environ, **RAY_LOOPBACK, "PYTHONPATH": str(CONF_DIR.parent)}
    command = [str(ray_cli), "start", "--head", "--block", f"--port={port}",
               "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--num-cpus=2",
               f"--ray-client-server-port={free_port()}", "--disable-usage-stats",
               f"--temp-dir={temp_dir}"]  # fmt: skip
    with log.open("w") as out:
        head = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        while "Ray runtime started" not in log.read_text():
            if head.poll() is not None:
                pytest.skip(f"Ray cannot start here: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        stop_group(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


def stop_group(process: subprocess.Popen[Any]) -> None:
    """SIGTERM to the process group that `process` leads, then SIGKILL to what is left."""
    # Ray's servers take their time over a SIGTERM; this head node holds nothing to keep
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait)
        if not group_alive(process.pid):
            return


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@ray_extra
def test_ray_launcher_runs_a_sweep_on_a_ray_cluster(tmp_path, ray_head):
    result = run_cli("rl_runner", "--multirun", "hydra/launcher=ray_cluster",
                     f"hydra.launcher.ray.init.address={ray_head}", "seed=0,1", *TINY_PPO,
                     cwd=tmp_path, env=RAY_LOOPBACK)  # fmt: skip
    assert result.rc == 0, result.output
    assert f"Connecting to existing Ray cluster at address: {ray_head}" in result.output
    jobs = job_dirs(the_sweep(tmp_path))
    assert [read_summary(job)["seed"] for job in jobs] == [0, 1]
    for job in jobs:
        assert_run_dir(job)


def processes_mentioning(text: str) -> list[int]:
    """The processes whose command line holds `text`."""
    found = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and text.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
    return found


@ray_extra
def test_ray_launcher_runs_a_sweep_on_a_ray_of_its_own(tmp_path):
    """hydra/launcher=ray starts a Ray on this machine for the sweep, which ends with it; a job
    that failed in a Ray worker is reported."""
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Unix socket paths must stay short
    try:
        result = run_cli("rl_runner", "--multirun", "hydra/launcher=ray",
                         f"++hydra.launcher.ray.init._temp_dir={temp_dir}",
                         "++hydra.launcher.ray.init.num_cpus=2",
                         "++hydra.launcher.ray.init.include_dashboard=false",
                         "algo.lr=1e-3,0", *TINY_PPO, cwd=tmp_path, env=RAY_LOOPBACK)  # fmt: skip
        assert result.rc == 1, result.output
        assert "Started a local Ray instance" in result.output
        assert "1 job(s) of the sweep failed" in result.stderr and "#1 (algo.lr=0 " in result.stderr
        jobs = job_dirs(the_sweep(tmp_path))
        assert_run_dir(jobs[0])
        assert json.loads((jobs[1] / FAILED_FILE).read_text())["kind"] == "ConfigError"
        left = processes_mentioning(temp_dir)
        assert left == [], f"Ray's processes outlived the sweep: {left}"
    finally:
        for pid in processes_mentioning(temp_dir):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)


# failures of jobs in other processes -----------------------------------------------------------
def test_report_names_this_sweeps_failed_jobs_once(tmp_path, capsys):
    """Jobs that failed in other processes are found by their failed.json, once each even when
    this process recorded them too; a failed.json from before the sweep is not this sweep's."""
    sweep = tmp_path / "sweep"
    old = sweep / "0_seed=0"
    old.mkdir(parents=True)
    record = {"job": 0, "overrides": ["seed=0"], "error": "failed before the sweep",
              "kind": "ConfigError"}  # fmt: skip
    (old / FAILED_FILE).write_text(json.dumps({**record, "run_dir": str(old)}))
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    entrypoint.SweepDirRecorder().on_multirun_start(config)
    for num, where in ((1, "in this process"), (2, "elsewhere")):
        job = sweep / f"{num}_seed={num}"
        (job / ".hydra").mkdir(parents=True)
        record = {"job": num, "overrides": [f"seed={num}"], "error": f"failed {where}",
                  "kind": "ConfigError", "run_dir": str(job)}  # fmt: skip
        (job / FAILED_FILE).write_text(json.dumps(record))
        if num == 1:
            entrypoint.FAILED_JOBS.append(record)
    try:
        with pytest.raises(SystemExit) as stop:
            entrypoint.report_failed_jobs()
    finally:
        entrypoint.FAILED_JOBS.clear()
        entrypoint.SWEEPS.clear()
        entrypoint.NEW_SWEEP_DIRS.clear()
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert "2 job(s) of the sweep failed" in err
    assert "#1 (seed=1): failed in this process" in err and "#2 (seed=2): failed elsewhere" in err
    assert "#0" not in err and "before the sweep" not in err


# Optuna ----------------------------------------------------------------------------------------
def params_of(job: Path, names: list[str]) -> dict[str, Any]:
    """A trial's parameters as Optuna reports them, from its job's .hydra/overrides.yaml."""
    given = dict(o.split("=", 1) for o in overrides(job))
    return {name: yaml.safe_load(given[name]) for name in names}


@optuna_extra
def test_optuna_sweep_finds_the_best_trial(tmp_path):
    result = run_cli("dl_runner", "--multirun", "hparams_search=supervised_digits",
                     "hydra.sweeper.n_trials=6", *TINY_DL,
                     cwd=tmp_path)  # fmt: skip
    assert result.rc == 0, result.output
    sweep = the_sweep(tmp_path)
    jobs = job_dirs(sweep)
    assert len(jobs) == 6
    summaries = [assert_run_dir(job) for job in jobs]
    assert {s["objective_name"] for s in summaries} == {"val/acc"}
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    objectives = [s["objective"] for s in summaries]
    top = objectives.index(max(objectives))  # Optuna keeps the first of equal values
    assert best["best_value"] == pytest.approx(objectives[top])
    params = list(best["best_params"])
    assert set(params) == {"algo.lr", "algo.weight_decay", "algo.label_smoothing",
                           "network.dropout", "network.hidden"}  # fmt: skip
    found = params_of(jobs[top], params)
    found["network.hidden"] = str(found["network.hidden"]).replace(" ", "")
    assert found == best["best_params"]


@optuna_extra
def test_optuna_tells_failed_trials_as_failed_and_goes_on(tmp_path):
    # a search space where some trials are refused (algo.lr=0): their jobs return NaN
    result = run_cli("dl_runner", "--multirun", "hparams_search=supervised_digits",
                     "hydra.sweeper.n_trials=4", "algo.lr=choice(0,0.001)", *TINY_DL,
                     cwd=tmp_path)  # fmt: skip
    assert result.rc == 1, result.output
    assert "Failed experiment: ConfigError: Config key 'algo.lr' has the value 0" in result.output
    assert "Traceback" not in result.output
    sweep = the_sweep(tmp_path)
    jobs = job_dirs(sweep)
    assert len(jobs) == 4
    failed = [job for job in jobs if "algo.lr=0" in overrides(job)]
    assert failed and len(failed) < len(jobs), "the sampler drew one value only"
    assert f"{len(failed)} job(s) of the sweep failed" in result.stderr
    for job in jobs:
        assert (job / FAILED_FILE).is_file() == (job in failed)
        if job in failed:
            assert f"#{job.name.split('_', 1)[0]} (algo.lr=0 " in result.stderr
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_params"]["algo.lr"] == 0.001 and not math.isnan(best["best_value"])


@optuna_extra
def test_optuna_study_whose_every_trial_failed_ends_with_the_failures(tmp_path):
    result = run_cli("dl_runner", "--multirun", "hparams_search=supervised_digits",
                     "hydra.sweeper.n_trials=2", "algo.lr=choice(0)", *TINY_DL,
                     cwd=tmp_path)  # fmt: skip
    assert result.rc == 1, result.output
    assert "No trial of the study succeeded" in result.output
    assert "2 job(s) of the sweep failed" in result.stderr
    assert "Traceback" not in result.output
    assert not (the_sweep(tmp_path) / "optimization_results.yaml").exists()


@optuna_extra
def test_optuna_direction_against_the_objective_is_refused(tmp_path):
    result = run_cli("dl_runner", "--multirun", "hparams_search=supervised_digits",
                     "hydra.sweeper.n_trials=1", "hydra.sweeper.direction=minimize", *TINY_DL,
                     cwd=tmp_path)  # fmt: skip
    assert result.rc == 2, result.output
    assert "hydra.sweeper.direction is minimize, but the jobs' objective val/acc" in result.stderr
    assert "hydra.sweeper.direction=maximize" in result.stderr


SEARCHES = sorted(p.stem for p in (CONF_DIR / "hparams_search").glob("*.yaml"))


@pytest.mark.parametrize("search", SEARCHES)
def test_shipped_search_spaces_go_the_objectives_way(search):
    """maximize a return or an accuracy, minimize a loss: the direction of each shipped search
    space against the objective of its algorithm (RL: the evaluation's mean return; DL: the
    task's objective and mode)."""
    tree = yaml.safe_load((CONF_DIR / "hparams_search" / f"{search}.yaml").read_text())
    defaults = {k: v for entry in tree["defaults"] for k, v in entry.items()}
    algo = yaml.safe_load((CONF_DIR / "algo" / f"{defaults['override /algo']}.yaml").read_text())
    if algo["family"] == "rl":
        mode = "max"
    else:
        module, _, name = algo["_target_"].rpartition(".")
        mode = getattr(importlib.import_module(module), name).mode
    sweeper = tree["hydra"]["sweeper"]
    assert sweeper["direction"] == {"max": "maximize", "min": "minimize"}[mode]
    assert sweeper["_target_"] == "hydra_plugins.rl_runner.optuna_sweeper.OptunaSweeper"
    assert sweeper["max_failure_rate"] == 1.0
    assert search.startswith(defaults["override /algo"])
