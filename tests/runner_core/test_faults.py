"""A run is never lost. Each test reproduces a fault that used to lose or corrupt recorded data
(a signal to the whole process group during a background evaluation, kill -9, two processes in
one directory, logging toggled between segments, resuming from an older checkpoint, flipped
bytes, a full disk, a read-only directory, an unwritable metrics file) and checks that what was
recorded survives and the user gets one clear paragraph."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rl_runner.algos.on_policy.ppo import PPO
from runner_core import checkpoint, metrics
from runner_core.entrypoint import _resume
from runner_core.errors import CheckpointError, ConfigError, Interrupted, StorageError
from tests.conftest import (
    assert_continuous,
    cli_command,
    cli_env,
    compose_cfg,
    read_metrics,
    read_summary,
    run_cli,
    run_train,
    steps_by_tag,
    tree_hashes,
)
from tests.runner_core.test_resume import interrupt_at

QUIET = ("logger.console=off", "device=cpu")
# PPO on CartPole at the numpy speed: 8 envs x 32 steps a rollout (256 env steps)
FAST = ("algo.total_steps=40960", "eval.every_steps=0", "checkpoint.every_minutes=0", *QUIET)


def start(*args: str, cwd: Path, module: str = "rl_runner") -> subprocess.Popen:
    """A CLI run in its own process group (so a signal can go to the whole group)."""
    return subprocess.Popen(
        cli_command(module, *args), cwd=cwd, env=cli_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip


def wait_for(condition: Callable[[], object], proc: subprocess.Popen, timeout: float = 900) -> None:
    """Poll until `condition()` holds; fail if the process ends first (the timeout only guards
    against a hung process)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"the run ended (rc {proc.returncode}) first: {err[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting")
        time.sleep(0.005)


def the_run_dir(cwd: Path) -> Path:
    (run_dir,) = [p for p in (cwd / "outputs").glob("*/*") if p.is_dir()]
    return run_dir


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=900)
    return proc.returncode, out, err


# signals -----------------------------------------------------------------------------------------
def test_sigterm_to_the_group_during_a_background_evaluation(tmp_path):
    """`timeout`, a scheduler or some shells send SIGTERM to the whole process group. It used to
    kill the forked evaluation, which the parent turned into `RuntimeError: The evaluation at
    step N failed` and exit 1 without a checkpoint. Now the child finishes (or is ended), the
    parent writes latest.pt and exits 143 with the resume command, and the run resumes."""
    # MountainCar's episodes always last 200 steps early on: each evaluation of 64 episodes
    # takes a while, so a forked child is alive most of the time
    args = ("env=mountaincar", "algo.total_steps=8192", "env.num_envs=4", "algo.num_steps=32",
            "eval.every_steps=256", "eval.episodes=64", "checkpoint.every_steps=0",
            "checkpoint.every_minutes=0", *QUIET)  # fmt: skip
    proc = start(*args, cwd=tmp_path)
    wait_for(lambda: children(proc.pid), proc)
    os.killpg(proc.pid, signal.SIGTERM)
    rc, _, err = finish(proc)
    assert rc == 143, err[-3000:]
    assert "Traceback" not in err and "SIGTERM received at step" in err
    run_dir = the_run_dir(tmp_path)
    assert f"python -m rl_runner resume={run_dir}" in err
    stopped = checkpoint.load(run_dir / "checkpoints" / "latest.pt")["step"]
    assert 0 < stopped < 8192
    resumed = run_cli("rl_runner", f"resume={run_dir}", cwd=tmp_path)
    assert resumed.rc == 0, resumed.stderr[-3000:]
    records = read_metrics(run_dir)
    assert_continuous(records, {"eval/mean_return": 256})
    assert steps_by_tag(records)["eval/mean_return"][-1] == 8192


