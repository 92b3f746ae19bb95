"""Time to solve CartPole-v1: from process start to the end of the first deterministic
20-episode evaluation with mean return >= 475, ours against SB3 (RL Zoo's PPO preset), each in a
fresh subprocess: from this parent's clock just before the process is created to the time the
child reports for that evaluation (its time to exit is reported beside it).

Ours:    python -m rl_runner algo=ppo env=cartpole seed=S eval.every_steps=E
             eval.stop_at_return=475 logger.console=off hydra.run.dir=<tmp>
SB3:     python benchmarks/_sb3_ppo_cartpole.py --seed S --eval-every E --budget 100000
RL Zoo:  python -m rl_zoo3.train --algo ppo --env CartPole-v1 --seed S --eval-freq E
             --eval-episodes 20 -f <tmp>   (when rl_zoo3 is installed; stopped once solved)

    python benchmarks/time_to_solve.py [--repeats N] [--quick] [--out PATH]
"""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import common
import rl_zoo

NAME = "time_to_solve"
TITLE = "Time to solve CartPole-v1 (PPO, fresh process)"
EVAL_EVERY = 10_000  # env steps between evaluations, both sides
OURS, SB3, RL_ZOO = "ours", "SB3", "RL Zoo"
SB3_CHILD = common.BENCH_DIR / "_sb3_ppo_cartpole.py"
POLL_S = 0.05  # seconds between reads of the RL Zoo run's evaluations (>1 s apart)


@dataclass(frozen=True)
class Attempt:
    side: str
    repeat: int
    seed: int
    seconds: float  # parent's wall clock: process creation to exit (RL Zoo: to being stopped)
    solved_at: int | None  # env step of the evaluation that reached 475; None: budget ran out
    to_solve: float | None  # process creation to the end of that evaluation (Unix clock)
    steps: int  # env steps trained
    eval_return: float  # mean return of the last evaluation
    stopped: bool = False  # ended by this benchmark once solved (the RL Zoo run has no such rule)

    @property
    def figure(self) -> float:
        """The time compared: to the solving evaluation, or to exit when the budget ran out."""
        return self.seconds if self.to_solve is None else self.to_solve


def launch(cmd: list[str]) -> tuple[float, float, str]:
    """Run a child: (Unix time just before it is created, seconds to its exit, its stdout)."""
    launched = time.time()
    elapsed, proc = common.timed_run(cmd)
    return launched, elapsed, proc.stdout


def since(launched: float, solved_time: float | None) -> float | None:
    return None if solved_time is None else solved_time - launched


def run_ours(seed: int, budget: int, repeat: int) -> Attempt:
    with tempfile.TemporaryDirectory(prefix="bench_tts_") as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [
            common.PYTHON,
            "-m",
            "rl_runner",
            "algo=ppo",
            "env=cartpole",
            f"seed={seed}",
            f"eval.every_steps={EVAL_EVERY}",
            f"eval.stop_at_return={rl_zoo.SOLVED_RETURN:g}",
            "logger.console=off",
            f"hydra.run.dir={run_dir}",
        ]
        if budget != rl_zoo.TOTAL_STEPS:
            cmd.append(f"algo.total_steps={budget}")
        launched, elapsed, _out = launch(cmd)
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    solved = summary.get("solved_at_step")
    return Attempt(
        OURS,
        repeat,
        seed,
        elapsed,
        None if solved is None else int(solved),
        since(launched, summary.get("solved_at_time")),
        int(summary["global_step"]),
        float(summary["eval/mean_return"]),
    )


def run_sb3(seed: int, budget: int, repeat: int) -> Attempt:
    cmd = [
        common.PYTHON,
        str(SB3_CHILD),
        f"--seed={seed}",
        f"--eval-every={EVAL_EVERY}",
        f"--budget={budget}",
    ]
    launched, elapsed, stdout = launch(cmd)
    out = json.loads(stdout.strip().splitlines()[-1])
    return Attempt(
        SB3,
        repeat,
        seed,
        elapsed,
        out["solved_at_step"],
        since(launched, out["solved_at_time"]),
        int(out["steps"]),
        float(out["last_mean_return"]),
    )


