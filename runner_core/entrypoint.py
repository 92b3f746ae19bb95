"""Command-line entrypoint shared by `python -m rl_runner`, `python -m dl_runner` and `train`.

Hydra composes the config (and handles --cfg, --multirun, --hydra-help); `resume=` bypasses
composition and continues a run with the config saved in its checkpoint. --help composes the
config with Hydra's compose API and lists the groups from conf/ itself: the same page as Hydra's
help template would give, without Hydra's search of every group's options (two thirds of a
second on a slow machine). User errors print one paragraph and exit non-zero; torch and
gymnasium are imported only once a run really starts.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

import hydra
import yaml
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from runner_core import distributed
from runner_core.errors import (
    CheckpointError,
    ConfigError,
    Interrupted,
    RunnerError,
    StorageError,
)
from runner_core.rundir import is_storage_error, storage_message

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
# keys a resume may override: they do not change results
RESUME_OVERRIDABLE = ("logger.", "checkpoint.every_steps=", "checkpoint.every_minutes=")
TASK_NOTE = "(raised while running the task)"  # marks a bug's exception, as opposed to bad input


def _task(cfg: DictConfig) -> float:
    """One job: own its directory (a fresh one: see `runner_core.rundir`), record the config in
    .hydra/ there, train. In a --multirun sweep a failed job is recorded in its directory
    (failed.json) and the sweep goes on; `_main` reports the failures at the end.

    Under torchrun rank 0 claims the directory and tells the other ranks its path; they write
    nothing (their Hydra directory is the working directory, see `follower_args`)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from runner_core.rundir import claim
    from runner_core.train import train

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    proposed = Path(hydra_cfg.runtime.output_dir)
    job_dir = proposed
    try:
        if distributed.is_follower():
            return train(cfg, _shared_dir())
        try:
            try:
                owner = claim(proposed, fresh=True, rename_if_taken=not _dir_chosen(hydra_cfg))
                job_dir = owner.path
                write_hydra_files(owner.path, cfg)
            except OSError as exc:
                raise StorageError(storage_message(exc, "Cannot write the run directory")) from None
        except BaseException:
            distributed.share(None)  # the other ranks stop: this one reports why
            raise
        distributed.share(str(owner.path))
        return train(cfg, owner, keep_if_refused=multirun)
    except RunnerError as err:
        if multirun and not isinstance(err, Interrupted):
            record_failure(job_dir, str(err), type(err).__name__)
            print(f"Error in job {hydra_cfg.job.num}: {err}", file=sys.stderr, flush=True)
            return math.nan
        fail(err)
        raise AssertionError("unreachable") from None
    except Exception as exc:  # a bug, not bad input: keep its traceback (see `_main`)
        if multirun:  # the other jobs still run; this one's traceback goes to its directory
            trace = traceback.format_exc()
            record_failure(job_dir, trace.strip().splitlines()[-1], type(exc).__name__, trace)
            print(trace, file=sys.stderr, flush=True)
            return math.nan
        exc.add_note(TASK_NOTE)
        raise


def _shared_dir() -> Path:
    """On a rank > 0: the run directory rank 0 claimed."""
    path = distributed.share(None)
    if path is None:
        raise distributed.Abandoned("rank 0 did not start the run")
    return Path(path)


def follower_args(args: list[str]) -> list[str]:
    """A rank > 0's Hydra overrides: its Hydra directory is the working directory, which exists
    (Hydra creates its run directory before the task starts; each rank's timestamp could differ
    and would leave empty directories behind), and it writes no .hydra/ copy."""
    mine = ("hydra.run.dir=", "hydra.output_subdir=")
    return [a for a in args if not a.startswith(mine)] + [
        "hydra.run.dir=.",
        "hydra.output_subdir=null",
    ]


def _dir_chosen(hydra_cfg: Any) -> bool:
    """Whether the user named the run's directory (then a taken one is refused, not renamed)."""
    keys = ("hydra.run.dir=", "hydra.sweep.dir=", "hydra.sweep.subdir=")
    return any(str(o).startswith(keys) for o in hydra_cfg.overrides.hydra)


