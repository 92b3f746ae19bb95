"""PPO on CartPole-v1: this runner against Stable-Baselines3, side by side in one process.

Both sides train with RL Zoo's preset for CartPole-v1 (8 envs x 32 steps, batch 256, 20 epochs,
gamma 0.98, GAE lambda 0.8, no entropy bonus, learning rate and clip range decaying linearly from
1e-3 and 0.2, 100k steps, separate 64x64 tanh actor and critic) on the CPU with one torch thread,
then evaluate the final policy deterministically for 20 episodes.

Each repeat runs both sides, alternating which goes first, so machine noise hits both alike; the
report gives medians over the repeats. Run it with `make bench` (ARGS="--repeats 5") or directly:

    python benchmarks/ppo_cartpole.py [--repeats N] [--steps N] [--out PATH] [--quick]

It prints a table and writes docs/benchmarks.md (a --quick smoke run writes only with --out).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if importlib.util.find_spec("stable_baselines3") is None:
    sys.exit("stable-baselines3 is not installed: run `make bench` (it installs the bench extra).")

import gymnasium
import stable_baselines3
import torch
from hydra import compose, initialize_config_dir
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from rl_runner.trainer import EVAL_SEED_OFFSET  # also imports the trainer before any timing
from runner_core.entrypoint import CONF_DIR
from runner_core.train import SUMMARY_FILE, train

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "docs" / "benchmarks.md"
BENCHMARK = "PPO CartPole-v1 (RL Zoo preset)"
SECTION = "ppo_cartpole"  # marks this script's section of the docs file
EVAL_EPISODES = 20
THREADS = 1
WARMUP_SEED = 12345
NOT_CODE = (":!benchmarks", ":!docs")

# RL Zoo's hyperparameters for PPO on CartPole-v1 (rl-baselines3-zoo, hyperparams/ppo.yml)
N_ENVS = 8
N_STEPS = 32
BATCH_SIZE = 256
N_EPOCHS = 20
GAMMA = 0.98
GAE_LAMBDA = 0.8
ENT_COEF = 0.0
LEARNING_RATE = 1e-3
CLIP_RANGE = 0.2

OURS, PEER = "ours", "SB3"


@dataclass(frozen=True)
class Measurement:
    """One training run of one side: the env steps it took, its wall time and its final eval."""

    side: str
    repeat: int
    seed: int
    steps: int
    seconds: float  # what steps/s is computed from (see the docs notes)
    eval_return: float
    eval_seconds: float | None = None  # SB3: time of the final evaluation, part of `seconds`
    setup_seconds: float | None = None  # ours: train() time outside the run's own wall clock

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds


def run_ours(seed: int, steps: int, repeat: int) -> Measurement:
    """The runner in-process: compose its config with Hydra, then time `train()` end to end
    (env and model creation, training, final evaluation, final checkpoints, summary.json)."""
    overrides = [
        "algo=ppo",
        "env=cartpole",  # the tuned/rl/ppo_cartpole preset applies RL Zoo's hyperparameters
        "device=cpu",
        f"seed={seed}",
        f"algo.total_steps={steps}",
        "logger.console=off",
        "logger.tensorboard=false",
        "checkpoint.every_steps=0",
        "eval.every_steps=0",
        "checkpoint.save_best=false",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    assert cfg.device.threads == THREADS and cfg.eval.episodes == EVAL_EPISODES
    with tempfile.TemporaryDirectory(prefix="bench_ppo_cartpole_") as tmp:
        run_dir = Path(tmp) / "run"
        start = time.perf_counter()
        objective = train(cfg, run_dir=run_dir)
        seconds = time.perf_counter() - start
        summary = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
    return Measurement(
        side=OURS,
        repeat=repeat,
        seed=seed,
        steps=int(summary["global_step"]),
        seconds=seconds,
        eval_return=objective,
        setup_seconds=seconds - float(summary["wall_time_s"]),
    )


def linear(start: float) -> Callable[[float], float]:
    """SB3 schedule: `progress_remaining` goes from 1 to 0 over the run."""

    def schedule(progress_remaining: float) -> float:
        return start * progress_remaining

    return schedule


def run_sb3(seed: int, steps: int, repeat: int) -> Measurement:
    """Stable-Baselines3: build the model and envs untimed, then time `learn()` plus a final
    deterministic 20-episode evaluation on a fresh single CartPole env."""
    envs = make_vec_env("CartPole-v1", n_envs=N_ENVS, seed=seed)
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=seed + EVAL_SEED_OFFSET)
    model = PPO(
        "MlpPolicy",
        envs,
        n_steps=N_STEPS,
        batch_size=BATCH_SIZE,
        gae_lambda=GAE_LAMBDA,
        gamma=GAMMA,
        n_epochs=N_EPOCHS,
        ent_coef=ENT_COEF,
        learning_rate=linear(LEARNING_RATE),
        clip_range=linear(CLIP_RANGE),
        seed=seed,
        device="cpu",
        verbose=0,
    )
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    learned = time.perf_counter()
    mean_return, _std = evaluate_policy(
        model, eval_env, n_eval_episodes=EVAL_EPISODES, deterministic=True
    )
    end = time.perf_counter()
    envs.close()
    eval_env.close()
    return Measurement(
        side=PEER,
        repeat=repeat,
        seed=seed,
        steps=int(model.num_timesteps),
        seconds=end - start,
        eval_return=float(mean_return),
        eval_seconds=end - learned,
    )


def describe(m: Measurement) -> str:
    extra = ""
    if m.eval_seconds is not None:
        extra = f"  (final eval {m.eval_seconds:.2f} s)"
    if m.setup_seconds is not None:
        extra = f"  (setup outside the run clock {m.setup_seconds:.2f} s)"
    return (
        f"repeat {m.repeat + 1}  {m.side:<4}  seed {m.seed}  {m.steps:>7,} steps  "
        f"{m.seconds:7.2f} s  {m.steps_per_s:8.1f} steps/s  eval {m.eval_return:6.1f}{extra}"
    )


def run_benchmark(repeats: int, steps: int) -> list[Measurement]:
    """`repeats` rounds of both sides (seed = round), alternating which side goes first."""
    sides = {OURS: run_ours, PEER: run_sb3}
    for run in sides.values():  # untimed warm-up: lazy imports and first-call costs
        run(seed=WARMUP_SEED, steps=N_ENVS * N_STEPS, repeat=-1)
    results: list[Measurement] = []
    for repeat in range(repeats):
        order = [OURS, PEER] if repeat % 2 == 0 else [PEER, OURS]
        for side in order:
            result = sides[side](seed=repeat, steps=steps, repeat=repeat)
            print(describe(result), flush=True)
            results.append(result)
    return results


@dataclass(frozen=True)
class Summary:
    """Medians over the repeats of one side."""

    steps_per_s: float
    eval_return: float
    seconds: float
    runs: list[Measurement]


def summarize(results: list[Measurement], side: str) -> Summary:
    runs = [m for m in results if m.side == side]
    return Summary(
        steps_per_s=statistics.median(m.steps_per_s for m in runs),
        eval_return=statistics.median(m.eval_return for m in runs),
        seconds=statistics.median(m.seconds for m in runs),
        runs=runs,
    )


def machine_facts() -> dict[str, str]:
    return {
        "CPU cores (os.cpu_count())": str(os.cpu_count()),
        "CPU": cpu_model(),
        "torch threads": str(torch.get_num_threads()),
        "Python": platform.python_version(),
        "torch": torch.__version__,
        "gymnasium": gymnasium.__version__,
        "stable-baselines3": stable_baselines3.__version__,
        "commit": git_commit(),
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        # the runner's code: edits to the benchmarks and their docs do not change the numbers
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", *NOT_CODE)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit} (with uncommitted changes to the runner)" if dirty else commit


def print_report(ours: Summary, peer: Summary, repeats: int, steps: int) -> None:
    ratio = ours.steps_per_s / peer.steps_per_s
    print(f"\n{BENCHMARK}: {steps:,} steps, medians over {repeats} repeat(s)")
    print(f"{'':<6}{'steps/s':>10}{'time s':>9}{'eval return':>13}")
    for name, s in ((PEER, peer), (OURS, ours)):
        print(f"{name:<6}{s.steps_per_s:>10.1f}{s.seconds:>9.2f}{s.eval_return:>13.1f}")
    print(f"ratio (ours / SB3 steps/s): {ratio:.2f}x")


def markdown_section(
    ours: Summary, peer: Summary, repeats: int, steps: int, facts: dict[str, str]
) -> str:
    ratio = ours.steps_per_s / peer.steps_per_s
    lines = [
        f"## {BENCHMARK}",
        "",
        f"{steps:,} env steps per run; medians over {repeats} repeat(s). "
        "Ratio = ours / peer steps/s (above 1: ours is faster). Eval = mean return of the final "
        f"policy over {EVAL_EPISODES} deterministic episodes (500 is the maximum: solved).",
        "",
        "| Benchmark | Peer | Peer steps/s | Ours steps/s | Ratio | Peer eval | Ours eval |",
        "|---|---|---:|---:|---:|---:|---:|",
        f"| {BENCHMARK} | Stable-Baselines3 {stable_baselines3.__version__} "
        f"| {peer.steps_per_s:.0f} | {ours.steps_per_s:.0f} | {ratio:.2f} "
        f"| {peer.eval_return:.1f} | {ours.eval_return:.1f} |",
        "",
        "Every run:",
        "",
        "| Repeat | Seed | Side | Env steps | Time (s) | of which final eval (s) | Steps/s "
        "| Eval return |",
        "|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    runs = sorted(ours.runs + peer.runs, key=lambda m: (m.repeat, m.side != OURS))
    for m in runs:
        eval_s = "not timed apart" if m.eval_seconds is None else f"{m.eval_seconds:.2f}"
        lines.append(
            f"| {m.repeat + 1} | {m.seed} | {m.side} | {m.steps:,} | {m.seconds:.2f} "
            f"| {eval_s} | {m.steps_per_s:.0f} | {m.eval_return:.1f} |"
        )
    lines += ["", "Machine:", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in facts.items()]
    lines += ["", *NOTES]
    return "\n".join(lines)


NOTES = [
    "How it is measured:",
    "",
    "- Both sides run in one process, one after the other in each repeat (the first side "
    "alternates between repeats), on the CPU with one torch thread "
    "(`torch.set_num_threads(1)`; the runner's `device.threads` default is 1 as well). "
    "Seeds are 0, 1, 2, ... (one per repeat, the same for both sides). Before the repeats "
    "each side runs one untimed 256-step warm-up, so one-time costs (lazy imports, first "
    "calls) count for neither.",
    "- Hyperparameters (RL Zoo, `ppo.yml`, CartPole-v1): 8 envs, n_steps 32, batch 256, "
    "20 epochs, gamma 0.98, GAE lambda 0.8, ent_coef 0, learning rate linear from 1e-3 and "
    "clip range linear from 0.2 (both to 0), separate 64x64 tanh actor and critic, vf_coef 0.5, "
    "max_grad_norm 0.5, unclipped value loss. Ours: `algo=ppo env=cartpole` (the "
    "`conf/tuned/rl/ppo_cartpole.yaml` preset) with console, TensorBoard, periodic evaluation "
    "and periodic/best checkpoints off. Both sides finish the last 256-step rollout, so they "
    "take slightly more steps than asked.",
    "- Ours: `runner_core.train.train()` timed end to end: it includes creating the envs and "
    "the model, training, the final 20-episode deterministic evaluation (on 20 vectorized "
    "eval envs), writing metrics.jsonl, the final checkpoints and summary.json. Composing the "
    "Hydra config is not timed.",
    '- SB3: `PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=8), ...)` built untimed; '
    "timed: `learn()` plus `evaluate_policy(model, eval_env, n_eval_episodes=20, "
    "deterministic=True)` on a fresh single CartPole env, so both sides do the same work (the "
    "same 20 final evaluation episodes; SB3 plays them one after another on one env, ours on "
    "20 vectorized envs at once).",
    "- Implementation differences that count in the timings: ours steps CartPole's native "
    "numpy-vectorized env (`gymnasium.make_vec`), SB3 steps 8 Python envs in a `DummyVecEnv`; "
    "ours uses next-step autoreset, so the step after each episode's end only resets that "
    "sub-env, counts as an env step and is dropped from training.",
    "- The machine may be shared and noisy: compare ratios measured in one run, not numbers "
    "across machines.",
]

HEADER = [
    "# Benchmarks",
    "",
    "<!-- Generated output: written by `make bench` (benchmarks/*.py). Do not edit by hand; "
    "rerun `make bench` to refresh it. -->",
    "",
    "Speed of this runner against an established library, same algorithm and hyperparameters, "
    "measured side by side in one process. Regenerate with `make bench` "
    '(options: `make bench ARGS="--repeats 5"`).',
]


def write_doc(path: Path, section: str) -> None:
    """Write this benchmark's section into `path`, replacing its previous version and keeping
    other benchmarks' sections."""
    start, end = f"<!-- begin {SECTION} -->", f"<!-- end {SECTION} -->"
    block = f"{start}\n{section}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else "\n".join(HEADER) + "\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        text = before + block + after
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, help="rounds of both sides (default 3)")
    parser.add_argument("--steps", type=int, help="env steps per run (default 100000)")
    parser.add_argument(
        "--out", type=Path, help="markdown file to write (default docs/benchmarks.md)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 repeat of 20000 steps; writes the docs file only with --out",
    )
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.steps is None:
        args.steps = 20_000 if args.quick else 100_000
    if args.out is None and not args.quick:
        args.out = DEFAULT_OUT
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.steps < N_ENVS * N_STEPS:
        parser.error(f"--steps must be at least one rollout ({N_ENVS * N_STEPS})")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(THREADS)
    print(
        f"{BENCHMARK}: {args.repeats} repeat(s) x {args.steps:,} steps, ours vs "
        f"Stable-Baselines3 {stable_baselines3.__version__}, torch {torch.__version__}, "
        f"{THREADS} thread, {os.cpu_count()} CPU cores",
        flush=True,
    )
    facts = machine_facts()  # before the runs: the commit whose code they import
    results = run_benchmark(args.repeats, args.steps)
    ours, peer = summarize(results, OURS), summarize(results, PEER)
    print_report(ours, peer, args.repeats, args.steps)
    if args.out is None:
        print("\n--quick: docs not written (pass --out PATH to write them).")
        return
    write_doc(args.out, markdown_section(ours, peer, args.repeats, args.steps, facts))
    print(f"\nWrote {args.out}")


if __name__ == "__main__":
    main()
