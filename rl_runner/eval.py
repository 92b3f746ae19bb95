"""python -m rl_runner.eval <run dir or checkpoint> [episodes=20] [deterministic=true]
                          [seed=...] [video=false] [video_episodes=1] [out=...]

Plays episodes of a trained policy: the policy and its normalizer statistics come from the
checkpoint (a run directory's newest), through no training code path. Prints the return and
length statistics and writes eval.json (in the run directory unless `out=` says where). With the
run's seed and its `eval.episodes`, it reproduces the run's final evaluation exactly. With
`video=true` it also records `video_episodes` episodes to MP4 (gymnasium's RecordVideo) in
<run dir>/videos/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from runner_core.evaluation import EVAL_FILE, load_target, parse, report, run_command

PROGRAM = "python -m rl_runner.eval"
DEFAULTS: dict[str, tuple[type, Any]] = {
    "episodes": (int, None),  # the run's eval.episodes
    "deterministic": (bool, True),
    "seed": (int, None),  # the run's evaluation seed (its seed + EVAL_SEED_OFFSET)
    "video": (bool, False),
    "video_episodes": (int, 1),
    "out": (str, None),
}


def load_policy(state: dict[str, Any]) -> tuple[Any, Any]:
    """(config, algorithm) with the checkpoint's networks and normalizers, on the backend that
    wrote it."""
    from rl_runner import fast
    from rl_runner.envs import env_spec
    from runner_core.device import NUMPY_CPU, resolve_device
    from runner_core.validation import algo_class

    cfg = OmegaConf.create(state["config"])
    cfg.setdefault("init_from", None)
    spec = env_spec(cfg.env)
    cls = algo_class(cfg)
    algo_state = state["session"]["algo"]
    if algo_state.get("backend", "torch") == "numpy":
        cls = cls if cls.backend == "numpy" else fast.variant(cls, cfg, spec) or cls
    device = NUMPY_CPU if cls.backend == "numpy" else resolve_device("cpu", cfg.device.threads)
    algo = cls(cfg, spec, device, int(cfg.seed))
    algo.load_learned(algo_state, buffers=False)
    return cfg, algo


def main(argv: list[str]) -> None:
    from rl_runner.collectors import evaluate
    from rl_runner.envs import make_vec_env
    from rl_runner.trainer import EVAL_SEED_OFFSET

    target, options = parse(argv, PROGRAM, DEFAULTS)
    run_dir, ckpt, state = load_target(target)
    cfg, algo = load_policy(state)
    episodes = options["episodes"] or int(cfg.eval.episodes)
    seed = options["seed"] if options["seed"] is not None else int(cfg.seed) + EVAL_SEED_OFFSET
    envs = make_vec_env(cfg.env, min(episodes, 32))
    deterministic = options["deterministic"]
    policy = algo.evaluation_policy(deterministic, np.random.default_rng(seed))
    lengths: list[int] = []
    try:
        returns = evaluate(policy, envs, episodes, seed, lengths=lengths)
    finally:
        envs.close()
    facts = {
        "checkpoint": str(ckpt), "step": int(state["step"]), "env_id": str(cfg.env.id),
        "episodes": episodes, "deterministic": deterministic, "seed": seed,
    }  # fmt: skip
    if options["video"]:
        facts["videos"] = record_videos(cfg, algo, deterministic, seed, options["video_episodes"],
                                        run_dir / "videos", int(state["step"]))  # fmt: skip
    out = Path(options["out"]) if options["out"] else run_dir / EVAL_FILE
    report(f"{cfg.algo.name} on {cfg.env.id}", {"return": returns.tolist(), "length": lengths},
           facts, out)  # fmt: skip


def record_videos(
    cfg: Any, algo: Any, deterministic: bool, seed: int, episodes: int, folder: Path, step: int
) -> list[dict[str, Any]]:
    """`episodes` episodes of one env recorded to MP4 files by gymnasium's RecordVideo: each
    file with the episode's length (its number of frames)."""
    import gymnasium as gym

    from rl_runner.video import play, rendered_env

    prefix = f"eval-step{step}"
    env = gym.wrappers.RecordVideo(rendered_env(cfg.env), str(folder),
                                   episode_trigger=lambda _: True, name_prefix=prefix,
                                   disable_logger=True)  # fmt: skip
    policy = algo.evaluation_policy(deterministic, np.random.default_rng(seed))
    lengths = []
    try:
        for episode in range(episodes):
            lengths.append(play(env, policy, seed + episode, capture=False)[1])
    finally:
        env.close()
    files = sorted(str(p) for p in folder.glob(f"{prefix}-episode-*.mp4"))
    return [{"file": f, "steps": n} for f, n in zip(files, lengths, strict=False)]


if __name__ == "__main__":
    run_command(main)
