"""One metrics logger for every run: TensorBoard event files, metrics.jsonl and the console.

Algorithms return dicts of floats; only this module writes them anywhere. Tag names are frozen
(see the README): RL `charts/*`, `losses/*`, `eval/*`; DL `train/*`, `val/*`, `test/*`.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from runner_core.events import EventFile, hparams_summaries, scalars_summary, text_summary

METRICS_FILE = "metrics.jsonl"
WALL_CLOCK_KEYS = ("wall_time", "charts/sps")  # differ between otherwise identical runs


class MetricLogger:
    """Writes scalars with their step. On resume it truncates metrics.jsonl to the checkpoint's
    byte offset and tells TensorBoard to purge later events, so curves continue without gaps or
    duplicated steps even after a hard kill."""

    def __init__(
        self,
        run_dir: Path,
        tensorboard: bool = True,
        jsonl: bool = True,
        resume_step: int | None = None,
        resume_offset: int | None = None,
    ) -> None:
        self.run_dir = run_dir
        self._start = time.time()
        self._events: EventFile | None = None
        if tensorboard:
            self._events = EventFile(run_dir, purge_step=resume_step)
        self._jsonl = None
        if jsonl:
            path = run_dir / METRICS_FILE
            if resume_offset is not None and path.exists():
                with path.open("r+b") as f:
                    f.truncate(resume_offset)
            self._jsonl = path.open("a", encoding="utf-8")
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
                "wall_time": round(time.time() - self._start, 4),
            }
            record.update({k: (v if math.isfinite(v) else str(v)) for k, v in clean.items()})
            self._jsonl.write(json.dumps(record) + "\n")

    def text(self, tag: str, text: str) -> None:
        if self._events is not None:
            self._events.add_summary(text_summary(tag, text))

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
        """Hyper-parameters with the final metrics for TensorBoard's HParams tab (in this run's
        own directory, so the run and its hyper-parameters are one row there)."""
        if self._events is None:
            return
        for summary in hparams_summaries(hparams, metrics):
            self._events.add_summary(summary)
        for tag, value in metrics.items():
            self._events.add_summary(scalars_summary({tag: value}))

    def offset(self) -> int:
        """Bytes of metrics.jsonl written so far (stored in checkpoints)."""
        if self._jsonl is None:
            return 0
        self._jsonl.flush()
        return self._jsonl.tell()

    def flush(self) -> None:
        if self._events is not None:
            self._events.flush()
        if self._jsonl is not None:
            self._jsonl.flush()

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None


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