# kill -9 -----------------------------------------------------------------------------------------
def test_kill_9_early_loses_at_most_the_wall_time_cadence(tmp_path):
    """The default step cadence (50k) meant a kill -9 at 40k left nothing to resume from.
    latest.pt is now also written every `checkpoint.every_minutes`; resume= says which
    checkpoint it continues from."""
    args = ("algo.total_steps=61440", "eval.every_steps=0", "checkpoint.every_steps=0",
            "checkpoint.every_minutes=0.005", *QUIET)  # fmt: skip
    proc = start(*args, cwd=tmp_path)
    wait_for(lambda: list((tmp_path / "outputs").glob("*/*/checkpoints/latest.pt")), proc)
    proc.kill()
    proc.communicate()
    run_dir = the_run_dir(tmp_path)
    killed_at = checkpoint.newest(run_dir).step
    assert 0 < killed_at < 61440
    resumed = run_cli("rl_runner", f"resume={run_dir}", "logger.console=plain", cwd=tmp_path)
    assert resumed.rc == 0, resumed.stderr[-3000:]
    assert "from checkpoints/latest.pt at step" in resumed.stdout
    assert read_summary(run_dir)["global_step"] == 61440
    assert_continuous(read_metrics(run_dir), {"losses/policy_loss": 256})


def test_a_directory_holding_only_best_pt_resumes_from_it(tmp_path):
    finished = tmp_path / "finished"
    run_train(compose_cfg(["algo.total_steps=1024", "eval.every_steps=256"]), finished)
    best = checkpoint.load(finished / "checkpoints" / "best.pt")
    killed = tmp_path / "killed"  # as a kill -9 before the first latest.pt leaves a run
    (killed / "checkpoints").mkdir(parents=True)
    shutil.copy(finished / "checkpoints" / "best.pt", killed / "checkpoints")
    shutil.copy(finished / "metrics.jsonl", killed)
    _resume(str(killed), ["logger.console=off"])
    assert read_summary(killed)["global_step"] == 1024
    records = read_metrics(killed)
    assert_continuous(records, {"losses/policy_loss": 128})
    assert steps_by_tag(records)["losses/policy_loss"][0] == 128
    assert best["step"] < 1024


def test_tensorboard_keeps_every_point_that_metrics_jsonl_keeps_after_kill_9(tmp_path):
    """Event files were flushed every 10 s, not at checkpoints: after kill -9 / resume cycles
    TensorBoard lacked update steps that metrics.jsonl had. Checkpoints now flush both."""
    args = ("algo.total_steps=40960", "eval.every_steps=2048", "checkpoint.every_steps=2048",
            "checkpoint.every_minutes=0", *QUIET)  # fmt: skip
    proc = start(*args, cwd=tmp_path)
    for _ in range(4):
        # kill -9 right after a checkpoint: the points logged just before it must survive
        before = _latest_inode(tmp_path)
        wait_for(lambda before=before: _latest_inode(tmp_path) not in (before, None), proc)
        proc.kill()
        proc.communicate()
        proc = start(f"resume={the_run_dir(tmp_path)}", "logger.console=off", cwd=tmp_path)
    rc, _, err = finish(proc)
    assert rc == 0, err[-3000:]
    run_dir = the_run_dir(tmp_path)
    jsonl = steps_by_tag(read_metrics(run_dir))
    board = _tensorboard_steps(run_dir)
    for tag, steps in jsonl.items():
        assert board.get(tag) == steps, tag
    assert_continuous(read_metrics(run_dir), {"losses/policy_loss": 256})


def _latest_inode(cwd: Path) -> int | None:
    """Which latest.pt is there now (each write renames a new file into place)."""
    for path in (cwd / "outputs").glob("*/*/checkpoints/latest.pt"):
        try:
            return path.stat().st_ino
        except FileNotFoundError:
            return None
    return None