def write_hydra_files(run_dir: Path, cfg: DictConfig) -> None:
    """.hydra/config.yaml, hydra.yaml and overrides.yaml, as Hydra writes them, but only once the
    directory is this run's (conf/hydra/default.yaml turns Hydra's own copy off: Hydra would
    write it before the run could refuse a directory that holds another run)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    # a plain copy, without the read-only flags Hydra sets on parts of it
    hydra_root = OmegaConf.create(OmegaConf.to_container(HydraConfig.instance().cfg))
    hydra_root.hydra.runtime.output_dir = str(run_dir)
    hydra_root.hydra.output_subdir = HYDRA_SUBDIR
    folder = run_dir / HYDRA_SUBDIR
    folder.mkdir(exist_ok=True)
    for name, node in (
        ("config.yaml", cfg),
        ("hydra.yaml", hydra_root),
        ("overrides.yaml", hydra_root.hydra.overrides.task),
    ):
        (folder / name).write_text(OmegaConf.to_yaml(node), encoding="utf-8")


HYDRA_SUBDIR = ".hydra"
FAILED_FILE = "failed.json"
FAILED_JOBS: list[dict[str, Any]] = []  # the jobs of this process's sweep that failed


def record_failure(job_dir: Path, error: str, kind: str, trace: str | None = None) -> None:
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    record = {
        "job": int(hydra_cfg.job.num),
        "overrides": list(hydra_cfg.overrides.task),
        "error": error,
        "kind": kind,
        "run_dir": str(job_dir),
    }
    FAILED_JOBS.append(record)
    with contextlib.suppress(OSError):
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / FAILED_FILE).write_text(
            json.dumps({**record, "traceback": trace}, indent=2) + "\n", encoding="utf-8"
        )


def report_failed_jobs() -> None:
    """After a --multirun: name the jobs that failed and exit 1 (the others ran to the end).

    The jobs that this process ran are in FAILED_JOBS; those that a launcher ran in other
    processes or on other machines (joblib, submitit, Ray) are known by the failed.json they
    wrote in this sweep's directory (`SweepDirRecorder`)."""
    failed: dict[str, dict[str, Any]] = {}
    for job in FAILED_JOBS:
        failed.setdefault(os.path.realpath(job["run_dir"]), job)
    for sweep_dir, before in SWEEPS:
        for path, record in new_failures(sweep_dir, before):
            failed.setdefault(os.path.realpath(path.parent), record)
    FAILED_JOBS.clear()
    SWEEPS.clear()
    if not failed:
        return
    jobs = sorted(failed.values(), key=lambda job: (job["job"] is None, job["job"] or 0))
    lines = [
        f"  #{job['job']} ({' '.join(job['overrides']) or 'no overrides'}): {job['error']}"
        for job in jobs
    ]
    print(
        f"{len(lines)} job(s) of the sweep failed; the others ran to completion. Each failed "
        f"job's directory holds its {FAILED_FILE}:\n" + "\n".join(lines),
        file=sys.stderr,
        flush=True,
    )
    sys.exit(1)


# the sweeps of this process: each one's directory, with the failed.json files that were there
# before it started (path -> modification time), which are not its own
SWEEPS: list[tuple[Path, dict[Path, int]]] = []


def failed_files(sweep_dir: Path) -> dict[Path, int]:
    """The failed.json files of the job directories under a sweep directory, with their
    modification times (ns). A job directory's own folders are not searched."""
    found: dict[Path, int] = {}
    for folder, dirs, files in os.walk(sweep_dir):
        if HYDRA_SUBDIR in dirs or FAILED_FILE in files:  # a job's directory
            dirs.clear()
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if FAILED_FILE in files:
            path = Path(folder) / FAILED_FILE
            with contextlib.suppress(OSError):
                found[path] = path.stat().st_mtime_ns
    return found


def new_failures(sweep_dir: Path, before: dict[Path, int]) -> list[tuple[Path, dict[str, Any]]]:
    """The failed.json files written under `sweep_dir` since `before` was taken, read."""
    records = []
    for path, mtime in failed_files(sweep_dir).items():
        if before.get(path) == mtime:
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            job = {k: record[k] for k in ("job", "overrides", "error")}
        except (OSError, ValueError, TypeError, KeyError):
            job = {"job": None, "overrides": [], "error": f"see {path} (unreadable)"}
        job["run_dir"] = str(path.parent)
        records.append((path, job))
    return records


def fail(err: RunnerError) -> None:
    """Print the error and exit with its status. A rank > 0 of a data-parallel run leaves
    quietly with status 0: rank 0 reports the run's outcome, and torchrun stops every process as
    soon as one fails, which would stop rank 0 before it wrote its checkpoint or its message."""
    if not distributed.is_main():
        sys.exit(0)
    label = "Stopped" if isinstance(err, Interrupted) else "Error"
    print(f"{label}: {err}", file=sys.stderr, flush=True)
    sys.exit(err.exit_code)


