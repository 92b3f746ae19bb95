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
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import hydra
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from runner_core.errors import ConfigError, Interrupted, RunnerError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
RESUME_OVERRIDABLE = ("logger.",)  # keys that do not change results
TASK_NOTE = "(raised while running the task)"  # marks a bug's exception, as opposed to bad input


def _task(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig

    from runner_core.train import train

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        return train(cfg, run_dir)
    except RunnerError as err:
        fail(err)
        raise AssertionError("unreachable") from None
    except Exception as exc:  # a bug, not bad input: keep its traceback (see `_main`)
        exc.add_note(TASK_NOTE)
        raise


def fail(err: RunnerError) -> None:
    label = "Stopped" if isinstance(err, Interrupted) else "Error"
    print(f"{label}: {err}", file=sys.stderr, flush=True)
    sys.exit(err.exit_code)


def _resume(target: str, others: list[str]) -> float:
    from omegaconf import OmegaConf

    from runner_core import checkpoint
    from runner_core.train import train

    bad = [a for a in others if not a.startswith(RESUME_OVERRIDABLE)]
    if bad:
        raise ConfigError(
            f"resume={target!r} continues a run with the config saved in its checkpoint, so only "
            f"{', '.join(p + '*' for p in RESUME_OVERRIDABLE)} may be overridden (got "
            f"{' '.join(bad)}). Start a new run to change anything else."
        )
    run_dir, ckpt = checkpoint.resolve_resume_target(target)
    state = checkpoint.load(ckpt)
    cfg = OmegaConf.create(state["config"])
    cfg.resume = target
    OmegaConf.set_struct(cfg, True)
    try:
        # Hydra's override grammar, as for a fresh run (a plain dotlist would read `off` as false)
        from hydra.core.override_parser.overrides_parser import OverridesParser

        for override in OverridesParser.create().parse_overrides(others):
            OmegaConf.update(cfg, override.key_or_group, override.value(), merge=True)
    except Exception as exc:
        raise ConfigError(f"Cannot apply {' '.join(others)} to the resumed config: {exc}") from None
    return train(cfg, run_dir, resume=state)


def help_text(config_name: str, overrides: list[str]) -> str:
    """The --help page: usage, the config groups and their options, the composed config."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    header, footer = cfg.hydra.help.header, cfg.hydra.help.footer
    groups = sorted(
        (str(d.relative_to(CONF_DIR)), sorted(f.stem for f in d.glob("*.yaml")))
        for d in CONF_DIR.rglob("*")
        if d.is_dir() and d.name != "hydra" and any(d.glob("*.yaml"))
    )
    with open_dict(cfg):
        del cfg["hydra"]
    config = OmegaConf.to_yaml(cfg)
    lines = [f"{group}: {', '.join(options)}" for group, options in groups]
    return (
        f"{header}\n== Config groups (pick one option each: group=option) ==\n"
        + "\n".join(lines)
        + "\n\n== Config ==\nOverride any key (algo.lr=1e-3); add new keys with +key=value.\n\n"
        + f"{config}\n{footer}"
    )


def main(config_name: str = "train") -> None:
    """The process entrypoint (`python -m rl_runner`, `python -m dl_runner`, `train`): runs the
    command, then ends the process at once with its exit status.

    Python's normal teardown frees every object alive one by one, and with torch imported
    (~10^6 objects) that took 0.15-0.5 s of every run here, after all its work was done. Nothing
    is skipped that matters: the run has already closed its files, TensorBoard events and
    envs; logging's handlers (train.log) and the standard streams are flushed here. An
    unexpected exception still ends the process the normal way, with its traceback."""
    # Start-up (torch's import above all) creates ~10^6 objects that live as long as the process;
    # the garbage collector's full passes over them took ~0.15-0.2 s of every run here. It stays
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


def _main(config_name: str) -> None:
    args = sys.argv[1:]
    if "--help" in args or "-h" in args:
        overrides = [a for a in args if a not in ("--help", "-h")]
        try:
            print(help_text(config_name, overrides), end="")
        except Exception as exc:  # a bad override: Hydra's message, without its traceback
            print(f"Error: {one_paragraph(exc)}", file=sys.stderr)
            sys.exit(2)
        return
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
    try:
        hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base="1.3")(_task)()
    except (HydraException, OmegaConfBaseException) as exc:
        if show_full_errors or TASK_NOTE in getattr(exc, "__notes__", ()):
            raise
        print(f"Error: {one_paragraph(exc)}", file=sys.stderr)
        sys.exit(2)
    finally:
        discard_refused_sweeps()


# sweep directories that this process's --multirun creates, each with the missing folders above
# it, deepest first (see `SweepDirRecorder`)
NEW_SWEEP_DIRS: list[list[Path]] = []


class SweepDirRecorder(Callback):
    """A Hydra callback (conf/hydra/default.yaml): notes the sweep directory a --multirun is
    about to create. Hydra's launcher writes the sweep's multirun.yaml there before it composes
    the first job, so a sweep refused at that job (`algo=foo,ppo`, `algo.lr=0,1e-3`) would leave
    a directory of a sweep that never ran; `discard_refused_sweeps` removes it."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # the launcher's own directory: the `now` resolver is cached per config
        sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
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
    `hydra.mode` (a config may ask for RUN or MULTIRUN), then for the job. That first composition
    cost 0.09 s of every run here. Where `mode_is_unset`, its answer is known without composing:
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
