"""Checkpoints: atomic save, weights-only load, and the errors for missing, foreign and corrupt
files; what `resume=` accepts."""

from __future__ import annotations

import pytest
import torch

from runner_core import checkpoint
from runner_core.errors import CheckpointError


class Arbitrary:
    """Any class torch's weights-only unpickler does not allow."""


def _state():
    return {
        "config": {"algo": {"lr": 0.001, "hidden": [64, 64]}, "resume": None},
        "session": {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "epoch": 3},
        "rng": {"torch": torch.get_rng_state(), "python": [3, [1, 2, 3], None]},
        "step": 1234,
        "elapsed": 1.5,
        "metrics_offset": 99,
    }


def test_save_and_load_round_trip(tmp_path):
    path = tmp_path / "checkpoints" / "latest.pt"
    checkpoint.save_atomic(_state(), path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["latest.pt"]  # no temp file left
    state = checkpoint.load(path)
    assert state["format"] == checkpoint.FORMAT
    assert state["step"] == 1234
    assert state["config"] == _state()["config"]
    assert torch.equal(state["session"]["model"]["w"], torch.arange(6.0).reshape(2, 3))
    assert torch.equal(state["rng"]["torch"], _state()["rng"]["torch"])


def test_save_replaces_atomically(tmp_path):
    path = tmp_path / "latest.pt"
    checkpoint.save_atomic({**_state(), "step": 1}, path)
    checkpoint.save_atomic({**_state(), "step": 2}, path)
    assert checkpoint.load(path)["step"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]


def test_failed_save_keeps_the_old_file(tmp_path):
    path = tmp_path / "latest.pt"
    checkpoint.save_atomic({**_state(), "step": 1}, path)
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - whatever torch raises for an unpicklable value
        checkpoint.save_atomic({"bad": lambda: None}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]


def test_load_missing(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.load(tmp_path / "nope.pt")


def test_load_text_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    with pytest.raises(CheckpointError, match=r"cannot be read.*corrupt, truncated or not a file"):
        checkpoint.load(path)


def test_load_foreign_torch_file(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"a": 1}, path)
    with pytest.raises(CheckpointError, match="not one of this runner's checkpoints") as err:
        checkpoint.load(path)
    assert checkpoint.FORMAT in str(err.value)
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="format 'list'"):
        checkpoint.load(path)


def test_load_truncated(tmp_path):
    path = tmp_path / "latest.pt"
    checkpoint.save_atomic(_state(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot be read"):
        checkpoint.load(path)


def test_load_is_weights_only(tmp_path):
    """A pickle with arbitrary objects is refused, even when it claims our format."""
    path = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "x": Arbitrary()}, path)
    with pytest.raises(CheckpointError, match="cannot be read"):
        checkpoint.load(path)


def test_resolve_resume_target(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError, match=r"has no checkpoints/latest\.pt"):
        checkpoint.resolve_resume_target(str(run))
    (run / "checkpoints" / "final.pt").write_bytes(b"x")
    assert checkpoint.resolve_resume_target(str(run)) == (run, run / "checkpoints" / "final.pt")
    (run / "checkpoints" / "latest.pt").write_bytes(b"x")
    assert checkpoint.resolve_resume_target(str(run)) == (run, run / "checkpoints" / "latest.pt")
    best = run / "checkpoints" / "best.pt"
    best.write_bytes(b"x")
    assert checkpoint.resolve_resume_target(str(best)) == (run, best)
    loose = tmp_path / "loose.pt"
    loose.write_bytes(b"x")
    assert checkpoint.resolve_resume_target(str(loose)) == (tmp_path, loose)
    with pytest.raises(CheckpointError, match="no such run directory or checkpoint file"):
        checkpoint.resolve_resume_target(str(tmp_path / "missing"))