def rl_zoo_evaluations(log_folder: Path) -> tuple[float, list[int], list[float]] | None:
    """(the file's modification time, steps, mean returns) of the RL Zoo run's evaluations so far,
    from the `evaluations.npz` that SB3's EvalCallback rewrites right after each evaluation; None
    while there is none, or while it is being written."""
    import numpy as np

    path = next(log_folder.glob("ppo/*/evaluations.npz"), None)  # one run: one such file
    if path is None:
        return None
    try:
        mtime = path.stat().st_mtime
        with np.load(path) as data:
            steps, results = data["timesteps"], data["results"]
        if path.stat().st_mtime != mtime:
            return None  # rewritten while read
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):  # caught mid-write
        return None
    return mtime, [int(s) for s in steps], [float(r) for r in results.mean(axis=1)]


def run_rl_zoo(seed: int, budget: int, repeat: int) -> Attempt:
    """RL Zoo's own command line. It has no stop-at-threshold option, so this parent reads its
    evaluations file as the run goes and stops the run at the first evaluation whose mean
    reaches 475; the time of that evaluation is the file's modification time then (written right
    after the evaluation). Reading every 0.05 s, that evaluation is always the file's last one
    when first seen; anything else is an error rather than a later, wrong time."""
    with tempfile.TemporaryDirectory(prefix="bench_tts_zoo_") as tmp:
        folder = Path(tmp) / "logs"
        cmd = [
            common.PYTHON, "-m", "rl_zoo3.train", "--algo", "ppo", "--env", rl_zoo.ENV_ID,
            "--seed", str(seed), "--eval-freq", str(EVAL_EVERY),
            "--eval-episodes", str(rl_zoo.EVAL_EPISODES), "--log-folder", str(folder),
        ]  # fmt: skip
        if budget != rl_zoo.TOTAL_STEPS:
            cmd += ["--n-timesteps", str(budget)]
        found = None
        with open(Path(tmp) / "output.txt", "w+", encoding="utf-8") as output:
            launched = time.time()
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=output, stderr=subprocess.STDOUT, cwd=tmp)
            try:
                while True:
                    exited = proc.poll() is not None  # then one last read of the finished file
                    found = rl_zoo_evaluations(folder) or found
                    if exited or (found and max(found[2]) >= rl_zoo.SOLVED_RETURN):
                        break
                    time.sleep(POLL_S)
            finally:
                stopped = proc.poll() is None
                if stopped:
                    proc.send_signal(signal.SIGTERM)
                proc.wait()
            elapsed = time.perf_counter() - start
            output.seek(0)
            text = output.read()
        if not stopped and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{text[-3000:]}")
    if found is None:
        raise RuntimeError(f"{' '.join(cmd)} wrote no evaluations:\n{text[-3000:]}")
    mtime, steps, means = found
    solving = [i for i, r in enumerate(means) if r >= rl_zoo.SOLVED_RETURN]
    if solving and solving[0] != len(means) - 1:
        raise RuntimeError(f"RL Zoo seed {seed}: the solving evaluation was not the latest seen")
    return Attempt(
        RL_ZOO,
        repeat,
        seed,
        elapsed,
        steps[solving[0]] if solving else None,
        since(launched, mtime) if solving else None,
        steps[-1],
        means[-1],
        stopped=stopped,
    )


def exit_text(a: Attempt) -> str:
    return f"stopped {a.seconds:.2f}" if a.stopped else f"exit {a.seconds:.2f}"


def solved_text(a: Attempt) -> str:
    return "not solved" if a.solved_at is None else f"{a.solved_at:,}"


def side_figure(attempts: list[Attempt]) -> tuple[float, str]:
    """Median time and its summary cell: time, solved count, median solve step."""
    time_s = common.median(a.figure for a in attempts)
    solved = [a.solved_at for a in attempts if a.solved_at is not None]
    text = f"{common.seconds(time_s)} (solved {len(solved)}/{len(attempts)}"
    if solved:
        text += f", median step {common.median(solved):,.0f}"
    return time_s, text + ")"