def _tensorboard_steps(run_dir: Path) -> dict[str, list[int]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


# one owner per run directory --------------------------------------------------------------------
def test_runs_whose_timestamped_names_collide_get_their_own_directories(tmp_path):
    """Two runs started in the same second shared one directory: .hydra said seed=1 while
    summary.json said seed=2, metrics interleaved, checkpoints overwritten, both exit 0."""
    # every default name of the next ten minutes is taken by a sentinel that must stay untouched
    now = time.time()
    taken = []
    for second in range(600):
        stamp = time.localtime(now + second)
        folder = (tmp_path / "outputs" / time.strftime("%Y-%m-%d", stamp)
                  / f"{time.strftime('%H-%M-%S', stamp)}_ppo_cartpole")  # fmt: skip
        (folder / ".hydra").mkdir(parents=True, exist_ok=True)
        (folder / ".hydra" / "config.yaml").write_text("sentinel\n")
        taken.append(folder)
    before = {folder: tree_hashes(folder) for folder in taken}
    procs = [start("algo.total_steps=1024", f"seed={seed}", *QUIET, cwd=tmp_path)
             for seed in (1, 2)]  # fmt: skip
    for proc in procs:
        rc, _, err = finish(proc)
        assert rc == 0, err[-3000:]
    assert {folder: tree_hashes(folder) for folder in taken} == before
    runs = sorted(p.parent for p in (tmp_path / "outputs").glob("*/*/summary.json"))
    assert len(runs) == 2 and all(run.name.endswith(("_2", "_3")) for run in runs)
    for run in runs:
        config = (run / ".hydra" / "config.yaml").read_text()
        assert f"seed: {read_summary(run)['seed']}\n" in config


def test_a_fresh_run_refuses_a_directory_that_holds_a_run(tmp_path):
    """`hydra.run.dir=<an existing run>` overwrote its latest.pt and appended regressing steps."""
    existing = tmp_path / "existing"
    run_train(compose_cfg(["algo.total_steps=512"]), existing)
    before = tree_hashes(existing)
    result = run_cli("rl_runner", f"hydra.run.dir={existing}", "algo.total_steps=512", *QUIET,
                     cwd=tmp_path)  # fmt: skip
    assert result.rc == 2, result.output
    assert "Traceback" not in result.output
    assert f"'{existing}' already holds a run" in result.stderr and "resume=" in result.stderr
    assert tree_hashes(existing) == before


def test_a_second_process_is_refused_while_a_run_owns_the_directory(tmp_path):
    """Two concurrent `resume=` of one directory both ran, leaving step regressions."""
    run_dir = tmp_path / "run"
    run_train(compose_cfg(["algo.total_steps=1024", "checkpoint.every_steps=256"]), run_dir)
    (run_dir / "summary.json").unlink()  # as if it was killed after its last checkpoint
    before = tree_hashes(run_dir)
    with (run_dir / ".lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process's run, as far as the runner can tell
        result = run_cli("rl_runner", f"resume={run_dir}", cwd=tmp_path)
    assert result.rc == 2, result.output
    assert "is in use by another process" in result.stderr and "Traceback" not in result.output
    assert tree_hashes(run_dir) == before


def test_two_concurrent_resumes_one_runs_one_is_refused(tmp_path):
    proc = start(*FAST, "algo.total_steps=81920", "checkpoint.every_steps=2048", cwd=tmp_path)
    wait_for(lambda: list((tmp_path / "outputs").glob("*/*/checkpoints/latest.pt")), proc)
    proc.send_signal(signal.SIGINT)
    assert finish(proc)[0] == 130
    run_dir = the_run_dir(tmp_path)
    first = start(f"resume={run_dir}", "logger.console=off", cwd=tmp_path)
    # "Resuming ..." goes to train.log once the directory is the first resume's
    wait_for(lambda: "Resuming" in (run_dir / "train.log").read_text(), first)
    second = run_cli("rl_runner", f"resume={run_dir}", "logger.console=off", cwd=tmp_path)
    assert first.poll() is None, "the first resume ended before the second was refused"
    assert second.rc == 2 and "is in use by another process" in second.stderr, second.output
    rc, _, err = finish(first)
    assert rc == 0, err[-3000:]
    assert_continuous(read_metrics(run_dir), {"losses/policy_loss": 256})
    assert read_summary(run_dir)["global_step"] == 81920


# honest resume -----------------------------------------------------------------------------------
PPO_RUN = ("algo.total_steps=1024", "eval.every_steps=256", "checkpoint.every_steps=256")


def test_toggling_jsonl_between_segments_keeps_the_history(tmp_path, monkeypatch):
    """Resumed with logger.jsonl=false and later with true, metrics.jsonl was cut to 0 bytes
    (the checkpoint stored offset 0). The mark is now of the file, whoever wrote it."""
    run_dir = tmp_path / "run"
    interrupt_at(monkeypatch, PPO, call=2)
    with pytest.raises(Interrupted):
        run_train(compose_cfg(PPO_RUN), run_dir)
    first = (run_dir / "metrics.jsonl").read_bytes()
    interrupt_at(monkeypatch, PPO, call=2)
    with pytest.raises(Interrupted):
        _resume(str(run_dir), ["logger.jsonl=false"])
    assert (run_dir / "metrics.jsonl").read_bytes() == first
    monkeypatch.undo()
    _resume(str(run_dir), ["logger.jsonl=true"])
    after = (run_dir / "metrics.jsonl").read_bytes()
    assert after.startswith(first) and b"\0" not in after
    records = read_metrics(run_dir)
    assert_continuous(records, {})
    assert steps_by_tag(records)["losses/policy_loss"][:2] == [128, 256]
    assert read_summary(run_dir)["global_step"] == 1024


def test_a_metrics_file_that_no_longer_matches_is_refused_untouched(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    interrupt_at(monkeypatch, PPO, call=4)
    with pytest.raises(Interrupted):
        run_train(compose_cfg(PPO_RUN), run_dir)
    monkeypatch.undo()
    path = run_dir / "metrics.jsonl"
    path.write_bytes(path.read_bytes()[:200])  # restored from an older backup
    before = tree_hashes(run_dir)
    with pytest.raises(CheckpointError, match="no longer matches the checkpoint"):
        _resume(str(run_dir), [])
    assert tree_hashes(run_dir) == before  # never padded (it used to get thousands of NULs)
    path.rename(run_dir / "metrics.old.jsonl")  # the documented repair
    _resume(str(run_dir), ["logger.console=off"])
    assert read_summary(run_dir)["global_step"] == 1024


def test_init_from_starts_a_new_run_and_leaves_the_original_untouched(tmp_path):
    """`resume=<run>/checkpoints/best.pt` on a finished run cut its metrics, left summary.json
    and final.pt stale and overwrote latest.pt. Starting over from an older state is now a new
    run (`init_from=`), and the original stays as it was."""
    original = tmp_path / "original"
    run_train(compose_cfg(["algo.total_steps=1024", "eval.every_steps=256"]), original)
    before = tree_hashes(original)
    best = original / "checkpoints" / "best.pt"
    for target in (best, original / "checkpoints" / "final.pt"):
        outcome = run_cli("rl_runner", f"resume={target}", cwd=tmp_path)
        assert outcome.rc in (0, 2) and "Traceback" not in outcome.output, outcome.output
    assert tree_hashes(original) == before
    result = run_cli("rl_runner", f"init_from={best}", "algo.total_steps=512", *QUIET, cwd=tmp_path)
    assert result.rc == 0, result.stderr[-3000:]
    (new,) = [p.parent for p in (tmp_path / "outputs").glob("*/*/summary.json")]
    assert read_summary(new)["global_step"] == 512
    assert f"init_from: {best}" in (new / ".hydra" / "config.yaml").read_text()
    assert tree_hashes(original) == before


def test_init_from_loads_the_networks_and_nothing_else(tmp_path):
    from runner_core.train import apply_init, load_family, load_init

    original = tmp_path / "original"
    run_train(compose_cfg(["algo.total_steps=1024"]), original)
    final = original / "checkpoints" / "final.pt"
    cfg = compose_cfg([f"init_from={final}"])
    state = load_init(cfg)
    session = load_family("rl").prepare(cfg, lambda torch_free: __import__("torch").device("cpu"))
    apply_init(session, state, cfg)
    loaded = session.algo.policy.state_dict()
    for key, value in state["session"]["algo"]["policy"].items():
        assert (loaded[key] == value).all(), key
    assert session.algo.optimizer.state_dict()["state"] == {}  # Adam's moments start fresh
    assert session.algo.num_updates == 0
    with pytest.raises(ConfigError, match="a checkpoint of algo=ppo; this run is algo=dqn"):
        load_init(compose_cfg(["algo=dqn", f"init_from={final}"]))


def test_resuming_a_finished_run_changes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    run_train(compose_cfg(["algo.total_steps=512"]), run_dir)
    before = tree_hashes(run_dir)
    result = run_cli("rl_runner", f"resume={run_dir}", cwd=tmp_path)
    assert result.rc == 0 and "has finished" in result.stdout, result.output
    assert tree_hashes(run_dir) == before


# integrity ---------------------------------------------------------------------------------------
def test_a_damaged_latest_falls_back_to_the_previous_checkpoint(tmp_path, monkeypatch):
    """64 flipped bytes in the middle of latest.pt loaded silently, and Adam's moments went from
    ~4e-6 to ~-1e6. The zip's CRCs catch it; resume continues from previous.pt, saying so."""
    run_dir = tmp_path / "run"
    interrupt_at(monkeypatch, PPO, call=5)
    with pytest.raises(Interrupted):
        run_train(compose_cfg(PPO_RUN), run_dir)
    monkeypatch.undo()
    latest = run_dir / "checkpoints" / "latest.pt"
    data = bytearray(latest.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    latest.write_bytes(bytes(data))
    previous_step = checkpoint.load(run_dir / "checkpoints" / "previous.pt")["step"]
    for leftover in (".latest.pt.a1b2.tmp", ".best.pt.c3d4.tmp"):  # interrupted writes
        (run_dir / "checkpoints" / leftover).write_bytes(b"partial")
    result = run_cli("rl_runner", f"resume={run_dir}", "logger.console=plain", cwd=tmp_path)
    assert result.rc == 0, result.stderr[-3000:]
    assert "latest.pt' is damaged" in result.stderr
    assert f"from checkpoints/previous.pt at step {previous_step:,}" in result.stdout
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))
    records = read_metrics(run_dir)
    assert_continuous(records, {"losses/policy_loss": 128})
    assert read_summary(run_dir)["global_step"] == 1024


# storage -----------------------------------------------------------------------------------------
def _unshare_works() -> bool:
    try:
        probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


needs_unshare = pytest.mark.skipif(
    not _unshare_works(), reason="no user namespaces here to mount a small tmpfs"
)


def _in_small_disk(tmp_path: Path, script: str, size: str = "700k") -> subprocess.CompletedProcess:
    """Run `script` (sh) in a private mount namespace where $DISK is a tmpfs of `size`; $PY is
    this Python, $OUT a folder of tmp_path to copy results to."""
    disk = tmp_path / "disk"
    out = tmp_path / "out"
    disk.mkdir()
    out.mkdir()
    wrapper = f'mount -t tmpfs -o size={size} tmpfs "$DISK" && cd "$DISK" && {script}'
    env = cli_env({"DISK": str(disk), "OUT": str(out), "PY": sys.executable})
    return subprocess.run(["unshare", "-rm", "sh", "-c", wrapper], env=env, capture_output=True,
                          text=True, timeout=900)  # fmt: skip


@needs_unshare
def test_a_full_disk_stops_the_run_cleanly_and_keeps_the_last_checkpoint(tmp_path):
    """Used to be three chained `No space left on device` tracebacks."""
    script = (
        "$PY -m rl_runner hydra.run.dir=run algo.total_steps=40960 eval.every_steps=0 "
        "checkpoint.every_steps=2048 checkpoint.every_minutes=0 logger.console=off device=cpu "
        '2> err.txt; echo $? > rc.txt; $PY -c "from runner_core import checkpoint; '
        "from pathlib import Path; print(checkpoint.load(Path('run/checkpoints/latest.pt'))"
        '[\'step\'])" > latest.txt 2>&1; cp err.txt rc.txt latest.txt "$OUT"'
    )
    done = _in_small_disk(tmp_path, script)
    out = tmp_path / "out"
    assert done.returncode == 0, done.stderr
    err = (out / "err.txt").read_text()
    assert (out / "rc.txt").read_text().strip() == "4", err
    assert "Traceback" not in err and err.count("\n") == 1
    assert err.startswith("Error: The run cannot write its files") and "No space left" in err
    assert "are intact: checkpoints/latest.pt (step" in err and "resume=" in err
    step = int((out / "latest.txt").read_text())  # latest.pt loads, integrity checked
    assert f"checkpoints/latest.pt (step {step:,})" in err


@needs_unshare
def test_a_read_only_run_directory_is_a_clean_error(tmp_path):
    script = (
        "$PY -m rl_runner hydra.run.dir=run algo.total_steps=512 logger.console=off device=cpu "
        '&& rm run/summary.json && mount -o remount,ro "$DISK" && '
        '{ $PY -m rl_runner resume=run 2> "$OUT/err1.txt"; echo $? > "$OUT/rc1.txt"; '
        '$PY -m rl_runner hydra.run.dir=new algo.total_steps=512 2> "$OUT/err2.txt"; '
        'echo $? > "$OUT/rc2.txt"; }'
    )
    done = _in_small_disk(tmp_path, script, size="4m")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    for n in (1, 2):
        err = (out / f"err{n}.txt").read_text()
        assert (out / f"rc{n}.txt").read_text().strip() == "4", err
        assert "Traceback" not in err and "Read-only file system" in err, err
        assert "pick a writable location" in err


def test_an_unwritable_metrics_file_is_a_clean_error(tmp_path, monkeypatch):
    # metrics.jsonl on /dev/full: every write fails with ENOSPC, a real device error
    monkeypatch.setattr(metrics, "METRICS_FILE", "/dev/full")
    with pytest.raises(StorageError) as err:
        run_train(compose_cfg(["algo.total_steps=40960", "checkpoint.every_steps=4096"]),
                  tmp_path / "run")  # fmt: skip
    assert err.value.exit_code == 4
    message = str(err.value)
    assert "(/dev/full): No space left on device" in message and "stopped at step 0." not in message


def test_a_full_disk_while_checkpointing_keeps_the_checkpoint_before(tmp_path, monkeypatch):
    """Where no tmpfs can be mounted this is the same fault, raised by the checkpoint writer."""
    import errno

    run_dir = tmp_path / "run"
    real = checkpoint._write
    writes = [0]

    def write(state, f):
        writes[0] += 1
        if writes[0] == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(state, f)

    monkeypatch.setattr(checkpoint, "_write", write)
    with pytest.raises(StorageError, match=r"latest.pt \(step 512\)\..*resume="):
        run_train(compose_cfg(["algo.total_steps=4096", "checkpoint.every_steps=256",
                               "eval.every_steps=0"]), run_dir)  # fmt: skip
    assert checkpoint.load(run_dir / "checkpoints" / "latest.pt")["step"] == 512
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))