def _resume(target: str, others: list[str]) -> None:
    """`resume=<run dir>`: continue the run in place from its newest complete checkpoint, with
    the config saved in it. A checkpoint file is accepted only if it is that newest one."""
    from runner_core import checkpoint
    from runner_core.train import train

    bad = [a for a in others if not a.startswith(RESUME_OVERRIDABLE)]
    if bad:
        raise ConfigError(
            f"resume={target!r} continues a run with the config saved in its checkpoint, so only "
            f"{', '.join(p + '*' for p in RESUME_OVERRIDABLE)} may be overridden (got "
            f"{' '.join(bad)}). To change anything else, start a new run from one of its "
            "checkpoints with init_from=<checkpoint> and your overrides."
        )
    if distributed.is_follower():  # rank 0 picks the checkpoint; this rank only reads it
        found_path = _shared_dir()
        state = checkpoint.load(found_path)
        cfg = _resumed_config(state, target, others)
        distributed.check_config(cfg)
        train(cfg, found_path.parent.parent, resume=state)
        return
    try:
        started = _resume_main(target, others)
    except BaseException:
        distributed.share(None)  # the other ranks stop: this one reports why
        raise
    if started is None:
        distributed.share(None)
        return
    cfg, owner, state, found_path = started
    distributed.share(str(found_path))
    train(cfg, owner, resume=state)


def _resume_main(
    target: str, others: list[str]
) -> tuple[DictConfig, Any, dict[str, Any], Path] | None:
    """`_resume`'s checks and reads, in the run directory this process then owns: the config,
    the owner, the checkpoint and its path; None for a finished run."""
    from runner_core import checkpoint
    from runner_core.rundir import claim
    from runner_core.train import SUMMARY_FILE

    path = Path(target).expanduser().absolute()
    if path.is_file():
        if path.parent.name != checkpoint.CHECKPOINT_DIR:
            raise ConfigError(
                f"resume={target!r} is a file outside a run's {checkpoint.CHECKPOINT_DIR}/ "
                "folder: resume= continues a run in its own directory. To start a new run from "
                f"this checkpoint, use init_from={target}."
            )
        run_dir = path.parent.parent
    elif path.is_dir():
        run_dir = path
    else:
        raise CheckpointError(
            f"resume={target!r}: no such run directory or checkpoint file. Pass a run directory "
            "under outputs/ (e.g. resume=outputs/2026-01-01/12-00-00_ppo_cartpole)."
        )
    owner = claim(run_dir, fresh=False)  # before reading: no other process may be writing it
    try:
        found = checkpoint.newest(run_dir)
        if path.is_file() and path != found.path.absolute():
            _check_newest(path, found)
        for message in found.damaged:
            print(f"Warning: {message} Continuing from the newest intact one.", file=sys.stderr)
        state = found.state
        cfg = _resumed_config(state, target, others)
        distributed.check_config(cfg)
        summary = run_dir / SUMMARY_FILE
        if summary.is_file() and _finished(summary, found.step):
            print(
                f"Run {run_dir} has finished (step {found.step:,}, {SUMMARY_FILE}); nothing to "
                "resume, and nothing was changed. To train it further, start a new run from it: "
                f"init_from={found.path} with a larger budget."
            )
            owner.release()
            return None
        state["loaded_from"] = str(found.path.relative_to(run_dir))
    except BaseException:
        owner.release()
        raise
    return cfg, owner, state, found.path.absolute()


def _resumed_config(state: dict[str, Any], target: str, others: list[str]) -> DictConfig:
    """The config saved in a checkpoint, with the overrides a resume allows."""
    from omegaconf import OmegaConf

    from runner_core.validation import COMMON_RULES, check

    cfg = OmegaConf.create(state["config"])
    cfg.resume = target
    # keys that checkpoints of earlier versions lack, with the behaviour those versions had
    cfg.setdefault("init_from", None)
    cfg.checkpoint.setdefault("every_minutes", 0)
    OmegaConf.set_struct(cfg, True)
    try:
        # Hydra's override grammar, as for a fresh run (a plain dotlist would read `off` as
        # false)
        from hydra.core.override_parser.overrides_parser import OverridesParser

        for override in OverridesParser.create().parse_overrides(others):
            OmegaConf.update(cfg, override.key_or_group, override.value(), merge=True)
    except Exception as exc:
        raise ConfigError(f"Cannot apply {' '.join(others)} to the resumed config: {exc}") from None
    check(cfg, COMMON_RULES)
    return cfg


