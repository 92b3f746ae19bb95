"""Episodes rendered to video: frames from the env's `rgb_array` rendering, written to MP4 by
imageio's ffmpeg plugin (the encoder gymnasium's RecordVideo uses, through moviepy)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from runner_core.errors import ConfigError

MAX_FRAMES = 2000  # a longer episode is cut in the video (frames are held in memory)


def rendered_env(env_cfg: Any) -> Any:
    """One env of the run's config that renders `rgb_array` frames."""
    import gymnasium as gym

    from rl_runner.envs import make_kwargs, resolve_id

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame renders off-screen: no display
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    spec = resolve_id(env_cfg.id)
    try:
        return gym.make(spec.id, render_mode="rgb_array", **make_kwargs(env_cfg))
    except (gym.error.DependencyNotInstalled, ImportError) as exc:
        raise ConfigError(_missing(exc)) from None


def _missing(exc: BaseException) -> str:
    return (
        f"Recording video needs the video extra ({str(exc).strip().splitlines()[0]}). Install "
        'it with: .venv/bin/pip install -e ".[video]" (pygame to render, moviepy and '
        "imageio-ffmpeg to encode)."
    )


def play(
    env: Any, policy: Callable[[np.ndarray], np.ndarray], seed: int, capture: bool = True
) -> tuple[list[np.ndarray], int]:
    """One episode of `policy` (a batch policy, given one observation at a time): its frames,
    one per step, if `capture` (a RecordVideo wrapper captures its own), and its length."""
    import gymnasium as gym

    frames = []
    obs, _ = env.reset(seed=seed)
    done, steps = False, 0
    try:
        while not done and steps < MAX_FRAMES:
            obs, _, terminated, truncated, _ = env.step(policy(np.asarray(obs)[None])[0])
            steps += 1
            if capture:
                frames.append(env.render())
            done = terminated or truncated
    except gym.error.DependencyNotInstalled as exc:
        raise ConfigError(_missing(exc)) from None
    return frames, steps


def write_mp4(path: Path, frames: list[np.ndarray], fps: float) -> None:
    try:
        import imageio.v2 as imageio
    except ImportError as exc:
        raise ConfigError(_missing(exc)) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, frames, fps=fps, codec="libx264", macro_block_size=8)


def thumbnail(
    frames: list[np.ndarray], fps: float, max_side: int = 200, max_frames: int = 250
) -> tuple[np.ndarray, float]:
    """Frames shrunk for TensorBoard's animation, (T, H, W, 3) uint8 (every k-th pixel and
    every n-th frame), and the frame rate that keeps it in real time."""
    n = max(1, -(-len(frames) // max_frames))
    clip = np.stack(frames[::n])
    k = max(1, -(-max(clip.shape[1:3]) // max_side))
    return np.ascontiguousarray(clip[:, ::k, ::k, :3]), fps / n