# odd input ---------------------------------------------------------------------------------------
def test_a_malformed_yaml_file_names_its_file_and_line(tmp_path):
    """It used to print an 85-105 line traceback."""
    (tmp_path / "mine" / "algo").mkdir(parents=True)
    bad = tmp_path / "mine" / "algo" / "bad.yaml"
    bad.write_text("_target_: x\nname: [unclosed\n  foo: : bar\n")
    for extra in ((), ("--help",)):
        result = run_cli("rl_runner", "--config-dir", str(tmp_path / "mine"), "algo=bad", *extra,
                         cwd=tmp_path)  # fmt: skip
        assert result.rc == 2 and "Traceback" not in result.output, result.output
        assert result.stderr.startswith(f"Error: The YAML file '{bad}', line 3, column 6")
        assert result.stderr.count("\n") == 1


def test_a_sweep_runs_the_valid_cells_and_reports_the_bad_one(tmp_path):
    result = run_cli("rl_runner", "--multirun", "algo.lr=1e-3,abc,3e-4", "algo.total_steps=256",
                     "env.num_envs=2", "algo.num_steps=64", *QUIET, cwd=tmp_path)  # fmt: skip
    assert result.rc == 1 and "Traceback" not in result.output, result.output
    assert "1 job(s) of the sweep failed" in result.stderr and "#1 (algo.lr=abc" in result.stderr
    jobs = sorted(p for p in (tmp_path / "outputs" / "multirun").glob("*/*/*") if p.is_dir())
    assert [(j / "summary.json").exists() for j in jobs] == [True, False, True]
    assert json.loads((jobs[1] / "failed.json").read_text())["kind"] == "ConfigError"


def test_seeds_out_of_range_are_refused_on_every_path(tmp_path):
    for algo in ("ppo", "dqn", "supervised"):
        module = "dl_runner" if algo == "supervised" else "rl_runner"
        result = run_cli(module, f"algo={algo}", "seed=1180591620717411303424", cwd=tmp_path)
        assert result.rc == 2 and "Traceback" not in result.output, result.output
        assert "'seed'" in result.stderr and "[0, 4294967295]" in result.stderr
