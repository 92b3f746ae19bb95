"""TensorBoard event files, written in the training thread with only TensorBoard's protobuf
messages (text and HParams summaries) and, for the scalars logged every update, events encoded
directly (`scalar_event`: the same bytes, without building messages), framed as TFRecords.

Why not `torch.utils.tensorboard.SummaryWriter`: its background thread computes each record's
CRC32C in pure Python while it holds the GIL, so the training loop keeps waiting for the GIL
behind it, and it needs torch, which runs on the numpy backend never import. Why not
TensorBoard's own `RecordWriter`: importing it pulls in `tensorboard.summary` with every plugin,
more start-up than the messages alone (`event_pb2`, the text and HParams plugins' `*_pb2`).
Checksums come from google-crc32c (C). Images are the exception: they need PNG encoding and
come from torch's TensorBoard summary code (DL runs have torch anyway).

File format (what TensorBoard reads): the file name `events.out.tfevents.<time>.<host>.<pid>.<n>`,
then one TFRecord per `Event` message: uint64 length, uint32 masked CRC32C of the length bytes,
the serialized event, uint32 masked CRC32C of the event (all little-endian).
"""

from __future__ import annotations

import itertools
import math
import os
import socket
import struct
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import google_crc32c

# TensorBoard's HParams plugin: its plugin name, data version and the tags it looks for
# (tensorboard/plugins/hparams/metadata.py; part of the event file format)
HPARAMS_PLUGIN, HPARAMS_VERSION = "hparams", 0
EXPERIMENT_TAG = "_hparams_/experiment"
SESSION_START_TAG = "_hparams_/session_start_info"
SESSION_END_TAG = "_hparams_/session_end_info"


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), from google-crc32c's C implementation (hardware-accelerated where
    the CPU has the instruction)."""
    return google_crc32c.value(data)


def masked_crc32c(data: bytes) -> int:
    """The TFRecord checksum: CRC-32C rotated right by 15 bits plus a constant (mod 2^32)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


_HEADERS: dict[int, bytes] = {}  # record length -> its 12 header bytes (lengths repeat)


def tfrecord(data: bytes) -> bytes:
    header = _HEADERS.get(len(data))
    if header is None:
        length = struct.pack("<Q", len(data))
        header = _HEADERS[len(data)] = length + struct.pack("<I", masked_crc32c(length))
    return header + data + struct.pack("<I", masked_crc32c(data))


# Scalar events encoded directly: the bytes protobuf would write for
#   Event{wall_time: 1 (double), step: 2 (int64), summary: 5 {value: 1 (repeated) {tag: 1,
#   simple_value: 2 (float, in a oneof, so written even when 0)}}}
# (fields in number order, a zero step left out as proto3 does; the tests compare the two byte
# for byte). Building the messages was about half of logging a PPO update's scalars.
_F32, _F64 = struct.Struct("<f"), struct.Struct("<d")
_VALUE_PREFIX: dict[str, bytes] = {}  # tag -> the Value's key, length, tag field and float key


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _float32(value: float) -> bytes:
    try:
        return _F32.pack(value)
    except OverflowError:  # beyond float32's range: protobuf stores an infinity
        return _F32.pack(math.copysign(math.inf, value))


def scalar_event(values: dict[str, float], step: int, wall_time: float) -> bytes:
    """A serialized `Event` with one `Summary` of simple values: what
    `Event(summary=scalars_summary(values), step=step, wall_time=wall_time)` serializes to."""
    parts = []
    for tag, value in values.items():
        prefix = _VALUE_PREFIX.get(tag)
        if prefix is None:
            name = tag.encode("utf-8")
            field = b"\x0a" + _varint(len(name)) + name
            prefix = _VALUE_PREFIX[tag] = b"\x0a" + _varint(len(field) + 5) + field + b"\x15"
        parts.append(prefix + _float32(value))
    summary = b"".join(parts)
    head = b"\x09" + _F64.pack(wall_time)
    if step:
        head += b"\x10" + _varint(step)
    return head + b"\x2a" + _varint(len(summary)) + summary