def by_solve_step(attempts: list[Attempt], sides: list[str]) -> list[str]:
    """Median time of each side per evaluation at which it solved (10k, 20k, ...): the speed
    comparison without the luck of which evaluation each seed happens to solve at."""
    groups: dict[tuple[str, int], list[float]] = {}
    for a in attempts:
        if a.solved_at is not None:
            key = (a.side, round(a.solved_at / EVAL_EVERY) * EVAL_EVERY)
            groups.setdefault(key, []).append(a.figure)

    def cell(times: list[float] | None) -> str:
        return "—" if not times else f"{common.median(times):.2f} s ({len(times)})"

    peers = [side for side in sides if side != OURS]
    rows = []
    for step in sorted({step for _side, step in groups}):
        ours = groups.get((OURS, step))
        row = [f"{step:,}", cell(ours)]
        for peer in peers:
            times = groups.get((peer, step))
            row.append(cell(times))
        for peer in peers:
            times = groups.get((peer, step))
            both = ours and times
            row.append(f"{common.median(times) / common.median(ours):.2f}x" if both else "—")
        rows.append(row)
    if not rows:
        return ["No run solved."]
    return common.table(
        (
            "Solved at (evaluation)",
            "Ours: median (runs)",
            *(f"{peer}: median (runs)" for peer in peers),
            *(f"{peer} / ours" for peer in peers),
        ),
        rows,
        "r" * (2 + 2 * len(peers)),
    )


