"""The command line, as a user runs it: --help, --cfg, the three entry points, --multirun."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import (
    REPO,
    assert_run_dir,
    leftovers,
    read_summary,
    run_cli,
    run_command,
)
from tests.conftest import options as group_options

TINY_PPO = ("algo.total_steps=256", "env.num_envs=2", "algo.num_steps=64", "algo.num_epochs=1",
            "eval.episodes=2", "logger.console=off", "device=cpu")  # fmt: skip


def run_dirs(cwd: Path) -> list[Path]:
    return sorted(p.parent for p in (cwd / "outputs").glob("*/*/summary.json"))


def test_help_lists_groups_and_options(tmp_path):
    result = run_cli("rl_runner", "--help", cwd=tmp_path)
    assert result.rc == 0, result.stderr
    out = result.stdout
    for group in ("algo", "env", "network", "device", "dataset", "logger", "checkpoint", "eval"):
        line = next((ln for ln in out.splitlines() if ln.startswith(f"{group}: ")), None)
        assert line is not None, f"--help does not list the {group} group"
        for option in group_options(group):
            assert option in line, f"--help does not list {group}={option}"
    assert "resume=" in out
    assert "--multirun" in out
    assert leftovers(tmp_path) == []


def test_help_shows_the_config_with_the_overrides(tmp_path):
    result = run_cli("rl_runner", "algo=dqn", "algo.lr=0.005", "-h", cwd=tmp_path)
    assert result.rc == 0, result.stderr
    assert "name: dqn" in result.stdout
    assert "lr: 0.005" in result.stdout


def test_help_with_a_bad_option_says_what_is_allowed(tmp_path):
    result = run_cli("rl_runner", "algo=foo", "--help", cwd=tmp_path)
    assert result.rc == 2
    assert "Could not find 'algo/foo'" in result.stderr
    assert "ppo" in result.stderr
    assert "Traceback" not in result.stderr
    assert leftovers(tmp_path) == []


def test_help_does_not_import_torch(tmp_path):
    result = run_cli("rl_runner", "--help", cwd=tmp_path, python_flags=("-X", "importtime"))
    assert result.rc == 0
    imported = [ln for ln in result.stderr.splitlines() if "import time:" in ln]
    assert len(imported) > 50, "expected -X importtime output on stderr"
    heavy = [ln for ln in imported if "torch" in ln or "gymnasium" in ln]
    assert heavy == []


def test_cfg_job_prints_the_config(tmp_path):
    result = run_cli("rl_runner", "algo=dqn", "env=acrobot", "algo.lr=0.005", "--cfg", "job",
                     cwd=tmp_path)  # fmt: skip
    assert result.rc == 0, result.stderr
    out = result.stdout
    assert "name: dqn" in out
    assert "id: Acrobot-v1" in out
    assert "lr: 0.005" in out
    assert "seed: 0" in out
    assert leftovers(tmp_path) == []


def test_rl_runner_trains(tmp_path):
    result = run_cli("rl_runner", *TINY_PPO, cwd=tmp_path)
    assert result.rc == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path)
    assert run_dir.name.endswith("_ppo_cartpole")
    summary = assert_run_dir(run_dir)
    assert summary["global_step"] == 256
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert "Traceback" not in result.output


def test_dl_runner_trains(tmp_path):
    result = run_cli("dl_runner", "algo.epochs=1", "logger.console=off", "device=cpu", cwd=tmp_path)
    assert result.rc == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path)
    assert run_dir.name.endswith("_supervised_digits")
    summary = assert_run_dir(run_dir)
    assert summary["global_step"] == 20
    assert summary["objective_name"] == "val/acc"


def test_train_console_script_dispatches(tmp_path):
    script = Path(sys.executable).with_name("train")
    if not script.exists():
        pytest.skip(f"no console script at {script} (project not installed in this environment)")
    result = run_command(
        [str(script), "algo=supervised", "algo.epochs=1", "logger.console=plain", "device=cpu"],
        cwd=tmp_path,
    )
    assert result.rc == 0, result.stderr
    (run_dir,) = run_dirs(tmp_path)
    assert run_dir.name.endswith("_supervised_digits")
    assert read_summary(run_dir)["dataset"] == "digits"
    assert "supervised_digits: done" in result.stdout  # plain console: the summary table


def test_multirun_makes_one_sweep_dir_with_a_job_each(tmp_path):
    result = run_cli("rl_runner", "--multirun", "seed=0,1", *TINY_PPO, cwd=tmp_path)
    assert result.rc == 0, result.stderr
    sweeps = list((tmp_path / "outputs" / "multirun").glob("*/*"))
    assert len(sweeps) == 1
    sweep = sweeps[0]
    assert sweep.name.endswith("_ppo_cartpole")
    assert (sweep / "multirun.yaml").is_file()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name.split("_", 1)[0] for p in jobs] == ["0", "1"]
    assert [read_summary(p)["seed"] for p in jobs] == [0, 1]
    for job in jobs:
        assert_run_dir(job)
    assert not list((tmp_path / "outputs").glob("[0-9]*"))  # no single-run dirs


def test_a_bad_cell_of_a_sweep_fails_alone(tmp_path):
    """`algo.lr=1e-3,abc,0`: the bad cells are recorded as failed in their own directories, the
    good one runs to completion (before, the sweep stopped at the first bad job and the jobs
    after it never ran), and the sweep exits 1 naming the failed jobs."""
    # (a sweep whose every job is refused before it starts: test_cli_errors)
    result = run_cli("rl_runner", "--multirun", "algo.lr=abc,1e-3,0", *TINY_PPO, cwd=tmp_path)
    assert result.rc == 1, result.output
    assert "Traceback" not in result.output
    assert "2 job(s) of the sweep failed" in result.stderr
    assert "#0 (algo.lr=abc" in result.stderr and "#2 (algo.lr=0" in result.stderr
    (sweep,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 3
    assert_run_dir(jobs[1])
    for job in (jobs[0], jobs[2]):
        failed = json.loads((job / "failed.json").read_text())
        assert "'algo.lr'" in failed["error"] and failed["kind"] == "ConfigError"
        assert not (job / "summary.json").exists()
        assert (job / ".hydra" / "config.yaml").is_file()
    assert (sweep / "multirun.yaml").is_file()


def test_hydra_mode_override_still_makes_a_multirun(tmp_path):
    # the entrypoint skips Hydra's mode probe only where nothing can set the mode
    result = run_cli("rl_runner", "hydra.mode=MULTIRUN", "seed=0,1", *TINY_PPO, cwd=tmp_path)
    assert result.rc == 0, result.stderr
    (sweep,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    assert sorted(read_summary(p)["seed"] for p in sweep.iterdir() if p.is_dir()) == [0, 1]


def test_repo_conf_is_found_from_anywhere(tmp_path):
    assert (REPO / "conf" / "train.yaml").is_file()
    result = run_cli("dl_runner", "--cfg", "job", cwd=tmp_path)
    assert result.rc == 0
    assert "name: supervised" in result.stdout


@pytest.mark.parametrize(
    ("command", "program"),
    [(("rl_runner",), "python -m rl_runner"), (("dl_runner",), "python -m dl_runner")],
)
def test_help_names_the_program_and_keeps_presets_apart(tmp_path, command, program):
    result = run_cli(*command, "--help", cwd=tmp_path)
    assert result.rc == 0, result.stderr
    assert f"Usage: {program} [group=option" in result.stdout
    groups = result.stdout.split("== Config groups")[1].split("==")[1]
    assert "tuned/" not in groups  # applied automatically, not picked
    assert "== Tuned presets (applied automatically" in result.stdout
    assert "tuned/rl: " in result.stdout


def test_train_console_script_help(tmp_path):
    result = run_command([str(Path(sys.executable).parent / "train"), "--help"], cwd=tmp_path)
    assert result.rc == 0 and "Usage: train [group=option" in result.stdout


def test_cfg_job_prints_the_name_resolved(tmp_path):
    result = run_cli("rl_runner", "algo=dqn", "--cfg", "job", cwd=tmp_path)
    assert result.rc == 0, result.stderr
    assert "name: dqn_cartpole" in result.stdout and "${" not in result.stdout


def test_runs_of_any_gym_id_are_named_after_it(tmp_path):
    result = run_cli("rl_runner", "env=gym", "env.id=gymnasium.envs.classic_control:Acrobot-v1",
                     "--cfg", "job", cwd=tmp_path)  # fmt: skip
    assert "name: ppo_Acrobot-v1" in result.stdout


def test_a_setting_that_learns_nothing_is_warned_about(tmp_path):
    result = run_cli("rl_runner", "algo=dqn", "env=acrobot", "algo.total_steps=300",
                     "eval.episodes=2", "logger.console=plain", cwd=tmp_path)  # fmt: skip
    assert result.rc == 0, result.stderr
    warnings = [ln for ln in result.stderr.splitlines() if ln.startswith("Warning:")]
    assert len(warnings) == 1
    assert "algo.learning_starts (1,000) >= algo.total_steps (300)" in warnings[0]


def test_hparams_of_a_sweep_list_the_swept_keys_first(tmp_path):
    """TensorBoard's HParams tab took the first experiment it found: its first columns were
    constants, the swept keys hidden. A sweep now has one experiment, at its root, with the
    overridden keys first, and each kind of run (RL, DL) its own."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
    from tensorboard.plugins.hparams import metadata

    result = run_cli("rl_runner", "--multirun", "algo.lr=1e-3,3e-3", "seed=0,1", *TINY_PPO,
                     cwd=tmp_path)  # fmt: skip
    assert result.rc == 0, result.stderr
    (sweep,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    mux = EventMultiplexer()
    mux.AddRunsFromDirectory(str(sweep))
    mux.Reload()
    content = mux.PluginRunToTagToContent(metadata.PLUGIN_NAME)
    holders = [run for run, tags in content.items() if metadata.EXPERIMENT_TAG in tags]
    assert holders == ["."]  # exactly one experiment: the sweep's
    experiment = metadata.parse_experiment_plugin_data(content["."][metadata.EXPERIMENT_TAG])
    names = [h.name for h in experiment.hparam_infos]
    assert names[:2] == ["algo.lr", "seed"]
    assert names.index("algo.name") < names.index("algo.gamma")  # identity before constants
    metrics = [m.name.tag for m in experiment.metric_infos]
    assert metrics[:2] == ["hparams/objective", "hparams/best"]
    assert {"hparams/final_train_return", "hparams/wall_time_s"} <= set(metrics)
    sessions = [run for run, tags in content.items() if metadata.SESSION_START_INFO_TAG in tags]
    assert len(sessions) == 4
