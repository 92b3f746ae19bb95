"""Start-up: how long the CLI takes to answer, and how long a real run takes to its first env step.

(a) wall time of `python -m rl_runner --help` and `python -m rl_runner --cfg job`, and a check
    (`python -X importtime`) that neither imports torch or gymnasium;
(b) time from process start to the first environment step of `python -m rl_runner algo=ppo
    env=cartpole`, against SB3's (import stable_baselines3, build the envs and RL Zoo's PPO,
    learn), measured by the child _first_step.py; plus the bare interpreter (`python -c pass`)
    and `python -c "import os, torch; os._exit(0)"` for reference.

    python benchmarks/startup.py [--repeats N] [--quick] [--out PATH]
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import common

NAME = "startup"
TITLE = "Start-up: CLI answers and time to the first env step"
HEAVY = ("torch", "gymnasium")  # modules the CLI must not import for --help / --cfg job
FIRST_STEP_CHILD = common.BENCH_DIR / "_first_step.py"
RUN_ARGS = ("algo=ppo", "env=cartpole", "logger.console=off")
IMPORT_TORCH = "import os, torch; os._exit(0)"
CLI = {  # key: (label, interpreter arguments), timed as they come
    "bare": ("`python -c pass` (bare interpreter)", ["-c", "pass"]),
    # os._exit: no interpreter teardown, as in the first-step children (torch's is slow)
    "torch": (f'`python -c "{IMPORT_TORCH}"`', ["-c", IMPORT_TORCH]),
    "help": ("`python -m rl_runner --help`", ["-m", "rl_runner", "--help"]),
    "cfg": ("`python -m rl_runner --cfg job`", ["-m", "rl_runner", "--cfg", "job"]),
}
FIRST_STEP = {
    "ours": f"`python -m rl_runner {' '.join(RUN_ARGS)}` to its first env step",
    "sb3": "SB3: import, build RL Zoo PPO, `learn()` to its first env step",
}


@dataclass(frozen=True)
class Timing:
    label: str
    times: list[float]  # seconds, one per repeat
    in_child: list[float] | None = None  # (b): from the child's first line to its first step

    @property
    def median(self) -> float:
        return common.median(self.times)


def heavy_imports(args: list[str]) -> list[str]:
    """The modules among HEAVY (or their submodules) that `python -X importtime -m rl_runner
    <args>` imports, read from its import-time report on stderr."""
    cmd = [common.PYTHON, "-X", "importtime", "-m", "rl_runner", *args]
    proc = subprocess.run(cmd, cwd=common.REPO_ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{proc.stderr}")
    found = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            module = line.rsplit("|", 1)[1].strip()
            if module.split(".")[0] in HEAVY:
                found.add(module.split(".")[0])
    if not any(line.startswith("import time:") for line in proc.stderr.splitlines()):
        raise RuntimeError("no -X importtime report on stderr: cannot check the imports")
    return sorted(found)


def time_cli(label: str, args: list[str], repeats: int) -> Timing:
    times = [common.timed_run([common.PYTHON, *args])[0] for _ in range(repeats)]
    return Timing(label, times)


def first_step(side: str) -> tuple[float, float]:
    """(parent-measured seconds from process creation to the first env step, the same from the
    child's first line). Both clocks are `time.time()` on this machine."""
    with tempfile.TemporaryDirectory(prefix="bench_first_step_") as tmp:
        args = [*RUN_ARGS, f"hydra.run.dir={Path(tmp) / 'run'}"] if side == "ours" else []
        before = time.time()
        _elapsed, proc = common.timed_run([common.PYTHON, str(FIRST_STEP_CHILD), side, *args])
    lines = [x for x in proc.stdout.splitlines() if x.startswith("FIRST_STEP ")]
    if not lines:
        raise RuntimeError(f"{side}: the child never stepped the env:\n{proc.stderr}")
    marks = json.loads(lines[-1].split(" ", 1)[1])
    return marks["first_step"] - before, marks["first_step"] - marks["start"]


def heavy_text(found: list[str]) -> str:
    return "imports neither torch nor gymnasium" if not found else "IMPORTS " + ", ".join(found)


def run(opts: common.Options, ctx: common.Context) -> common.Result:
    common.require_sb3()
    repeats = opts.reps(5)
    print(f"[{NAME}] {repeats} repeat(s) of each", flush=True)
    imports = {"help": heavy_imports(["--help"]), "cfg": heavy_imports(["--cfg", "job"])}
    for key, found in imports.items():
        print(f"  {CLI[key][0]} {heavy_text(found)}", flush=True)
    timings = {key: time_cli(label, args, repeats) for key, (label, args) in CLI.items()}
    # the two first-step measurements interleaved, alternating which goes first
    marks: dict[str, list[tuple[float, float]]] = {side: [] for side in FIRST_STEP}
    for repeat in range(repeats):
        for side in common.order(list(FIRST_STEP), repeat):
            marks[side].append(first_step(side))
    for side, label in FIRST_STEP.items():
        timings[side] = Timing(label, [m[0] for m in marks[side]], [m[1] for m in marks[side]])
    for t in timings.values():
        print(f"  {t.label:<70} median {t.median:.3f} s", flush=True)

    sb3 = f"Stable-Baselines3 {common.package_version('stable-baselines3')}"
    ours_step, sb3_step = timings["ours"].median, timings["sb3"].median
    na = common.NONE
    rows = [
        common.Row(
            "Start-up: `python -m rl_runner --help`",
            na,
            na,
            common.seconds(timings["help"].median),
            na,
            heavy_text(imports["help"]),
        ),
        common.Row(
            "Start-up: `python -m rl_runner --cfg job`",
            na,
            na,
            common.seconds(timings["cfg"].median),
            na,
            heavy_text(imports["cfg"]),
        ),
        common.Row(
            "Start-up: process start to first env step (PPO CartPole-v1)",
            f"{sb3} (import, build RL Zoo PPO, learn)",
            common.seconds(sb3_step),
            common.seconds(ours_step),
            common.ratio(sb3_step / ours_step),
            "ratio = SB3 time / our time; `import torch` alone "
            f"{common.seconds(timings['torch'].median)}",
        ),
        common.Row(
            "Reference: bare interpreter start (`python -c pass`)",
            na,
            na,
            common.seconds(timings["bare"].median),
            na,
            "the floor under every start-up figure above",
        ),
    ]
    details = [
        f"Median of {repeats} run(s) each, every one a fresh process; times in seconds.",
        "",
        *common.table(
            ("What", "Median (s)", "Every run (s)", "In the child (s, median)"),
            (
                (
                    t.label,
                    f"{t.median:.3f}",
                    ", ".join(f"{x:.3f}" for x in t.times),
                    common.NONE if t.in_child is None else f"{common.median(t.in_child):.3f}",
                )
                for t in timings.values()
            ),
            "lrlr",
        ),
        "",
        "Heavy imports (`python -X importtime -m rl_runner <args>`, its stderr scanned for "
        "`torch` and `gymnasium` and their submodules):",
        "",
        *common.table(
            ("Command", "torch / gymnasium imported"),
            (
                (CLI[key][0], ", ".join(found) if found else "neither")
                for key, found in imports.items()
            ),
        ),
        "",
        "How it is measured:",
        "",
        "- CLI rows and the reference rows: this parent's `time.perf_counter()` around "
        "`subprocess.run`, from just before the process is created to its exit. The `import "
        "torch` reference ends with `os._exit(0)`, skipping the interpreter's teardown as the "
        "first-step children do, so it compares with them.",
        "- First env step: the child `benchmarks/_first_step.py` notes `time.time()` on its first "
        "line, patches the env's `step` (ours: gymnasium's native `CartPoleVectorEnv.step`, "
        "what the runner steps; SB3: `CartPoleEnv.step`, what its `DummyVecEnv` steps) to "
        "write the time of the first call and `os._exit(0)` at once, then runs the real "
        'thing: ours `runpy.run_module("rl_runner", run_name="__main__")` with `sys.argv` '
        "set to `rl_runner " + " ".join(RUN_ARGS) + " hydra.run.dir=<tmp>` (config "
        "composition, validation, gymnasium's import (torch's too on a device that needs it; PPO "
        "on CartPole runs on numpy alone and never imports it), envs, model, run directory, "
        "logger, the first reset); SB3 `import stable_baselines3`, `make_vec_env` with 8 envs, "
        "`PPO(...)` with RL Zoo's preset, `learn()`. The figure is the first step's `time.time()` "
        "minus the parent's `time.time()` just before it created the child (so it includes the "
        "interpreter's own start); the last column is the same from the child's first line.",
        "- Ours and SB3 alternate which goes first in each repeat.",
    ]
    return common.Result(NAME, TITLE, rows, details)


if __name__ == "__main__":
    common.main_one(NAME, run, __doc__.split("\n\n")[0])
