"""Checkpoints: atomic save, integrity-checked weights-only load, the errors for missing, foreign
and damaged files, and which checkpoint of a run is the newest."""

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
        "metrics": {"offset": 99, "tail": "0a"},
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
    with pytest.raises(CheckpointError, match=r"damaged: it is not a complete zip archive"):
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
    with pytest.raises(CheckpointError, match="damaged"):
        checkpoint.load(path)


def test_load_is_weights_only(tmp_path):
    """A pickle with arbitrary objects is refused, even when it claims our format."""
    path = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "x": Arbitrary()}, path)
    with pytest.raises(CheckpointError, match="cannot be read"):
        checkpoint.load(path)


def _flip_middle(path, count=64):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for i in range(middle, middle + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("tensors", [True, False], ids=["torch.save", "torchfile"])
def test_flipped_bytes_are_found_before_loading(tmp_path, tensors):
    """64 bytes flipped in the middle of a checkpoint used to load silently (Adam's moments came
    back as garbage); the zip's CRC-32s catch it, for both writers."""
    path = tmp_path / "latest.pt"
    weights = torch.arange(20_000.0) if tensors else __import__("numpy").arange(20_000.0)
    checkpoint.save_atomic({**_state(), "session": {"w": weights}}, path)
    checkpoint.load(path)  # intact: loads
    _flip_middle(path)
    with pytest.raises(CheckpointError, match="damaged: the CRC-32 stored for its member"):
        checkpoint.load(path)


def test_keep_previous_rotates_latest(tmp_path):
    path = tmp_path / "latest.pt"
    checkpoint.save_atomic({**_state(), "step": 1}, path, keep_previous=True)
    assert not (tmp_path / checkpoint.PREVIOUS).exists()
    checkpoint.save_atomic({**_state(), "step": 2}, path, keep_previous=True)
    assert checkpoint.load(path)["step"] == 2
    assert checkpoint.load(tmp_path / checkpoint.PREVIOUS)["step"] == 1
    assert oct(path.stat().st_mode & 0o777) == "0o644"  # as readable as the run's other files


def test_newest_is_by_step_whatever_the_name(tmp_path):
    run = tmp_path / "run"
    folder = run / "checkpoints"
    with pytest.raises(CheckpointError, match="stopped before its first checkpoint"):
        checkpoint.newest(run)
    checkpoint.save_atomic({**_state(), "step": 300, "elapsed": 3.0}, folder / "best.pt")
    checkpoint.save_atomic({**_state(), "step": 200, "elapsed": 2.0}, folder / "latest.pt")
    found = checkpoint.newest(run)
    assert (found.path.name, found.step, found.damaged) == ("best.pt", 300, [])
    # the same step: the later write wins
    checkpoint.save_atomic({**_state(), "step": 300, "elapsed": 3.5}, folder / "final.pt")
    assert checkpoint.newest(run).path.name == "final.pt"


def test_newest_falls_back_past_damaged_files(tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    checkpoint.save_atomic({**_state(), "step": 100}, folder / "latest.pt", keep_previous=True)
    checkpoint.save_atomic({**_state(), "step": 200}, folder / "latest.pt", keep_previous=True)
    _flip_middle(folder / "latest.pt", count=16)
    found = checkpoint.newest(tmp_path / "run")
    assert (found.path.name, found.step) == ("previous.pt", 100)
    assert len(found.damaged) == 1 and "latest.pt' is damaged" in found.damaged[0]
    _flip_middle(folder / "previous.pt", count=16)
    with pytest.raises(CheckpointError, match=r"no complete checkpoint.*latest\.pt.*previous\.pt"):
        checkpoint.newest(tmp_path / "run")


def test_numpy_scalars_are_saved_as_numbers(tmp_path):
    """np.float64(...) in a state (a 0-d running statistic) made every checkpoint of a run
    unreadable with weights_only loading."""
    import numpy as np

    path = tmp_path / "c.pt"
    checkpoint.save_atomic({**_state(), "stat": {"mean": np.float64(1.5), "n": np.int64(3)}},
                           path)  # fmt: skip
    assert checkpoint.load(path)["stat"] == {"mean": 1.5, "n": 3}
