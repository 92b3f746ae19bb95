"""One metrics logger for every run: TensorBoard event files, metrics.jsonl and the console.

Algorithms return dicts of floats; only this module writes them anywhere. Tag names are frozen
(see the README): RL `charts/*`, `losses/*`, `eval/*`; DL `train/*`, `val/*`, `test/*`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from runner_core.errors import CheckpointError
from runner_core.events import EventFile, hparams_summaries, scalars_summary, text_summary

METRICS_FILE = "metrics.jsonl"
IMAGES_DIR = "images"
WALL_CLOCK_KEYS = ("wall_time", "charts/sps")  # differ between otherwise identical runs


TAIL_BYTES = 256  # how much of metrics.jsonl before a checkpoint's mark the checkpoint keeps


class MetricLogger:
    """Writes scalars with their step.

    Every checkpoint stores a mark of metrics.jsonl (`mark()`: its size and its last bytes at that
    moment, after flushing TensorBoard's events too). On resume `reconcile` cuts back exactly
    what the run wrote after its checkpoint, and TensorBoard is told to purge later events, so
    curves continue without gaps or duplicated steps even after a hard kill. A file that no
    longer matches the mark is never cut or padded: the resume is refused instead."""

    def __init__(
        self,
        run_dir: Path,
        tensorboard: bool = True,
        jsonl: bool = True,
        resume_step: int | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.path = run_dir / METRICS_FILE
        self._start = time.time()
        self.wall_time_before = 0.0  # wall time of the run's earlier segments (resumed runs)
        self._events: EventFile | None = None
        if tensorboard:
            self._events = EventFile(run_dir, purge_step=resume_step)
        self._jsonl = self.path.open("a", encoding="utf-8") if jsonl else None
        self._held: list[str] | None = None  # rows kept back (see `hold`)
        self.last: dict[str, float] = {}

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not metrics:
            return
        clean = {k: float(v) for k, v in metrics.items()}
        self.last.update(clean)
        if self._events is not None:
            self._events.add_scalars(clean, step)  # one event per step
        if self._jsonl is not None:
            record: dict[str, Any] = {
                "step": step,
                "wall_time": round(self.wall_time_before + time.time() - self._start, 4),
            }
            record.update({k: (v if math.isfinite(v) else str(v)) for k, v in clean.items()})
            line = json.dumps(record) + "\n"
            if self._held is not None:
                self._held.append(line)
                return
            try:
                self._jsonl.write(line)
            except OSError as exc:
                raise self._named(exc) from None

    def hold(self) -> None:
        """Keep the metrics.jsonl rows logged from now on until `release`: a background
        evaluation's row, logged when its result comes in, then goes before them, in step
        order. (TensorBoard orders its points by step itself.) Never held across a checkpoint:
        the trainer collects the evaluation first."""
        if self._jsonl is not None and self._held is None:
            self._held = []

    def release(self, first: tuple[int, dict[str, float]] | None = None) -> None:
        """Stop holding: log `first` (step, metrics) if given, then the held rows."""
        held, self._held = self._held, None
        if first is not None:
            self.log(*first)
        if held:
            try:
                self._jsonl.writelines(held)
            except OSError as exc:
                raise self._named(exc) from None

    def text(self, tag: str, text: str) -> None:
        if self._events is not None:
            self._events.add_summary(text_summary(tag, text))

    def hparams(
        self,
        hparams: dict[str, Any],
        metrics: dict[str, float],
        experiment_dir: Path | None = None,
    ) -> None:
        """Hyper-parameters with the final metrics for TensorBoard's HParams tab: this run's
        session (its values and metrics) in its own directory, and the experiment (which
        hyper-parameters and metrics there are, in `hparams`' order) in `experiment_dir`: the
        run's directory, or a sweep's directory, written once for all its jobs (TensorBoard
        takes the first experiment it finds under its logdir, so a sweep needs exactly one)."""
        if self._events is None:
            return
        experiment, start, end = hparams_summaries(hparams, metrics)
        for summary in (start, end):
            self._events.add_summary(summary)
        for tag, value in metrics.items():
            self._events.add_summary(scalars_summary({tag: value}))
        if experiment_dir is None or experiment_dir == self.run_dir:
            self._events.add_summary(experiment)
        else:
            write_experiment_once(experiment_dir, experiment)

    def image(self, tag: str, image: Any, step: int, png: bool = False) -> None:
        """An (H, W, 3) uint8 image: to TensorBoard's images tab (PNG-encoded by torch's
        TensorBoard summary code), and with `png` also as images/<tag>_<step>.png."""
        from torch.utils.tensorboard.summary import image as image_summary

        summary = image_summary(tag, image, dataformats="HWC")
        if self._events is not None:
            self._events.add_summary(summary, step)
        if png:
            folder = self.run_dir / IMAGES_DIR
            folder.mkdir(exist_ok=True)
            name = f"{tag.replace('/', '_')}_{step}.png"
            (folder / name).write_bytes(summary.value[0].image.encoded_image_string)

    def video(self, tag: str, frames: Any, step: int, fps: float) -> None:
        """(T, H, W, 3) uint8 frames as an animated GIF in TensorBoard's images tab (how
        TensorBoard shows video; the GIF is encoded by imageio)."""
        if self._events is None:
            return
        import io

        import imageio.v2 as imageio
        from tensorboard.compat.proto.summary_pb2 import Summary

        buffer = io.BytesIO()
        imageio.mimwrite(buffer, list(frames), format="GIF", duration=1000.0 / fps, loop=0)
        h, w = frames.shape[1:3]
        image = Summary.Image(height=h, width=w, colorspace=3,
                              encoded_image_string=buffer.getvalue())  # fmt: skip
        self._events.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)

    def mark(self) -> dict[str, Any]:
        """Flush everything logged so far (metrics.jsonl and TensorBoard) and describe
        metrics.jsonl as it now is on disk: {"offset": its size, "tail": its last bytes, hex}.
        Whether or not this run writes the file (logger.jsonl), the mark is of the file."""
        self.flush()
        return file_mark(self.path)

    def flush(self) -> None:
        if self._events is not None:
            self._events.flush()
        if self._jsonl is not None:
            try:
                self._jsonl.flush()
            except OSError as exc:
                raise self._named(exc) from None

    def _named(self, exc: OSError) -> OSError:
        """A buffered write's error does not say which file failed: this one did."""
        if exc.filename is None and exc.errno is not None:
            return OSError(exc.errno, exc.strerror, str(self.path))
        return exc

    def close(self) -> None:
        """Flush and close; on an error the files are closed anyway and the first error raised."""
        error: BaseException | None = None
        for name in ("_events", "_jsonl"):
            handle = getattr(self, name)
            setattr(self, name, None)
            if handle is None:
                continue
            try:
                handle.close()
            except OSError as exc:
                error = error or exc
                if name == "_jsonl":  # closing failed in its flush: drop the unwritable buffer
                    with contextlib.suppress(OSError):
                        os.close(handle.fileno())
        if error is not None:
            raise error


