"""Time to solve CartPole-v1: from process start to the end of the first deterministic
20-episode evaluation with mean return >= 475, ours against SB3 (RL Zoo's PPO preset), each in a
fresh subprocess: from this parent's clock just before the process is created to the time the
child reports for that evaluation (its time to exit is reported beside it).

Ours:  python -m rl_runner algo=ppo env=cartpole seed=S eval.every_steps=E
           eval.stop_at_return=475 logger.console=off hydra.run.dir=<tmp>
SB3:   python benchmarks/_sb3_ppo_cartpole.py --seed S --eval-every E --budget 100000

    python benchmarks/time_to_solve.py [--repeats N] [--quick] [--out PATH]
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import common
import rl_zoo

NAME = "time_to_solve"
TITLE = "Time to solve CartPole-v1 (PPO, fresh process)"
EVAL_EVERY = 10_000  # env steps between evaluations, both sides
OURS, SB3 = "ours", "SB3"
SB3_CHILD = common.BENCH_DIR / "_sb3_ppo_cartpole.py"


@dataclass(frozen=True)
class Attempt:
    side: str
    repeat: int
    seed: int
    seconds: float  # parent's wall clock: process creation to exit
    solved_at: int | None  # env step of the evaluation that reached 475; None: budget ran out
    to_solve: float | None  # process creation to the end of that evaluation (Unix clock)
    steps: int  # env steps trained
    eval_return: float  # mean return of the last evaluation

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


def by_solve_step(attempts: list[Attempt]) -> list[str]:
    """Median time of each side per evaluation at which it solved (10k, 20k, ...): the speed
    comparison without the luck of which evaluation each seed happens to solve at."""
    groups: dict[tuple[str, int], list[float]] = {}
    for a in attempts:
        if a.solved_at is not None:
            key = (a.side, round(a.solved_at / EVAL_EVERY) * EVAL_EVERY)
            groups.setdefault(key, []).append(a.figure)
    rows = []
    for step in sorted({step for _side, step in groups}):
        ours, peer = groups.get((OURS, step)), groups.get((SB3, step))

        def cell(times: list[float] | None) -> str:
            return "—" if not times else f"{common.median(times):.2f} s ({len(times)})"

        both = ours and peer
        ratio = f"{common.median(peer) / common.median(ours):.2f}x" if both else "—"
        rows.append((f"{step:,}", cell(ours), cell(peer), ratio))
    if not rows:
        return ["No run solved."]
    return common.table(
        ("Solved at (evaluation)", "Ours: median (runs)", "SB3: median (runs)", "SB3 / ours"),
        rows,
        "rrrr",
    )


def run(opts: common.Options, ctx: common.Context) -> common.Result:
    common.require_sb3()
    repeats = opts.reps(7)  # the step at which a seed solves varies (10k-60k): more seeds
    budget = 2 * EVAL_EVERY if opts.quick else rl_zoo.TOTAL_STEPS
    sides = {OURS: run_ours, SB3: run_sb3}
    print(f"[{NAME}] {repeats} repeat(s), budget {budget:,} steps, eval every {EVAL_EVERY:,}")
    attempts: list[Attempt] = []
    for repeat in range(repeats):
        for side in common.order(list(sides), repeat):
            a = sides[side](repeat, budget, repeat)
            attempts.append(a)
            print(
                f"  repeat {repeat + 1}  {side:<4}  seed {a.seed}  {a.figure:6.2f} s (exit "
                f"{a.seconds:.2f} s)  solved at "
                f"{solved_text(a)}  ({a.steps:,} steps, last eval {a.eval_return:.1f})",
                flush=True,
            )
    mine = [a for a in attempts if a.side == OURS]
    peers = [a for a in attempts if a.side == SB3]
    ours_s, ours_text = side_figure(mine)
    peer_s, peer_text = side_figure(peers)
    sb3 = f"Stable-Baselines3 {common.package_version('stable-baselines3')}"
    threads = common.default_torch_threads()
    row = common.Row(
        benchmark=f"Time to solve CartPole-v1 (process start to an eval mean >= 475), "
        f"{budget:,}-step budget",
        peer=f"{sb3}, RL Zoo preset, default threads ({threads})",
        peer_figure=peer_text,
        ours=ours_text,
        ratio=common.ratio(peer_s / ours_s),
        notes=f"ratio = SB3 time / our time; eval every {EVAL_EVERY:,} steps, 20 episodes; "
        "an unsolved run counts its full-budget time",
    )
    details = [
        f"Medians over {repeats} repeat(s) (seeds 0..{repeats - 1}, the same for both sides, "
        f"alternating which goes first). Budget {budget:,} env steps; evaluation every "
        f"{EVAL_EVERY:,} env steps over 20 deterministic episodes; solved = the first "
        "evaluation whose mean return is >= 475.",
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
                    f"{a.seconds:.2f}",
                    solved_text(a),
                    f"{a.steps:,}",
                    f"{a.eval_return:.1f}",
                )
                for a in attempts
            ),
            "rrlrrrrr",
        ),
        "",
        f"Medians to exit: ours {common.median(a.seconds for a in mine):.2f} s, SB3 "
        f"{common.median(a.seconds for a in peers):.2f} s.",
        "",
        "By the evaluation at which each run solved (ours at the first update boundary past it):",
        "",
        *by_solve_step(attempts),
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
        "- Both sides evaluate every 10,000 env steps and stop at the same rule, so the step at "
        "which each solved reflects its learning, the time its speed. SB3 evaluates exactly at "
        "10,000, 20,000, ... (mid-rollout); ours at the first update boundary past each "
        "multiple (10,240, 20,224, 30,208, ...: up to 255 more training steps).",
    ]
    return common.Result(NAME, TITLE, [row], details)


if __name__ == "__main__":
    common.main_one(NAME, run, __doc__.split("\n\n")[0])