def _check_newest(path: Path, found: Any) -> None:
    """Refuse `resume=<older checkpoint>`: continuing from it would cut the run's later history."""
    from runner_core import checkpoint

    try:
        older = checkpoint.load(path, mmap=True)
    except CheckpointError as err:
        raise CheckpointError(
            f"{err} resume=<run dir> continues from the newest intact checkpoint, "
            f"{found.path.name} (step {found.step:,})."
        ) from None
    if checkpoint.order(older) < checkpoint.order(found.state):
        raise ConfigError(
            f"resume={path} names a checkpoint at step {int(older['step']):,}, but the run's "
            f"newest is {found.path.name} at step {found.step:,}. resume= continues a run in place "
            "from its newest state; from an older one it would cut the history recorded after "
            f"it. To start again from {path.name}, make a new run from it: init_from={path} "
            "(the original run is left as it is)."
        )


def _finished(summary: Path, step: int) -> bool:
    try:
        return int(json.loads(summary.read_text(encoding="utf-8"))["global_step"]) <= step
    except (OSError, ValueError, KeyError, TypeError):
        return False


PROGRAMS = {"train": "python -m rl_runner", "dl": "python -m dl_runner"}


def program_name(config_name: str) -> str:
    """How the user started this command: the `train` console script, or `python -m ...`."""
    if Path(sys.argv[0]).name == "train":
        return "train"
    return PROGRAMS.get(config_name, "train")


def help_text(config_name: str, overrides: list[str]) -> str:
    """The --help page: usage, the config groups and their options, the composed config."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    program = program_name(config_name)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    header, footer = cfg.hydra.help.header, cfg.hydra.help.footer
    header = header.replace("python -m rl_runner", program).replace("rl_runner:", f"{program}:")
    groups = sorted(
        (str(d.relative_to(CONF_DIR)), sorted(f.stem for f in d.glob("*.yaml")))
        for d in CONF_DIR.rglob("*")
        if d.is_dir() and d.relative_to(CONF_DIR).parts[0] != "hydra" and any(d.glob("*.yaml"))
    )
    picked = [(g, o) for g, o in groups if not g.startswith("tuned")]
    presets = [f"{g}: {', '.join(o)}" for g, o in groups if g.startswith("tuned")]
    with open_dict(cfg):
        del cfg["hydra"]
    config = OmegaConf.to_yaml(cfg, resolve=True)
    lines = [f"{group}: {', '.join(options)}" for group, options in picked]
    return (
        f"{header}\n== Config groups (pick one option each: group=option) ==\n"
        + "\n".join(lines)
        + "\n\n== Tuned presets (applied automatically for their algo and env or data set; "
        "command-line overrides still win) ==\n"
        + "\n".join(presets)
        + "\n\n== Config ==\nOverride any key (algo.lr=1e-3); add new keys with +key=value; "
        "one network role's setting with network.<role>.<key>=...\n\n" + f"{config}\n{footer}"
    )


def main(config_name: str = "train") -> None:
    """The process entrypoint (`python -m rl_runner`, `python -m dl_runner`, `train`): runs the
    command, then ends the process at once with its exit status.

    Python's normal teardown frees every object alive one by one, and with torch imported (about
    a million objects) that is a noticeable share of a short run, after all its work was done.
    Nothing is skipped that matters: the run has already closed its files, TensorBoard events and
    envs; logging's handlers (train.log) and the standard streams are flushed here. An
    unexpected exception still ends the process the normal way, with its traceback."""
    # Start-up (torch's import above all) creates about a million objects that live as long as
    # the process; the garbage collector's full passes over them would be wasted work. It stays
    # off until the run is about to train (`runner_core.train.startup_done`).
    gc.disable()
    try:
        _main(config_name)
        status: object = 0
    except SystemExit as exc:
        status = exc.code
    exit_now(status)


def exit_now(status: object) -> NoReturn:
    """End the process like `sys.exit(status)` would, without the interpreter's teardown."""
    import logging

    if status is None:
        code = 0
    elif isinstance(status, int):
        code = status
    else:  # sys.exit("message"): the message goes to stderr and the status is 1
        print(status, file=sys.stderr)
        code = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


ROLE_OVERRIDE = re.compile(r"^network\.[A-Za-z_]\w*\.[A-Za-z_][\w.]*=")


