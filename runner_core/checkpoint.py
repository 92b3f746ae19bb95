"""Checkpoints: a dict of state_dicts, written atomically and read with weights_only=True.

States hold torch tensors, numpy arrays and plain containers. A state without tensors (a run on
the numpy CPU path, which never imports torch) is written by `torchfile.dump` in torch's own
format; one with tensors by `torch.save`, its numpy arrays turned into tensors. Either way
`torch.load(..., weights_only=True)` reads the file, arrays coming back as tensors."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from runner_core import torchfile
from runner_core.errors import CheckpointError

FORMAT = "rl_runner.checkpoint/1"
CHECKPOINT_DIR = "checkpoints"
LATEST, BEST, FINAL = "latest.pt", "best.pt", "final.pt"


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """Write to a temp file in the same directory, fsync, then rename over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            _write({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write(state: dict[str, Any], f: Any) -> None:
    if "torch" in sys.modules and _holds_tensors(state):
        import torch

        torch.save(_tensors(state), f)
    else:
        torchfile.dump(state, f)


def _holds_tensors(obj: Any) -> bool:
    import torch

    if isinstance(obj, dict):
        return any(_holds_tensors(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_holds_tensors(v) for v in obj)
    return isinstance(obj, torch.Tensor)


def _tensors(obj: Any) -> Any:
    """The state with its numpy arrays as tensors (what `weights_only` loading accepts)."""
    import torch

    if isinstance(obj, dict):
        return {k: _tensors(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [_tensors(v) for v in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.require(obj, requirements="CW"))
    return obj


def load(path: Path) -> dict[str, Any]:
    """Load one of our checkpoints, or explain why the file is not one."""
    import torch

    if not path.is_file():
        raise CheckpointError(f"Checkpoint '{path}' does not exist.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"Checkpoint '{path}' cannot be read: it is corrupt, truncated or not a file written "
            f"by this runner ({reason[:200]})."
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"Checkpoint '{path}' is not one of this runner's checkpoints (format {found!r}, "
            f"expected {FORMAT!r}). Pass a run directory under outputs/ or a file in its "
            f"{CHECKPOINT_DIR}/ folder."
        )
    return state


def resolve_resume_target(target: str) -> tuple[Path, Path]:
    """`resume=` accepts a run directory (its latest checkpoint) or a checkpoint file.
    Returns (run_dir, checkpoint_file)."""
    path = Path(target).expanduser()
    if path.is_dir():
        ckpt = path / CHECKPOINT_DIR / LATEST
        if not ckpt.is_file():
            ckpt_final = path / CHECKPOINT_DIR / FINAL
            if ckpt_final.is_file():
                ckpt = ckpt_final
            else:
                raise CheckpointError(
                    f"resume={target!r}: the directory has no {CHECKPOINT_DIR}/{LATEST}; it is "
                    "not a run directory of this runner, or the run stopped before its first "
                    "checkpoint."
                )
        return path, ckpt
    if path.is_file():
        run_dir = path.parent.parent if path.parent.name == CHECKPOINT_DIR else path.parent
        return run_dir, path
    raise CheckpointError(
        f"resume={target!r}: no such run directory or checkpoint file. Pass a run directory "
        "under outputs/ (e.g. resume=outputs/2026-01-01/12-00-00_ppo_cartpole) or a .pt file "
        f"in its {CHECKPOINT_DIR}/ folder."
    )
