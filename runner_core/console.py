"""Console output: the config tree at start, a live progress bar (plain lines when stdout is not
a terminal), a summary table at the end. Everything printed also goes to the run's train.log."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:  # rich is imported where it is used: a run with the console off needs none of it
    from rich.console import Console as RichConsole
    from rich.progress import Progress, TaskID
    from rich.tree import Tree

LOG_FILE = "train.log"


def _clock(seconds: float) -> str:
    """H:MM:SS (hours beyond 24 too)."""
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


_TREE_ORDER = ("algo", "env", "dataset", "network", "device", "logger", "checkpoint", "eval")


def _tree(cfg: DictConfig) -> Tree:
    from rich.tree import Tree

    tree = Tree("config", style="bold", guide_style="dim")
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    keys = [k for k in _TREE_ORDER if k in container] + [
        k for k in container if k not in _TREE_ORDER
    ]
    for key in keys:
        value = container[key]
        if isinstance(value, dict):
            branch = tree.add(f"[bold cyan]{key}")
            branch.add(OmegaConf.to_yaml(value).rstrip() or "{}")
        else:
            tree.add(f"[bold cyan]{key}[/]: {value}")
    return tree


class _LogFile(logging.FileHandler):
    """train.log. It copies the console: when it cannot be written (a full disk) the run goes
    on, and the error that matters is reported where the run's own files fail."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


class Console:
    """mode: rich (live bar), plain (a line every few seconds), off (errors only)."""

    def __init__(self, mode: str, run_dir: Path | None, print_every_s: float = 10.0) -> None:
        if mode == "auto":
            mode = "rich" if sys.stdout.isatty() else "plain"
        self.mode = mode
        self.print_every_s = print_every_s
        self._out: RichConsole | None = None
        self._log = logging.getLogger(f"runner.{id(self)}")
        self._log.propagate = False
        self._log.setLevel(logging.INFO)
        self._handler: logging.Handler | None = None
        if run_dir is not None:
            self._handler = _LogFile(run_dir / LOG_FILE, encoding="utf-8")
            self._handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
            self._log.addHandler(self._handler)
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._total = 0
        self._last_line = 0.0
        self._start = time.time()
        self._start_step = 0
        self._fields: dict[str, float | str] = {}

    @property
    def out(self) -> RichConsole:
        if self._out is None:
            from rich.console import Console as RichConsole

            self._out = RichConsole(highlight=False)
        return self._out

    # messages ------------------------------------------------------------------------------
    def info(self, message: str) -> None:
        self._log.info(message)
        if self.mode != "off":
            self.out.print(message, soft_wrap=True)

    def warn(self, message: str) -> None:
        """One line, to stderr (and train.log), whatever the console mode but off."""
        self._log.info("Warning: %s", message)
        if self.mode != "off":
            print(f"Warning: {message}", file=sys.stderr, flush=True)

    def record(self, message: str) -> None:
        """Write `message` to train.log only (what the entrypoint prints itself, e.g. why the
        run stopped)."""
        self._log.info(message)

    def config(self, cfg: DictConfig, facts: dict[str, Any], full: bool = False) -> None:
        """At start: a compact header (`facts`: the overrides, algorithm, env or data set,
        device, seed, run directory), or the whole config tree with `full`. train.log always
        gets the whole config."""
        self._log.info("config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))
        lines = [f"{key}: {value}" for key, value in facts.items() if value not in (None, "")]
        self._log.info("%s", " | ".join(lines))
        if self.mode == "off":
            return
        if full:
            if self.mode == "rich":
                self.out.print(_tree(cfg))
            else:
                print(OmegaConf.to_yaml(cfg, resolve=True), flush=True)
        if self.mode == "rich":
            from rich.table import Table

            table = Table(show_header=False, box=None, pad_edge=False)
            table.add_column(style="bold cyan")
            table.add_column()
            for key, value in facts.items():
                if value not in (None, ""):
                    table.add_row(key, str(value))
            self.out.print(table)
        else:
            print("\n".join(lines), flush=True)

    # progress ------------------------------------------------------------------------------
    def start(self, total: int, unit: str, done: int = 0) -> None:
        self._total, self._unit = total, unit
        self._start, self._start_step = time.time(), done
        self._last_line = self._start
        if self.mode == "rich":
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=self.out,
                refresh_per_second=4,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                unit, total=total, completed=done, rate="", info=""
            )

    def update(self, done: int, **fields: float | str) -> None:
        """Progress at `done` units; `fields` (e.g. return=..., eval=..., loss=...) are kept and
        shown with every later update until replaced."""
        if fields:
            self._fields.update(fields)
        now = time.time()
        if now - self._last_line >= self.print_every_s:  # train.log, whatever the console
            self._last_line = now
            line = self._plain_line(done, now)
            self._log.info(line)
            if self.mode == "plain":
                print(line, flush=True)
        if self._progress is not None and self._task is not None:
            rate = (done - self._start_step) / max(now - self._start, 1e-9)
            self._progress.update(
                self._task, completed=done, rate=f"{rate:,.0f} {self._unit}/s", info=self._info()
            )

    def _info(self) -> str:
        return " | ".join(
            f"{k} {v:,.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in self._fields.items()
        )

    def _plain_line(self, done: int, now: float) -> str:
        rate = (done - self._start_step) / max(now - self._start, 1e-9)
        left = max(self._total - done, 0)  # a rollout may end past the budget
        eta = left / rate if rate > 0 else float("inf")
        pct = 100.0 * min(done, self._total) / max(self._total, 1)
        eta_s = _clock(eta) if eta != float("inf") else "?"
        info = self._info()
        return (
            f"{self._unit} {done:,}/{self._total:,} ({pct:.0f}%) | {rate:,.0f} {self._unit}/s"
            + (f" | {info}" if info else "")
            + f" | eta {eta_s}"
        )

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    # end -----------------------------------------------------------------------------------
    def summary(self, title: str, rows: dict[str, Any]) -> None:
        self._log.info("%s: %s", title, rows)
        if self.mode == "off":
            return
        from rich.table import Table

        table = Table(title=title, show_header=False, title_style="bold")
        table.add_column(style="cyan")
        table.add_column(justify="right")
        for key, value in rows.items():
            table.add_row(key, f"{value:,.4g}" if isinstance(value, float) else str(value))
        self.out.print(table)

    def close(self) -> None:
        self.stop()
        if self._handler is not None:
            self._log.removeHandler(self._handler)
            with contextlib.suppress(OSError):  # see `_LogFile`
                self._handler.close()
            self._handler = None