def role_overrides(args: list[str]) -> list[str]:
    """`network.<role>.<key>=v` sets one role's network (see `runner_core.networks`). The
    network YAMLs hold only their own settings, so the role node is added on the fly: Hydra's
    `++` (add or override) spelled for the user."""
    return ["++" + a if ROLE_OVERRIDE.match(a) else a for a in args]


def _main(config_name: str) -> None:
    sys.argv[1:] = role_overrides(sys.argv[1:])
    if any(a in ("--cfg", "-c") for a in sys.argv[1:]) and "--resolve" not in sys.argv[1:]:
        sys.argv.append("--resolve")  # print `name` and other interpolations as values
    args = sys.argv[1:]
    # --help answered here, fast, unless configs come from elsewhere (then Hydra's own help)
    foreign = any(a.split("=", 1)[0] in FOREIGN_CONFIG_OPTIONS for a in args)
    if ("--help" in args or "-h" in args) and not foreign:
        overrides = [a for a in args if a not in ("--help", "-h")]
        try:
            print(help_text(config_name, overrides), end="")
        except Exception as exc:  # a bad override: Hydra's message, without its traceback
            message = yaml_error(exc) if isinstance(exc, yaml.YAMLError) else one_paragraph(exc)
            print(f"Error: {message}", file=sys.stderr)
            sys.exit(2)
        return
    if distributed.launched():  # one rank of torchrun's processes
        if "--multirun" in args or "-m" in args:
            if distributed.is_main():
                print(
                    "Error: --multirun under torchrun is not supported: start one torchrun per "
                    "run (each of them trains data-parallel).",
                    file=sys.stderr,
                )
            sys.exit(2)
        distributed.init()
    resume = [a for a in args if a.startswith("resume=") and a.split("=", 1)[1] not in ("", "null")]
    if resume:
        try:
            _resume(resume[-1].split("=", 1)[1], [a for a in args if a not in resume])
        except RunnerError as err:
            fail(err)
        return
    # Hydra prints a bad override's error as several paragraphs (the options, its config
    # search path, a hint about HYDRA_FULL_ERROR); told to raise instead, its errors from
    # composing the config are printed here as one paragraph, like the runner's own.
    show_full_errors = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    skip_mode_probe()
    if distributed.is_follower():
        sys.argv[1:] = follower_args(args)
    try:
        hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base="1.3")(_task)()
    except (HydraException, OmegaConfBaseException, yaml.YAMLError, OSError) as exc:
        if show_full_errors or TASK_NOTE in getattr(exc, "__notes__", ()):
            raise
        if isinstance(exc, OSError) and not isinstance(exc, HydraException):  # Hydra's mkdir
            if not is_storage_error(exc):
                raise
            print(f"Error: {storage_message(exc, 'Cannot create the run directory')}",
                  file=sys.stderr)  # fmt: skip
            sys.exit(StorageError.exit_code)
        message = yaml_error(exc) if isinstance(exc, yaml.YAMLError) else one_paragraph(exc)
        print(f"Error: {message}", file=sys.stderr)
        sys.exit(2)
    finally:
        discard_refused_sweeps()
    summarize_sweeps()
    report_failed_jobs()


def yaml_error(exc: Exception) -> str:
    """A malformed YAML file (conf/ or a --config-dir) as one paragraph: file, line, problem."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = (
        " ".join(
            str(part)
            for part in (getattr(exc, "context", None), getattr(exc, "problem", None))
            if part
        )
        or str(exc).splitlines()[0]
    )
    where = f"'{mark.name}', line {mark.line + 1}, column {mark.column + 1}" if mark else "a file"
    return (
        f"The YAML file {where} is malformed: {problem}. Fix that file (or take it out of the "
        "config directory) and run again."
    )


# sweep directories that this process's --multirun creates, each with the missing folders above
# it, deepest first (see `SweepDirRecorder`)
NEW_SWEEP_DIRS: list[list[Path]] = []


class SweepDirRecorder(Callback):
    """A Hydra callback (conf/hydra/default.yaml): notes the sweep directory a --multirun is
    about to create. Hydra's launcher writes the sweep's multirun.yaml there before it composes
    the first job, so a sweep refused at that job (`algo=foo,ppo`, `algo.lr=0,1e-3`) would leave
    a directory of a sweep that never ran; `discard_refused_sweeps` removes it. Notes too which
    failed.json files were there already, so that `report_failed_jobs` reports this sweep's."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # the launcher's own directory: the `now` resolver is cached per config
        sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        SWEEP_DIRS.append(sweep_dir)
        SWEEPS.append((sweep_dir, failed_files(sweep_dir)))
        missing = []
        for folder in (sweep_dir, *sweep_dir.parents):
            if folder.exists():
                break
            missing.append(folder)
        if missing:
            NEW_SWEEP_DIRS.append(missing)