def file_mark(path: Path) -> dict[str, Any]:
    """The size of `path` and its last `TAIL_BYTES` bytes (hex); zero and empty if missing."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return {"offset": 0, "tail": ""}
    try:
        size = os.fstat(fd).st_size
        start = max(0, size - TAIL_BYTES)
        return {"offset": size, "tail": os.pread(fd, size - start, start).hex()}
    finally:
        os.close(fd)


def reconcile(path: Path, mark: dict[str, Any] | None, step: int) -> str | None:
    """Before a run resumes from a checkpoint: cut `path` (metrics.jsonl) back to the
    checkpoint's mark, removing only the lines the run wrote after that checkpoint. Refuses
    (CheckpointError) if the file no longer matches the mark: shorter than it was, or different
    in the bytes just before the mark. Never pads. Returns a note for the console, if any."""
    if mark is None:
        return None
    offset, tail = int(mark["offset"]), bytes.fromhex(str(mark.get("tail", "")))
    if not path.exists():
        if offset == 0:
            return None
        return f"{path.name} was missing: a new one starts at step {step:,}."
    size = path.stat().st_size
    if size >= offset and tail:
        with path.open("rb") as f:
            f.seek(offset - len(tail))
            matches = f.read(len(tail)) == tail
    else:
        matches = size >= offset
    if not matches:
        held = f"holds {size:,} bytes" if size < offset else "differs in its last lines before it"
        raise CheckpointError(
            f"{path} no longer matches the checkpoint to resume from: the checkpoint was written "
            f"when the file held {offset:,} bytes, and it now {held} (it was emptied, edited or "
            "restored from a backup). Nothing was changed. To keep that file, move it aside "
            f"(mv {path} {path.with_suffix('.old.jsonl')}) and resume again: a new "
            f"{path.name} then starts at the checkpoint's step {step:,}."
        )
    if size > offset:
        with path.open("r+b") as f:
            f.truncate(offset)
    return None


def flatten_hparams(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> {'algo.lr': 0.001, ...} with values TensorBoard's HParams accepts."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_hparams(value, name + "."))
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        elif value is not None:
            flat[name] = str(value)
    return flat


EXPERIMENT_FILE = "events.out.tfevents.0.hparams-experiment"


def write_experiment_once(folder: Path, experiment: Any) -> None:
    """The HParams experiment of a sweep, in its own event file in the sweep's directory, by
    the first job to get there (an exclusive create: jobs may run at once)."""
    from tensorboard.compat.proto.event_pb2 import Event

    from runner_core.events import tfrecord

    path = folder / EXPERIMENT_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as f:
        f.write(tfrecord(Event(wall_time=time.time(), file_version="brain.Event:2")
                         .SerializeToString()))  # fmt: skip
        f.write(tfrecord(Event(wall_time=time.time(), summary=experiment).SerializeToString()))
