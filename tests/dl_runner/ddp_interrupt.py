"""`python -m tests.dl_runner.ddp_interrupt <call> [args...]`: `python -m dl_runner [args...]`,
with rank 1 of a torchrun group sending itself SIGTERM during its `call`-th training step, so
a data-parallel run stops at a known step (the signal reaches one process; all must stop)."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from dl_runner.tasks.supervised import Supervised
from runner_core.entrypoint import main


def interrupt_at(call: int) -> None:
    original = Supervised.training_step
    calls = [0]

    def training_step(self: Supervised, x: Any, y: Any) -> dict[str, float]:
        calls[0] += 1
        if calls[0] == call and os.environ.get("RANK") == "1":
            signal.raise_signal(signal.SIGTERM)
        return original(self, x, y)

    Supervised.training_step = training_step  # type: ignore[method-assign]


if __name__ == "__main__":
    interrupt_at(int(sys.argv.pop(1)))
    main("dl")