def discard_refused_sweeps() -> None:
    """Remove the sweep directories made by this process that hold only Hydra's multirun.yaml
    (no job got as far as its own directory), and the folders made for them above (date,
    outputs/multirun) where that leaves them empty. A sweep with any job's output stays whole."""
    for made in NEW_SWEEP_DIRS:
        sweep_dir = made[0]
        if sweep_dir.is_dir() and [p.name for p in sweep_dir.iterdir()] == ["multirun.yaml"]:
            (sweep_dir / "multirun.yaml").unlink()
            for folder in made:
                with contextlib.suppress(OSError):
                    folder.rmdir()
    NEW_SWEEP_DIRS.clear()


# every sweep directory this process's --multirun used (see `summarize_sweeps`)
SWEEP_DIRS: list[Path] = []


def summarize_sweeps() -> None:
    """After a --multirun: each sweep's grouped table (seeds of one setting together, best
    first) and its sweep_summary.csv (`runner_core.report.summarize_sweep`)."""
    from runner_core.report import summarize_sweep

    for sweep_dir in SWEEP_DIRS:
        summarize_sweep(sweep_dir)
    SWEEP_DIRS.clear()


# overrides of these hydra.* keys cannot set hydra.mode (see `skip_mode_probe`)
MODE_NEUTRAL_HYDRA_KEYS = ("hydra.run.", "hydra.sweep.", "hydra.job.", "hydra.verbose=")
# command-line options that bring configs from outside conf/, which might set hydra.mode
FOREIGN_CONFIG_OPTIONS = ("-cd", "--config-dir", "-cp", "--config-path", "-cn", "--config-name",
                          "--experimental-rerun")  # fmt: skip


def mode_is_unset(overrides: list[str], argv: list[str]) -> bool:
    """Whether composing the config cannot set `hydra.mode`: no file in conf/ sets it (a test
    checks every one), no override touches it, and nothing brings configs from elsewhere (an
    appended or deleted group, another config directory or primary config)."""
    if any(a.split("=", 1)[0] in FOREIGN_CONFIG_OPTIONS for a in argv):
        return False
    for override in overrides:
        if override.startswith(("+", "~")):
            return False
        if override.startswith("hydra") and not override.startswith(MODE_NEUTRAL_HYDRA_KEYS):
            return False
    return True


def skip_mode_probe() -> None:
    """Hydra composes the whole config twice per run: first (`Hydra.get_mode`) only to read
    `hydra.mode` (a config may ask for RUN or MULTIRUN), then for the job: the first composition
    is wasted start-up time. Where `mode_is_unset`, its answer is known without composing:
    None, so Hydra goes by --multirun as usual; anything else still composes. Without that
    method (another Hydra version), nothing changes."""
    from hydra._internal.hydra import Hydra

    probe = getattr(Hydra, "get_mode", None)
    if probe is None or getattr(probe, "skips_when_unset", False):
        return

    def get_mode(self: Hydra, config_name: str | None, overrides: list[str]) -> object:
        if mode_is_unset(overrides, sys.argv[1:]):  # this command's, whichever calls it
            return None
        return probe(self, config_name, overrides)

    get_mode.skips_when_unset = True  # type: ignore[attr-defined]
    Hydra.get_mode = get_mode  # type: ignore[method-assign]


def one_paragraph(exc: BaseException) -> str:
    """Hydra's (and OmegaConf's) message of a config error as one paragraph: without the config
    search path or OmegaConf's object_type line, the listed options comma-separated."""
    parts = [str(exc)]
    if isinstance(exc.__cause__, OmegaConfBaseException) and str(exc.__cause__) not in parts[0]:
        parts.append(str(exc.__cause__))
    sentences = []
    for part in parts:
        part = part.split("\nConfig search path", 1)[0]
        head, _, options = part.partition("\n\nAvailable options in ")
        lines = [ln.strip() for ln in head.splitlines()]
        lines = [ln for ln in lines if ln and not ln.startswith("object_type=")]
        if options:
            group, _, names = options.partition(":")
            lines.append(f"Available options in {group}: {', '.join(names.split())}")
        sentences += [ln if ln.endswith((".", ":")) else ln + "." for ln in lines]
    return " ".join(sentences)


if __name__ == "__main__":
    main()
