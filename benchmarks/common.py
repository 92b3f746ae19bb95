"""Shared helpers of the benchmark suite: medians, machine facts, timed subprocesses, Hydra
config composition, and the writer of docs/benchmarks.md.

Every benchmark module exposes `run(opts, context) -> Result`: a few summary `Row`s (one line
each in the one summary table) and its details section. run_all.py runs them and writes the file;
each module can also run alone (`python benchmarks/<name>.py [--quick] [--repeats N] [--out P]`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import importlib.metadata
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO_ROOT / "benchmarks"
DEFAULT_OUT = REPO_ROOT / "docs" / "benchmarks.md"
PYTHON = sys.executable  # the venv's interpreter when run via `make bench`
NOT_CODE = (":!benchmarks", ":!docs", ":!Makefile")  # edits here don't change what is measured

SUMMARY_COLUMNS = ("Benchmark", "Peer", "Peer figure", "Ours", "Ratio", "Notes")
NONE = "—"  # a cell with no meaningful value
T = TypeVar("T")


# --- results ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """One line of the summary table. `ratio` is written so that above 1 means ours is better
    (or NONE where there is no peer)."""

    benchmark: str
    peer: str
    peer_figure: str
    ours: str
    ratio: str
    notes: str = ""


@dataclass
class Result:
    """What one benchmark returns: its summary rows and its details section (markdown lines)."""

    name: str
    title: str
    rows: list[Row]
    details: list[str]
    seconds: float = 0.0  # wall time the benchmark took (filled in by `run_timed`)
    other_load: float | None = None  # share of the CPUs other processes used meanwhile


@dataclass(frozen=True)
class Options:
    """Suite-wide options; each benchmark picks its own sizes from them."""

    quick: bool = False
    repeats: int | None = None  # None: the benchmark's own default

    def reps(self, default: int) -> int:
        if self.repeats is not None:
            return self.repeats
        return 1 if self.quick else default


@dataclass
class Context:
    """Figures one benchmark shares with later ones in the same suite run."""

    values: dict[str, Any] = field(default_factory=dict)


# --- small helpers ------------------------------------------------------------------------------
def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def ratio(value: float) -> str:
    return f"**{value:.2f}x**"


def seconds(value: float) -> str:
    return f"{value:.2f} s" if value < 100 else f"{value:.0f} s"


def rate(value: float, unit: str = "steps/s") -> str:
    return f"{value:,.0f} {unit}"


def order(sides: Sequence[T], repeat: int) -> list[T]:
    """The sides in their order for `repeat`: as given on even repeats, reversed on odd ones,
    so machine noise and warm caches favour no side."""
    return list(sides) if repeat % 2 == 0 else list(reversed(sides))


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str = "") -> list[str]:
    """A markdown table; `align` has one letter per column (l or r, default l)."""
    align = align.ljust(len(header), "l")
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def timed_run(cmd: Sequence[str], **kwargs: Any) -> tuple[float, subprocess.CompletedProcess]:
    """Run `cmd`; wall seconds from just before the process is created to its exit."""
    kwargs.setdefault("cwd", REPO_ROOT)
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    start = time.perf_counter()
    proc = subprocess.run(list(cmd), check=False, **kwargs)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return elapsed, proc


def require_sb3() -> None:
    """Exit with a hint when the optional `bench` extra (Stable-Baselines3) is missing."""
    import importlib.util

    if importlib.util.find_spec("stable_baselines3") is None:
        sys.exit(
            "stable-baselines3 is not installed: run `make bench` (it installs the bench extra)."
        )


def compose(overrides: Sequence[str], config_name: str = "train") -> Any:
    """The runner's config, composed with Hydra from conf/ as the CLI would (no run dir)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from runner_core.entrypoint import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


def compose_dl(overrides: Sequence[str]) -> Any:
    """`compose` of `python -m dl_runner`'s config."""
    return compose(overrides, "dl")


# --- machine facts ------------------------------------------------------------------------------
@functools.cache
def default_torch_threads() -> int:
    """torch's CPU thread count as a fresh process has it (the first call caches it, so call
    this before anything, such as the runner's train(), sets the thread count)."""
    import torch

    return torch.get_num_threads()


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    """Short hash of HEAD, flagged when the runner's code (anything outside benchmarks/ and
    docs/) has uncommitted changes, since those are what the numbers measure."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", *NOT_CODE)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit} (with uncommitted changes to the runner)" if dirty else commit


def busy_cpu_seconds() -> float | None:
    """CPU seconds the machine's CPUs have spent busy so far (from /proc/stat), steal included:
    time the hypervisor gave to other guests is lost to this machine as well."""
    try:
        line = Path("/proc/stat").read_text().splitlines()[0]
        # user nice system idle iowait irq softirq steal
        fields = [int(x) for x in line.split()[1:9]]
    except (OSError, ValueError, IndexError):
        return None
    busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process and its finished children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class OtherLoad:
    """Measures the share of the machine's CPUs that other processes kept busy between
    `start()` and `stop()`: all busy CPU time minus this process's (and its children's)."""

    def start(self) -> OtherLoad:
        self._busy, self._own, self._wall = busy_cpu_seconds(), own_cpu_seconds(), time.time()
        return self

    def stop(self) -> float | None:
        busy = busy_cpu_seconds()
        if busy is None or self._busy is None:
            return None
        wall = max(time.time() - self._wall, 1e-9)
        others = (busy - self._busy) - (own_cpu_seconds() - self._own)
        return max(others, 0.0) / (wall * (os.cpu_count() or 1))


def cpu_busy(seconds: float = 1.0) -> float | None:
    """Share of the CPUs other processes keep busy over `seconds` while this one sleeps."""
    load = OtherLoad().start()
    time.sleep(seconds)
    return load.stop()


def wait_idle(limit_s: float, threshold: float = 0.1, quiet_samples: int = 3) -> float | None:
    """Wait (at most `limit_s` seconds) until other processes keep under `threshold` of the CPUs
    busy for `quiet_samples` one-second samples in a row; returns the last sample's load."""
    deadline = time.monotonic() + limit_s
    quiet, load, told = 0, cpu_busy(), False
    while limit_s > 0 and time.monotonic() < deadline:
        quiet = quiet + 1 if load is not None and load < threshold else 0
        if quiet >= quiet_samples or load is None:
            break
        if not told and load >= threshold:
            print(f"  waiting for a quiet machine ({load_note(load)}) ...", flush=True)
            told = True
        load = cpu_busy()
    return load