def run(opts: common.Options, ctx: common.Context) -> common.Result:
    common.require_sb3()
    repeats = opts.reps(7)  # the step at which a seed solves varies (10k-60k): more seeds
    budget = 2 * EVAL_EVERY if opts.quick else rl_zoo.TOTAL_STEPS
    sides = {OURS: run_ours, SB3: run_sb3}
    with_zoo = importlib.util.find_spec("rl_zoo3") is not None
    if with_zoo:
        sides[RL_ZOO] = run_rl_zoo
    print(f"[{NAME}] {repeats} repeat(s), budget {budget:,} steps, eval every {EVAL_EVERY:,}")
    attempts: list[Attempt] = []
    for repeat in range(repeats):
        for side in common.order(list(sides), repeat):
            a = sides[side](repeat, budget, repeat)
            attempts.append(a)
            print(
                f"  repeat {repeat + 1}  {side:<6}  seed {a.seed}  {a.figure:6.2f} s "
                f"({exit_text(a)} s)  solved at {solved_text(a)}  ({a.steps:,} steps, last eval "
                f"{a.eval_return:.1f})",
                flush=True,
            )
    mine = [a for a in attempts if a.side == OURS]
    ours_s, ours_text = side_figure(mine)
    threads = common.default_torch_threads()
    sb3 = f"Stable-Baselines3 {common.package_version('stable-baselines3')}"
    peer_names = {
        SB3: f"{sb3}, RL Zoo preset (`benchmarks/_sb3_ppo_cartpole.py`), default threads "
        f"({threads})",
        RL_ZOO: f"RL Zoo {common.package_version('rl_zoo3') if with_zoo else ''} command line "
        f"(`python -m rl_zoo3.train --algo ppo --env CartPole-v1`) on {sb3}, default threads "
        f"({threads})",
    }
    rows = []
    for peer in sides:
        if peer == OURS:
            continue
        peer_s, peer_text = side_figure([a for a in attempts if a.side == peer])
        rows.append(
            common.Row(
                benchmark=f"Time to solve CartPole-v1 (process start to an eval mean >= 475), "
                f"{budget:,}-step budget",
                peer=peer_names[peer],
                peer_figure=peer_text,
                ours=ours_text,
                ratio=common.ratio(peer_s / ours_s),
                notes=f"ratio = {peer} time / our time; eval every {EVAL_EVERY:,} steps, 20 "
                "episodes; an unsolved run counts its full-budget time",
            )
        )
    details = [
        f"Medians over {repeats} repeat(s) (seeds 0..{repeats - 1}, the same for every side, "
        f"the order of the sides reversed on odd repeats). Budget {budget:,} env steps; "
        f"evaluation every {EVAL_EVERY:,} env steps over 20 deterministic episodes; solved = the "
        "first evaluation whose mean return is >= 475.",
        "",
        *common.table(
            (
                "Repeat",
                "Seed",
                "Side",
                "To solving eval (s)",
                "To exit (s)",
                "Solved at step",
                "Steps trained",
                "Last eval",
            ),
            (
                (
                    a.repeat + 1,
                    a.seed,
                    a.side,
                    "—" if a.to_solve is None else f"{a.to_solve:.2f}",
                    f"{a.seconds:.2f}" + (" (stopped)" if a.stopped else ""),
                    solved_text(a),
                    f"{a.steps:,}",
                    f"{a.eval_return:.1f}",
                )
                for a in attempts
            ),
            "rrlrrrrr",
        ),
        "",
        "Medians to exit: "
        + ", ".join(
            f"{side} {common.median(a.seconds for a in attempts if a.side == side):.2f} s"
            for side in sides
            if side != RL_ZOO
        )
        + (
            ". The RL Zoo run has no stop-at-threshold rule: it is stopped once solved."
            if with_zoo
            else ". RL Zoo's command line was not measured: rl_zoo3 is not installed (the bench "
            "extra installs it)."
        ),
        "",
        "By the evaluation at which each run solved (ours at the first update boundary past it):",
        "",
        *by_solve_step(attempts, list(sides)),
        "",
        "How it is measured:",
        "",
        "- Time (the figure compared): from this parent's `time.time()` just before "
        "`subprocess.run` creates the child to the end of the child's solving evaluation, by the "
        "Unix time the child reports for it (ours: `solved_at_time` in summary.json; SB3: its "
        "stop callback notes the time as EvalCallback calls it). It includes the interpreter's "
        "start, imports, building envs and model, training, every evaluation and (ours) the run "
        "directory, its TensorBoard events, metrics.jsonl and checkpoints at their defaults. A "
        "run that never solves counts its time to exit. Time to exit (`time.perf_counter()` "
        "around `subprocess.run`) is given beside it: it adds each side's work after the "
        "solving evaluation (ours: final checkpoints and summary, then `os._exit`; SB3: Python's "
        "teardown).",
        f"- Ours: `python -m rl_runner algo=ppo env=cartpole seed=S eval.every_steps={EVAL_EVERY}"
        " eval.stop_at_return=475 logger.console=off hydra.run.dir=<tmp dir>` (RL Zoo's preset "
        "via `conf/tuned/rl/ppo_cartpole.yaml`, default `device.threads=1`); it ends at the "
        "first evaluation whose mean reaches 475; summary.json gives `solved_at_step` and "
        "`solved_at_time`. Its evaluation plays the 20 episodes on 20 vectorized envs.",
        "- SB3: `benchmarks/_sb3_ppo_cartpole.py` builds the same RL Zoo PPO (8 envs in a "
        "`DummyVecEnv`) with `EvalCallback(eval_env, eval_freq="
        f"{EVAL_EVERY}//8, n_eval_episodes=20, deterministic=True, callback_on_new_best="
        "StopTrainingOnRewardThreshold(reward_threshold=475))` on one CartPole-v1 eval env, "
        f"and learns for at most {budget:,} steps. It runs at torch's default thread count "
        f"({threads} here): an SB3 user's experience; SB3 does not set a thread count itself.",
        "- RL Zoo: its own command line, `python -m rl_zoo3.train --algo ppo --env CartPole-v1 "
        f"--seed S --eval-freq {EVAL_EVERY} --eval-episodes 20 --log-folder <tmp dir>`: the "
        "preset from RL Zoo's own hyperparams file, its logging (stdout, to a file here), Monitor "
        "files, best and final models. Its EvalCallback writes `evaluations.npz` right after "
        f"each evaluation; this parent reads that file every {POLL_S} s, takes the file's "
        "modification time as the end of the first evaluation whose mean reaches 475 (checking "
        "that it is the latest in the file) and then stops the run (SIGTERM), since RL Zoo has "
        "no stop-at-threshold rule.",
        "- Every side evaluates every 10,000 env steps and stops (or is stopped) at the same "
        "rule, so the step at which each solved reflects its learning, the time its speed. SB3 "
        "and RL Zoo evaluate exactly at 10,000, 20,000, ... (mid-rollout); ours at the first "
        "update boundary past each multiple (10,240, 20,224, 30,208, ...: up to 255 more "
        "training steps).",
    ]
    return common.Result(NAME, TITLE, rows, details)


if __name__ == "__main__":
    common.main_one(NAME, run, __doc__.split("\n\n")[0])
