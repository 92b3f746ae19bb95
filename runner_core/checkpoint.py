"""Checkpoints: a dict of state_dicts, written atomically and read with weights_only=True.

States hold torch tensors, numpy arrays and plain containers. They are written by `torch.save`,
numpy arrays turned into tensors, or, in a run that never imported torch (the numpy backend), by
`TORCH_FREE_WRITER` in torch's own format. Either way `torch.load(..., weights_only=True)` reads
the file, arrays coming back as tensors, after the zip archive's CRC-32s are checked."""

from __future__ import annotations

import os
import struct
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runner_core.errors import CheckpointError

FORMAT = "rl_runner.checkpoint/1"
CHECKPOINT_DIR = "checkpoints"
LATEST, BEST, FINAL = "latest.pt", "best.pt", "final.pt"
PREVIOUS = "previous.pt"  # the latest.pt before the last one: a fallback if latest.pt is damaged
FILE_MODE = 0o644  # mkstemp creates files 0600; checkpoints are readable like the run's other files


def save_atomic(state: dict[str, Any], path: Path, keep_previous: bool = False) -> None:
    """Write to a temp file in the same directory, fsync, then rename over the target: at every
    moment the target is either the old complete file or the new complete file. With
    `keep_previous` the old file is first renamed to `previous.pt`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            _write({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        if keep_previous and path.exists():
            os.replace(path, path.with_name(PREVIOUS))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# how a run that never imported torch writes its checkpoints (set by the numpy backend,
# `rl_runner.fast`: torch's own file format, written without torch)
TORCH_FREE_WRITER: Callable[[dict[str, Any], Any], None] | None = None


def _write(state: dict[str, Any], f: Any) -> None:
    state = _plain_scalars(state)
    if "torch" not in sys.modules and TORCH_FREE_WRITER is not None:
        TORCH_FREE_WRITER(state, f)
        return
    import torch

    torch.save(_tensors(state), f)


def _plain_scalars(obj: Any) -> Any:
    """The state with numpy scalars (np.float64(...), which `weights_only` loading refuses) as
    Python numbers."""
    if isinstance(obj, dict):
        return {k: _plain_scalars(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [_plain_scalars(v) for v in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


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


def verify(path: Path) -> None:
    """Check a checkpoint's integrity with the CRC-32 that its zip archive stores for every
    member (torch's format and ours are zip files): a flipped or truncated byte is found before
    anything is loaded."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, ValueError, struct.error) as exc:
        raise CheckpointError(
            f"Checkpoint '{path}' is damaged: it is not a complete zip archive ({exc})."
        ) from None
    except OSError as exc:
        raise CheckpointError(
            f"Checkpoint '{path}' cannot be read: {exc.strerror or exc}."
        ) from None
    if bad is not None:
        raise CheckpointError(
            f"Checkpoint '{path}' is damaged: the CRC-32 stored for its member {bad!r} does not "
            "match the data (flipped or overwritten bytes)."
        )


def load(path: Path, mmap: bool = False) -> dict[str, Any]:
    """Load one of our checkpoints after verifying its integrity, or explain why the file is
    not one."""
    import torch

    if not path.is_file():
        raise CheckpointError(f"Checkpoint '{path}' does not exist.")
    verify(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
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


@dataclass
class Found:
    """The newest complete checkpoint of a run directory, and the newer ones that were damaged."""

    path: Path
    state: dict[str, Any]
    damaged: list[str]  # one message per damaged checkpoint that was newer (or unordered)

    @property
    def step(self) -> int:
        return int(self.state["step"])


def order(state: dict[str, Any]) -> tuple[int, float]:
    """Which of two checkpoints of one run is newer: the later step, then the later write (the
    run's wall time at the save, which only grows across a run and its resumptions)."""
    return int(state["step"]), float(state.get("elapsed", 0.0))


def newest(run_dir: Path) -> Found:
    """The newest checkpoint of `run_dir` that is complete and intact, whatever its name."""
    folder = run_dir / CHECKPOINT_DIR
    files = sorted(folder.glob("*.pt")) if folder.is_dir() else []
    good: list[tuple[tuple[int, float], Path, dict[str, Any]]] = []
    damaged: dict[Path, str] = {}
    for path in files:
        try:
            state = load(path, mmap=True)
        except CheckpointError as err:
            damaged[path] = str(err)
            continue
        good.append((order(state), path, state))
    if not good:
        why = " ".join(damaged.values())
        raise CheckpointError(
            f"Run directory '{run_dir}' has no complete checkpoint to resume from"
            + (
                f": {why}"
                if why
                else " (the run stopped before its first checkpoint was written;"
                " checkpoint.every_minutes and checkpoint.every_steps set how often one is)."
            )
        )
    good.sort(key=lambda item: item[0], reverse=True)
    _, path, state = good[0]
    # a damaged file may have been the newest: say so, whatever its name
    return Found(path, state, list(damaged.values()))