def load_note(busy: float | None) -> str:
    if busy is None:
        return "unknown"
    cores = os.cpu_count() or 1
    return f"{busy:.0%} of {cores} cores busy with other processes"


def machine_facts() -> dict[str, str]:
    import torch

    return {
        "CPU cores (os.cpu_count())": str(os.cpu_count()),
        "CPU": cpu_model(),
        "torch": torch.__version__,
        "torch threads (default at process start)": str(default_torch_threads()),
        "Python": platform.python_version(),
        "gymnasium": package_version("gymnasium"),
        "stable-baselines3": package_version("stable-baselines3"),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
    }


# --- the docs file ------------------------------------------------------------------------------
HEADER = [
    "# Benchmarks",
    "",
    "<!-- Generated output: written by `make bench` (benchmarks/*.py). Do not edit by hand; "
    "rerun `make bench` to refresh it. -->",
    "",
    "Speed of this runner against established peers (mainly Stable-Baselines3 with RL Zoo's "
    "preset, the same algorithm and hyperparameters), its start-up, its own overhead and the "
    "environment's speed limit. Regenerate with `make bench` "
    '(options: `make bench ARGS="--repeats 5"`, `ARGS="--only startup --out /tmp/b.md"`).',
]


def render(results: Sequence[Result], facts: dict[str, str], how: str) -> str:
    """The whole docs file: header, one summary table, the machine, one section per benchmark."""
    lines = [*HEADER, "", how, "", "## Summary", "", *summary_table(results)]
    lines += [
        "",
        "Ratio: above 1 means ours is better (faster, or less time), except where the notes "
        "define it otherwise. The machine may be shared and noisy: compare ratios measured in "
        "one run, not figures across machines.",
        "",
        "## Machine",
        "",
    ]
    lines += table(("Fact", "Value"), facts.items())
    for result in results:
        lines += ["", f"## {result.title}", "", *result.details]
    return "\n".join(lines) + "\n"


def write_doc(path: Path, results: Sequence[Result], facts: dict[str, str], how: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(results, facts, how), encoding="utf-8")


def summary_table(results: Sequence[Result]) -> list[str]:
    rows = [row for result in results for row in result.rows]
    return table(
        SUMMARY_COLUMNS,
        ((r.benchmark, r.peer, r.peer_figure, r.ours, r.ratio, r.notes) for r in rows),
        "llrrrl",
    )


def print_summary(results: Sequence[Result]) -> None:
    """The summary table on stdout, as it appears in the docs file."""
    print("\n" + "\n".join(summary_table(results)))


def run_timed(bench: Callable[[Options, Context], Result], opts: Options, ctx: Context) -> Result:
    load = OtherLoad().start()
    start = time.perf_counter()
    result = bench(opts, ctx)
    result.seconds = time.perf_counter() - start
    result.other_load = load.stop()
    return result


def how_line(command: str, results: Sequence[Result], total: float, quick: bool) -> str:
    kind = " (--quick: smoke sizes, not real figures)" if quick else ""
    parts = ", ".join(
        f"{r.name} {r.seconds:.0f} s" + ("" if r.other_load is None else f" [{r.other_load:.0%}]")
        for r in results
    )
    return (
        f"Measured with `{command}`{kind} in {total / 60:.1f} min ({parts}; in brackets: the "
        "share of the CPUs that other processes, or the hypervisor's other guests, kept busy "
        "meanwhile, which distorts figures)."
    )


# --- one benchmark on its own ---------------------------------------------------------------------
def parse_args(description: str, argv: list[str] | None, only: bool = False) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, 1 repeat")
    parser.add_argument("--repeats", type=int, help="repeats of every benchmark (default: each's)")
    parser.add_argument(
        "--out",
        type=Path,
        help="markdown file to write (run_all default: docs/benchmarks.md unless --quick/--only)",
    )
    if only:
        parser.add_argument("--only", action="append", help="run only this benchmark (repeatable)")
        parser.add_argument(
            "--wait-idle",
            type=float,
            metavar="SECONDS",
            help="before each benchmark, wait at most this long for other processes to leave "
            "the CPUs quiet (default 300; 0 with --quick)",
        )
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main_one(
    name: str, bench: Callable[[Options, Context], Result], description: str, argv=None
) -> None:
    """`python benchmarks/<name>.py`: run one benchmark, print its rows, write only with --out."""
    args = parse_args(description, argv)
    default_torch_threads()
    facts = machine_facts()
    start = time.perf_counter()
    result = run_timed(bench, Options(quick=args.quick, repeats=args.repeats), Context())
    total = time.perf_counter() - start
    print_summary([result])
    if args.out is not None:
        command = " ".join(["python", f"benchmarks/{name}.py", *sys.argv[1:]])
        write_doc(args.out, [result], facts, how_line(command, [result], total, args.quick))
        print(f"\nWrote {args.out}")
