"""The metrics logger (jsonl records, resume truncation), hparams flattening, the cadence
predicate, devices and seeding."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

from runner_core.device import resolve_device
from runner_core.errors import CheckpointError, DeviceError
from runner_core.metrics import MetricLogger, flatten_hparams, reconcile
from runner_core.run import Run
from runner_core.seeding import rng_state, seed_everything, set_rng_state


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_records(tmp_path):
    logger = MetricLogger(tmp_path, tensorboard=False)
    logger.log(1, {"losses/a": 1, "losses/b": np.float32(0.5)})
    logger.log(2, {})  # nothing to write
    logger.log(3, {"losses/a": float("nan"), "losses/b": float("inf")})
    logger.close()
    records = _lines(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 3]
    assert records[0]["losses/a"] == 1.0
    assert records[0]["losses/b"] == 0.5
    assert "wall_time" in records[0]
    assert records[1]["losses/a"] == "nan"  # strict JSON: non-finite values as strings
    assert records[1]["losses/b"] == "inf"
    assert logger.last == {
        "losses/a": pytest.approx(float("nan"), nan_ok=True),
        "losses/b": float("inf"),
    }


def test_resume_truncates_to_the_checkpoint_mark(tmp_path):
    logger = MetricLogger(tmp_path, tensorboard=False)
    logger.log(1, {"x": 1.0})
    mark = logger.mark()
    logger.log(2, {"x": 2.0})  # written after the checkpoint: cut back on resume
    logger.close()
    path = tmp_path / "metrics.jsonl"
    assert reconcile(path, mark, step=1) is None
    resumed = MetricLogger(tmp_path, tensorboard=False, resume_step=2)
    resumed.log(2, {"x": 20.0})
    resumed.close()
    assert [(r["step"], r["x"]) for r in _lines(path)] == [(1, 1.0), (2, 20.0)]


def test_a_file_shorter_than_the_mark_is_refused_never_padded(tmp_path):
    """Emptied or restored from an older backup, metrics.jsonl used to be padded with NUL bytes
    up to the stored offset; now the resume is refused and the file left as it is."""
    logger = MetricLogger(tmp_path, tensorboard=False)
    for step in range(1, 50):
        logger.log(step, {"x": float(step)})
    mark = logger.mark()
    logger.close()
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(path.read_bytes()[:100])  # a backup from earlier
    with pytest.raises(CheckpointError, match=r"no longer matches.*now holds 100 bytes.*mv "):
        reconcile(path, mark, step=49)
    assert path.stat().st_size == 100 and b"\0" not in path.read_bytes()
    path.write_bytes(b"")  # emptied
    with pytest.raises(CheckpointError, match="now holds 0 bytes"):
        reconcile(path, mark, step=49)


def test_a_file_edited_before_the_mark_is_refused(tmp_path):
    logger = MetricLogger(tmp_path, tensorboard=False)
    for step in range(1, 5):
        logger.log(step, {"x": float(step)})
    mark = logger.mark()
    logger.close()
    path = tmp_path / "metrics.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    edited = "".join(lines[:-1]) + lines[-1].replace('"x": 4.0', '"x": 9.0') + "extra\n" * 50
    path.write_text(edited)
    with pytest.raises(CheckpointError, match="differs in its last lines before it"):
        reconcile(path, mark, step=4)
    assert path.read_text() == edited


def test_a_missing_file_starts_anew(tmp_path):
    assert reconcile(tmp_path / "metrics.jsonl", {"offset": 10, "tail": "0a"}, step=7) == (
        "metrics.jsonl was missing: a new one starts at step 7."
    )
    assert reconcile(tmp_path / "metrics.jsonl", {"offset": 0, "tail": ""}, step=7) is None


def test_the_mark_describes_the_file_also_when_this_run_does_not_write_it(tmp_path):
    """With logger.jsonl=false the checkpoint's mark is of the file as it is (history written by
    earlier segments), never offset 0: a later resume with jsonl on cannot cut that history."""
    first = MetricLogger(tmp_path, tensorboard=False)
    first.log(1, {"x": 1.0})
    first.close()
    size = (tmp_path / "metrics.jsonl").stat().st_size
    quiet = MetricLogger(tmp_path, tensorboard=False, jsonl=False)
    quiet.log(2, {"x": 2.0})
    assert quiet.mark()["offset"] == size
    quiet.close()


def test_tensorboard_events(tmp_path):
    logger = MetricLogger(tmp_path, jsonl=False)
    logger.log(1, {"x": 1.0})
    logger.close()
    assert list(tmp_path.glob("events.out.tfevents.*"))
    assert not (tmp_path / "metrics.jsonl").exists()


def test_flatten_hparams():
    tree = {"algo": {"lr": 0.1, "hidden": [64, 64], "flag": True, "none": None}, "seed": 3}
    assert flatten_hparams(tree) == {
        "algo.lr": 0.1,
        "algo.hidden": "[64, 64]",
        "algo.flag": True,
        "seed": 3,
    }


def test_every():
    due = Run.every(None, 100, 0)
    assert [s for s in range(0, 501, 50) if due(s)] == [100, 200, 300, 400, 500]
    jumpy = Run.every(None, 100, 0)
    assert [s for s in (64, 128, 192, 256, 320, 384) if jumpy(s)] == [128, 256, 320]
    resumed = Run.every(None, 100, 250)  # a resumed run's first due point is the next multiple
    assert [s for s in (260, 300, 399, 400) if resumed(s)] == [300, 400]
    never = Run.every(None, 0, 0)
    assert not any(never(s) for s in range(0, 10_000, 500))


def test_cpu_device():
    assert resolve_device("cpu", 1) == torch.device("cpu")
    assert resolve_device("auto", 1).type in ("cpu", "cuda", "mps")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_unavailable_is_a_clear_error():
    with pytest.raises(DeviceError, match="'device' is 'cuda', but CUDA is not available"):
        resolve_device("cuda", 1)


def test_seeding_and_rng_state_round_trip():
    seed_everything(5)
    state = rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    b = (random.random(), np.random.rand(), torch.rand(1).item())
    assert a == b
    seed_everything(5)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def _tensorboard_scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_scalars_read_back(tmp_path):
    logger = MetricLogger(tmp_path, jsonl=False)
    logger.log(10, {"charts/episodic_return": 12.0, "losses/value_loss": 0.25})
    logger.log(20, {"charts/episodic_return": 15.5})
    logger.close()
    assert _tensorboard_scalars(tmp_path) == {
        "charts/episodic_return": [(10, 12.0), (20, 15.5)],
        "losses/value_loss": [(10, 0.25)],
    }


def test_tensorboard_resume_purges_later_steps(tmp_path):
    first = MetricLogger(tmp_path, jsonl=False)
    for step in (1, 2, 3):
        first.log(step, {"losses/a": float(step)})
    first.close()
    again = MetricLogger(tmp_path, jsonl=False, resume_step=3)  # checkpoint was at step 2
    again.log(3, {"losses/a": 30.0})
    again.close()
    assert _tensorboard_scalars(tmp_path)["losses/a"] == [(1, 1.0), (2, 2.0), (3, 30.0)]


def test_tensorboard_text_and_hparams_read_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = MetricLogger(tmp_path, jsonl=False)
    logger.text("config", "algo: ppo")
    logger.log(5, {"losses/a": 1.0})
    logger.hparams({"algo.lr": 0.001, "algo.name": "ppo"}, {"hparams/objective": 475.0})
    logger.close()
    acc = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    assert "config/text_summary" in acc.Tags()["tensors"]
    text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert text == "algo: ppo"
    assert [(e.step, e.value) for e in acc.Scalars("hparams/objective")] == [(0, 475.0)]
    hparams = acc.PluginTagToContent("hparams")  # experiment, session start and end
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(hparams)


def test_tensorboard_events_are_written_in_the_callers_thread(tmp_path):
    """No background writer: what is logged is in the file once flushed, and the writer flushes
    on its own every flush_secs (here: at once)."""
    from runner_core.events import EventFile, scalars_summary

    events = EventFile(tmp_path, flush_secs=0.0)
    size = events.path.stat().st_size
    events.add_summary(scalars_summary({"x": 1.0}), step=1)
    assert events.path.stat().st_size > size
    events.close()


def test_crc32c_and_tfrecord_framing():
    """The checksums TensorBoard verifies: CRC-32C's check value, TensorBoard's own masked CRC
    on assorted data, and a record's layout (length, its CRC, the data, the data's CRC)."""
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as reference

    from runner_core.events import crc32c, masked_crc32c, tfrecord

    assert crc32c(b"123456789") == 0xE3069283
    rng = np.random.default_rng(0)
    for size in (0, 1, 6, 8, 31, 400, 4096):  # every remainder of the 4-byte steps
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        assert masked_crc32c(data) == reference(data)
    record = tfrecord(b"payload")
    assert len(record) == 8 + 4 + len(b"payload") + 4
    assert record[12:-4] == b"payload"


def test_tensorboard_reads_the_hparams_values(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    logger = MetricLogger(tmp_path, jsonl=False)
    values = {"algo.lr": 0.001, "algo.name": "ppo", "algo.anneal_lr": True, "seed": 3}
    logger.hparams(values, {"hparams/objective": 1.0})
    logger.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert start.hparams["algo.lr"].number_value == 0.001
    assert start.hparams["algo.name"].string_value == "ppo"
    assert start.hparams["algo.anneal_lr"].bool_value is True
    assert start.hparams["seed"].number_value == 3
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        acc.PluginTagToContent("hparams")["_hparams_/experiment"]
    ).experiment
    assert [m.name.tag for m in experiment.metric_infos] == ["hparams/objective"]


@pytest.mark.parametrize("step", [0, 1, 127, 128, 300_000, 2**40])
def test_scalar_events_are_what_protobuf_writes(step):
    """`scalar_event` encodes by hand exactly the bytes of the protobuf messages, for tags of
    any length and values of every kind (zero, negative, tiny, beyond float32, inf and NaN)."""
    from tensorboard.compat.proto.event_pb2 import Event

    from runner_core.events import scalar_event, scalars_summary

    values = {
        "losses/policy_loss": -0.0123,
        "charts/sps": 21078.5,
        "x": 0.0,
        "eval/" + "long_tag_" * 20: 1e-42,
        "big": 1e300,
        "inf": -math.inf,
        "nan": math.nan,
    }
    wall_time = 1795443218.734
    expected = Event(summary=scalars_summary(values), step=step, wall_time=wall_time)
    assert scalar_event(values, step, wall_time) == expected.SerializeToString()
