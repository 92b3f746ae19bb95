"""What `python -m rl_runner.eval` and `python -m dl_runner.eval` share: their command line
(`<run dir or checkpoint> key=value ...`), finding the checkpoint, the result table and
eval.json."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from runner_core import checkpoint
from runner_core.errors import ConfigError, RunnerError

EVAL_FILE = "eval.json"


def parse(
    argv: Sequence[str], program: str, defaults: dict[str, tuple[type, Any]]
) -> tuple[str, dict[str, Any]]:
    """(target, options) from `<target> key=value ...`; `defaults`: key -> (type, default)."""
    usage = f"Usage: {program} <run dir or checkpoint> " + " ".join(
        f"[{k}={v if v is not None else '...'}]" for k, (_, v) in defaults.items()
    )
    positional = [a for a in argv if "=" not in a]
    if len(positional) != 1 or any(a in ("-h", "--help") for a in argv):
        raise ConfigError(f"{usage}. Give one run directory or checkpoint file.")
    options = {k: v for k, (_, v) in defaults.items()}
    for arg in argv:
        if "=" not in arg:
            continue
        key, _, raw = arg.partition("=")
        if key not in defaults:
            raise ConfigError(f"Unknown option {key!r}. {usage}.")
        options[key] = _value(key, raw, defaults[key][0])
    return positional[0], options


def _value(key: str, raw: str, kind: type) -> Any:
    if raw in ("", "null"):
        return None
    if kind is bool:
        if raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise ConfigError(f"Option '{key}' has the value {raw!r}; it must be true or false.")
    if kind is int:
        lowest = 0 if key == "seed" else 1
        try:
            value = int(raw)
        except ValueError:
            value = lowest - 1
        if value < lowest:
            raise ConfigError(
                f"Option '{key}' has the value {raw!r}; it must be an integer >= {lowest}."
            )
        return value
    return raw


def load_target(target: str) -> tuple[Path, Path, dict[str, Any]]:
    """(run dir, checkpoint file, state): a run directory's newest intact checkpoint, or the
    given file."""
    path = Path(target).expanduser()
    if path.is_dir():
        found = checkpoint.newest(path)
        for message in found.damaged:
            print(f"Warning: {message} Using the newest intact one.", file=sys.stderr)
        return path, found.path, found.state
    if path.is_file():
        state = checkpoint.load(path)
        run_dir = (
            path.parent.parent if path.parent.name == checkpoint.CHECKPOINT_DIR else path.parent
        )
        return run_dir, path, state
    raise ConfigError(f"{target!r}: no such run directory or checkpoint file.")


def stats(values: Sequence[float]) -> dict[str, float]:
    n = len(values)
    mean = math.fsum(values) / n
    var = math.fsum((v - mean) ** 2 for v in values) / n
    return {"mean": mean, "std": math.sqrt(var), "min": min(values), "max": max(values)}


def report(title: str, columns: dict[str, Sequence[float]], facts: dict[str, Any],
           out: Path) -> dict[str, Any]:  # fmt: skip
    """Print a table of mean, std, min and max per column, write `out` (JSON), return it."""
    from rich.console import Console
    from rich.table import Table

    result = {**facts, **{name: stats(values) for name, values in columns.items() if values}}
    table = Table(title=title, title_style="bold")
    table.add_column("")
    for name in ("mean", "std", "min", "max"):
        table.add_column(name, justify="right")
    for name, values in columns.items():
        if values:
            row = result[name]
            table.add_row(name, *(f"{row[k]:,.4g}" for k in ("mean", "std", "min", "max")))
    console = Console(highlight=False)
    console.print(table)
    for key, value in facts.items():
        console.print(f"{key}: {value}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    console.print(f"Wrote {out}")
    return result


def run_command(body: Callable[[list[str]], None]) -> None:
    """Run `body(argv)`; a user error is one paragraph and exit status, not a traceback."""
    from runner_core.entrypoint import exit_now

    try:
        body(sys.argv[1:])
        status = 0
    except RunnerError as err:
        print(f"Error: {err}", file=sys.stderr, flush=True)
        status = err.exit_code
    exit_now(status)
