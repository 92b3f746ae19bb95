"""`torchfile.dump`: torch's checkpoint format written from numpy arrays without torch, read back
by `torch.load(weights_only=True)` (and memory-mapped), and how `checkpoint.save_atomic` picks
between it and `torch.save`."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from rl_runner.fast import torchfile
from runner_core import checkpoint


def _dumped(obj) -> bytes:
    f = io.BytesIO()
    torchfile.dump(obj, f)
    return f.getvalue()


def _load(data: bytes, **kwargs):
    return torch.load(io.BytesIO(data), weights_only=True, **kwargs)


DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int32, np.int16, np.int8, np.uint8,
          np.bool_]  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_arrays_load_as_equal_tensors(dtype):
    rng = np.random.default_rng(0)
    arrays = {
        "matrix": (rng.standard_normal((3, 5)) * 50).astype(dtype),
        "scalar": np.array(7, dtype=dtype),  # 0-d stays 0-d
        "empty": np.zeros((0, 4), dtype=dtype),
        "strided": (rng.standard_normal((6, 4)) * 50).astype(dtype)[::2, ::-1],  # not contiguous
        "big_endian": np.arange(4).astype(np.dtype(dtype).newbyteorder(">")),
    }
    loaded = _load(_dumped(arrays))
    for name, array in arrays.items():
        tensor = loaded[name]
        assert isinstance(tensor, torch.Tensor), name
        assert tensor.shape == array.shape, name
        assert tensor.numpy().dtype == np.dtype(dtype).newbyteorder("="), name
        np.testing.assert_array_equal(tensor.numpy(), array, err_msg=name)


def test_containers_and_scalars_round_trip():
    state = {
        "format": "rl_runner.checkpoint/1",
        "ints": [0, -1, 2**31 - 1, -(2**31), 2**31, -(2**31) - 1, 2**127 + 5, -(2**100)],
        "floats": [0.0, -2.5, 1e-300, float("inf")],
        "misc": (None, True, False, "naïve ✓", (), [], {}),
        "rng": np.random.default_rng(3).bit_generator.state,  # 128-bit integers
        "np_scalars": [np.int64(5), np.float32(0.25)],
    }
    loaded = _load(_dumped(state))
    assert loaded["ints"] == state["ints"]
    assert loaded["floats"] == state["floats"]
    assert loaded["misc"] == state["misc"]
    assert loaded["rng"] == state["rng"]
    assert loaded["np_scalars"] == [5, 0.25]
    assert np.isnan(_load(_dumped([float("nan")]))[0])


def test_storages_are_aligned_for_memory_mapping(tmp_path):
    arrays = {f"w{i}": np.arange(i + 1, dtype=np.float32) for i in range(5)}
    path = tmp_path / "c.pt"
    path.write_bytes(_dumped({"a": arrays, "note": "x" * 37}))
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        assert names[0] == "archive/data.pkl" and "archive/version" in names
    loaded = torch.load(path, weights_only=True, mmap=True)
    for name, array in arrays.items():
        np.testing.assert_array_equal(loaded["a"][name].numpy(), array)


def test_other_objects_are_refused():
    with pytest.raises(TypeError, match="set"):
        _dumped({"a": {1, 2}})
    with pytest.raises(TypeError, match="complex"):
        _dumped({"a": np.zeros(2, dtype=np.complex64)})


def test_a_run_without_torch_writes_torchs_format_itself(tmp_path):
    """Where torch was never imported (the numpy backend), checkpoints are written by torchfile;
    torch.load reads them. With torch imported, torch.save writes them, arrays as tensors."""
    script = (
        "import sys, numpy as np, rl_runner.fast; from pathlib import Path; "
        "from runner_core import checkpoint; "
        "checkpoint.save_atomic({'w': np.arange(3, dtype=np.float32), 'step': 4}, "
        f"Path({str(tmp_path / 'numpy.pt')!r})); assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    with zipfile.ZipFile(tmp_path / "numpy.pt") as archive:
        # torchfile's records (torch.save also writes a serialization id)
        assert "archive/.data/serialization_id" not in archive.namelist()
    loaded = checkpoint.load(tmp_path / "numpy.pt")
    assert torch.equal(loaded["w"], torch.arange(3.0)) and loaded["step"] == 4

    mixed = {"t": torch.ones(2), "a": np.arange(2), "nested": [np.zeros((1, 2))]}
    checkpoint.save_atomic(mixed, tmp_path / "mixed.pt")  # torch.save; arrays become tensors
    with zipfile.ZipFile(tmp_path / "mixed.pt") as archive:
        assert "archive/.data/serialization_id" in archive.namelist()
    loaded = checkpoint.load(tmp_path / "mixed.pt")
    assert torch.equal(loaded["t"], torch.ones(2))
    assert torch.equal(loaded["a"], torch.arange(2))
    assert torch.equal(loaded["nested"][0], torch.zeros(1, 2, dtype=torch.float64))