class EventFile:
    """One TensorBoard event file. Events are written as they come and the file is flushed
    every `flush_secs` (so a TensorBoard watching the run sees it progress), whenever the run
    asks (checkpoints) and when closed. With `purge_step` (a resumed run) TensorBoard hides
    what earlier files of the directory logged at steps >= purge_step."""

    _ids = itertools.count()  # distinguishes files opened in the same second by one process

    def __init__(self, logdir: Path, purge_step: int | None = None, flush_secs: float = 10.0):
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog

        name = (
            f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
            f"{os.getpid()}.{next(self._ids)}"
        )
        self.path = logdir / name
        self._file = self.path.open("wb")
        self._event = Event
        self._flush_secs = flush_secs
        self._write(Event(wall_time=time.time(), file_version="brain.Event:2"))
        if purge_step is not None:
            self._write(Event(step=purge_step, file_version="brain.Event:2"))
            start = SessionLog(status=SessionLog.START)
            self._write(Event(step=purge_step, wall_time=time.time(), session_log=start))
        self.flush()

    def add_scalars(self, values: dict[str, float], step: int) -> None:
        """One event with `values` as scalars at `step` (see `scalar_event`)."""
        if step < 0:  # a negative int64 is not what `_varint` writes; protobuf knows how
            self.add_summary(scalars_summary(values), step)
            return
        now = time.time()
        self._file.write(tfrecord(scalar_event(values, step, now)))
        if now - self._last_flush >= self._flush_secs:
            self.flush()

    def add_summary(self, summary: Any, step: int | None = None) -> None:
        event = self._event(summary=summary, wall_time=time.time())
        if step is not None:
            event.step = int(step)
        self._write(event)
        if event.wall_time - self._last_flush >= self._flush_secs:
            self.flush()

    def _write(self, event: Any) -> None:
        self._file.write(tfrecord(event.SerializeToString()))

    def flush(self) -> None:
        self._file.flush()
        self._last_flush = time.time()

    def close(self) -> None:
        self._file.close()


def scalars_summary(values: dict[str, float]) -> Any:
    """One `Summary` holding several scalars (TensorBoard reads each as its own tag's)."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    return Summary(value=[Summary.Value(tag=k, simple_value=v) for k, v in values.items()])


def text_summary(tag: str, text: str) -> Any:
    """Text for TensorBoard's Text tab, under `<tag>/text_summary` (markdown is rendered)."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.compat.proto.tensor_pb2 import TensorProto
    from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
    from tensorboard.plugins.text.plugin_data_pb2 import TextPluginData

    metadata = SummaryMetadata(
        plugin_data=SummaryMetadata.PluginData(
            plugin_name="text", content=TextPluginData(version=0).SerializeToString()
        )
    )
    tensor = TensorProto(
        dtype="DT_STRING",
        string_val=[text.encode("utf-8")],
        tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)]),
    )
    return Summary(
        value=[Summary.Value(tag=f"{tag}/text_summary", metadata=metadata, tensor=tensor)]
    )


def hparams_summaries(hparams: dict[str, bool | int | float | str], metrics: Iterable[str]) -> list:
    """The three summaries of TensorBoard's HParams tab for one run: the experiment (which
    hyper-parameters and metrics there are), the session's start (its values) and its end
    (status: success). The metrics' values are logged as ordinary scalars."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import api_pb2
    from tensorboard.plugins.hparams.plugin_data_pb2 import (
        HParamsPluginData,
        SessionEndInfo,
        SessionStartInfo,
    )

    start = SessionStartInfo()
    infos = []
    for name, value in hparams.items():
        if isinstance(value, bool):  # before int: a bool is an int
            start.hparams[name].bool_value = value
            kind = "DATA_TYPE_BOOL"
        elif isinstance(value, int | float):
            start.hparams[name].number_value = value
            kind = "DATA_TYPE_FLOAT64"
        elif isinstance(value, str):
            start.hparams[name].string_value = value
            kind = "DATA_TYPE_STRING"
        else:
            raise TypeError(f"hyper-parameter {name!r}: {value!r} is not a bool, number or str")
        infos.append(api_pb2.HParamInfo(name=name, type=api_pb2.DataType.Value(kind)))
    experiment = api_pb2.Experiment(
        hparam_infos=infos,
        metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag)) for tag in metrics],
    )
    end = SessionEndInfo(status=api_pb2.Status.Value("STATUS_SUCCESS"))

    def summary(tag: str, data: HParamsPluginData) -> Summary:
        data.version = HPARAMS_VERSION
        metadata = SummaryMetadata(
            plugin_data=SummaryMetadata.PluginData(
                plugin_name=HPARAMS_PLUGIN, content=data.SerializeToString()
            )
        )
        return Summary(value=[Summary.Value(tag=tag, metadata=metadata)])

    return [
        summary(EXPERIMENT_TAG, HParamsPluginData(experiment=experiment)),
        summary(SESSION_START_TAG, HParamsPluginData(session_start_info=start)),
        summary(SESSION_END_TAG, HParamsPluginData(session_end_info=end)),
    ]
