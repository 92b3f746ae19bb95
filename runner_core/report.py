"""Compare runs: `python -m rl_runner.report` / `python -m dl_runner.report`, and the table printed
at the end of every `--multirun`.

Runs are the directories that hold summary.json (finished) or failed.json (a sweep job that
failed). Runs whose command-line overrides are the same once `seed` (and `hydra.*`, `logger.*`)
are set aside are seeds of one configuration and form one group; the keys whose values differ
between groups are the swept ones. Per group: the objective's mean and sample standard deviation,
its interquartile mean (IQM: the mean of the middle half of the seeds) and a 95% percentile
bootstrap confidence interval of the IQM over seeds, as rliable computes them (rliable itself is
not used: its pinned `arch<8` does not import with pandas 3, and it would pull pandas, statsmodels
and seaborn in for two functions; see the README). RL runs and DL runs, and runs with different
objectives, get separate tables.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner_core.errors import ConfigError

SUMMARY_FILE = "summary.json"  # runner_core.train.SUMMARY_FILE (not imported: that pulls omegaconf)
FAILED_FILE = "failed.json"  # runner_core.entrypoint.FAILED_FILE
METRICS_FILE = "metrics.jsonl"  # runner_core.metrics.METRICS_FILE
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
CONFIG_FILE = Path(".hydra") / "config.yaml"
REPORT_FILE = "report.csv"
SWEEP_SUMMARY_FILE = "sweep_summary.csv"

# overrides that do not change what a run learns: seeds of one setting share a group
IGNORED_KEYS = ("seed",)
IGNORED_PREFIXES = ("hydra.", "logger.")
# summary.json entries that are final metrics although their names have no "/"
EXTRA_METRICS = ("solved_at_step", "wall_time_s")

CONFIDENCE = 0.95
RESAMPLES = 10_000  # bootstrap resamples for the table's confidence intervals
BAND_RESAMPLES = 2_000  # per plotted point of a learning curve
BOOTSTRAP_SEED = 0  # the same runs give the same report
MAX_CURVE_POINTS = 400  # per configuration: a plot has no use for more
# what metrics.jsonl's "step" counts where summary.json's unit is "steps"; other loops say
# their unit (sweeps, generations)
X_LABELS = {"rl": "env steps", "dl": "optimizer steps"}
FAMILY_NAMES = {"rl": "RL", "dl": "DL"}


# statistics --------------------------------------------------------------------------------------
def iqm(values: Sequence[float] | Any, axis: int = -1) -> Any:
    """Interquartile mean: the mean of the values left once the lowest and the highest 25% are
    cut (`scipy.stats.trim_mean(values, 0.25)`, rliable's IQM). With fewer than 4 values nothing
    is cut: it is the mean."""
    from scipy.stats import trim_mean

    return trim_mean(values, 0.25, axis=axis)


def bootstrap_ci(
    values: Sequence[float],
    statistic: Any = iqm,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """The percentile bootstrap confidence interval of `statistic` (default: the IQM) over
    `values` (one per seed), with a fixed seed so a report is reproducible. (nan, nan) for fewer
    than two values. With few seeds it is rough: for two it is their range."""
    import numpy as np
    from scipy.stats import bootstrap

    data = np.asarray(values, dtype=float)
    if data.size < 2:
        return math.nan, math.nan
    if np.all(data == data[0]):  # every resample gives the same value
        value = float(statistic(data))
        return value, value
    result = bootstrap(
        (data,),
        statistic,
        confidence_level=confidence,
        n_resamples=resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """The mean and the sample standard deviation (n - 1); nan where undefined."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = math.fsum(values) / n
    if n < 2:
        return mean, math.nan
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


# finding and reading runs ------------------------------------------------------------------------
@dataclass
class RunRecord:
    """One run directory: its overrides (without the ignored keys), summary or failure."""

    path: Path
    overrides: dict[str, str]
    summary: dict[str, Any] | None = None
    failure: dict[str, Any] | None = None
    family: str = "?"

    @property
    def objective(self) -> float:
        value = (self.summary or {}).get("objective")
        try:
            return float(value)
        except (TypeError, ValueError):
            return math.nan


def find_runs(paths: Sequence[str | Path]) -> tuple[list[Path], list[Path]]:
    """(run directories, unfinished ones) under `paths`, each once. A run directory holds
    summary.json or failed.json; an unfinished one only metrics.jsonl or .hydra/ (running, or
    stopped before its end). Raises ConfigError for a path that holds no runs."""
    runs: dict[Path, None] = {}
    unfinished: dict[Path, None] = {}
    for given in paths:
        root = Path(given).expanduser()
        if not root.is_dir():
            raise ConfigError(
                f"{str(given)!r} is not a directory. Give run directories "
                "(outputs/<date>/<time>_<name>) or sweep directories "
                "(outputs/multirun/<date>/<time>_<name>)."
            )
        found: list[Path] = []
        open_runs: list[Path] = []
        for folder, subdirs, files in os.walk(root):
            here = Path(folder)
            if SUMMARY_FILE in files or FAILED_FILE in files:
                found.append(here)
                subdirs.clear()  # checkpoints/, .hydra/: nothing more below a run
            elif METRICS_FILE in files or (here / OVERRIDES_FILE).is_file():
                open_runs.append(here)
                subdirs.clear()
            else:
                subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        if not found:
            raise ConfigError(_no_runs_message(given, open_runs))
        runs.update((p.resolve(), None) for p in sorted(found))
        unfinished.update((p.resolve(), None) for p in sorted(open_runs))
    return list(runs), [p for p in unfinished if p not in runs]


def _no_runs_message(given: str | Path, open_runs: list[Path]) -> str:
    message = (
        f"{str(given)!r} holds no runs to report: no directory in it has {SUMMARY_FILE} (a "
        f"finished run) or {FAILED_FILE} (a sweep job that failed)."
    )
    if open_runs:
        message += (
            f" It has {len(open_runs)} run director{'y' if len(open_runs) == 1 else 'ies'} "
            f"without either (still running, or stopped before the end: continue one with "
            f"resume=<run dir>), e.g. {open_runs[0]}."
        )
    return message + (
        " Give run directories (outputs/<date>/<time>_<name>) or sweep directories "
        "(outputs/multirun/<date>/<time>_<name>)."
    )


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None


def split_override(override: str) -> tuple[str, str]:
    """`algo.lr=1e-3` -> ("algo.lr", "1e-3"); Hydra's `+`, `++` and `~` prefixes dropped."""
    key, _, value = str(override).partition("=")
    return key.lstrip("+~").strip(), value.strip()


def config_overrides(overrides: Iterable[str]) -> dict[str, str]:
    """The overrides that make a configuration: without seed, hydra.* and logger.* keys."""
    kept: dict[str, str] = {}
    for override in overrides:
        key, value = split_override(override)
        if key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES) or not key:
            continue
        kept[key] = value
    return kept


def canonical(value: str) -> Any:
    """A value as compared between runs: 1e-3, 0.001 and 1.0e-03 are one learning rate."""
    try:
        number = float(value)
    except ValueError:
        return value
    return number if math.isfinite(number) else value


def load_run(path: Path) -> RunRecord:
    summary = _read_json(path / SUMMARY_FILE)
    failure = None if summary is not None else _read_json(path / FAILED_FILE)
    listed = _read_yaml(path / OVERRIDES_FILE)
    if not isinstance(listed, list):
        listed = (failure or {}).get("overrides") or []
    if summary is None and failure is None:  # one of them is there, but not readable JSON
        name = SUMMARY_FILE if (path / SUMMARY_FILE).exists() else FAILED_FILE
        failure = {"error": f"its {name} is not readable JSON"}
    return RunRecord(path, config_overrides(listed), summary, failure, _family(path, summary))


def _family(path: Path, summary: dict[str, Any] | None) -> str:
    if summary is not None:
        if "env_id" in summary:
            return "rl"
        if "dataset" in summary:
            return "dl"
    config = _read_yaml(path / CONFIG_FILE)
    if isinstance(config, dict):
        family = (config.get("algo") or {}).get("family")
        if family in FAMILY_NAMES:
            return str(family)
    return "?"


# grouping ----------------------------------------------------------------------------------------
@dataclass
class Group:
    """The seeds of one configuration."""

    overrides: dict[str, str]
    runs: list[RunRecord]
    values: list[float] = field(default_factory=list)  # the finite objectives
    mean: float = math.nan
    std: float = math.nan
    iqm: float = math.nan
    ci: tuple[float, float] = (math.nan, math.nan)
    metrics: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (mean, std)
    winner: bool = False

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def seeds(self) -> list[Any]:
        return [r.summary.get("seed") for r in self.runs if r.summary]

    def config(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.overrides.items())

    def label(self, keys: Sequence[str]) -> str:
        return " ".join(f"{k}={self.overrides.get(k, 'default')}" for k in keys) or "all runs"


@dataclass
class Table:
    """The groups of one kind of run with one objective, best first."""

    family: str
    objective: str
    mode: str  # "max" or "min"
    groups: list[Group]
    swept: list[str]
    common: dict[str, str]
    subjects: dict[str, list[str]]  # env_id / dataset / algo -> the values seen
    metrics: list[str]  # other final metrics, in column order

    @property
    def title(self) -> str:
        better = "higher" if self.mode == "max" else "lower"
        subject = ", ".join("/".join(values) for values in self.subjects.values() if values)
        about = f" ({subject})" if subject else ""
        return (
            f"{FAMILY_NAMES.get(self.family, 'Other')} runs{about}: {self.objective}, "
            f"{better} is better"
        )


def build_tables(runs: Sequence[RunRecord], statistics: bool = True) -> list[Table]:
    """The finished runs grouped by configuration, one table per (family, objective)."""
    kinds: dict[tuple[str, str], list[RunRecord]] = {}
    for run in runs:
        if run.summary is None:
            continue
        name = str(run.summary.get("objective_name", "objective"))
        kinds.setdefault((run.family, name), []).append(run)
    tables = []
    for (family, objective), members in kinds.items():
        tables.append(_table(family, objective, members, statistics))
    order = list(FAMILY_NAMES)
    tables.sort(key=lambda t: order.index(t.family) if t.family in order else len(order))
    return tables


def _table(family: str, objective: str, runs: list[RunRecord], statistics: bool) -> Table:
    groups: dict[tuple[Any, ...], Group] = {}
    for run in runs:
        key = tuple(sorted((k, canonical(v)) for k, v in run.overrides.items()))
        groups.setdefault(key, Group(run.overrides, [])).runs.append(run)
    modes = {str(r.summary.get("objective_mode", "max")) for r in runs if r.summary}
    mode = "min" if modes == {"min"} else "max"
    ordered_keys: dict[str, None] = {}
    for run in runs:
        ordered_keys.update((k, None) for k in run.overrides)
    swept, common = [], {}
    for key in ordered_keys:
        seen = {
            canonical(g.overrides[key]) if key in g.overrides else None for g in groups.values()
        }
        if len(seen) > 1:
            swept.append(key)
        else:
            common[key] = next(iter(groups.values())).overrides[key]
    metric_names: dict[str, None] = {}
    for run in runs:
        assert run.summary is not None
        for name, value in run.summary.items():
            if name != objective and ("/" in name or name in EXTRA_METRICS) and _is_number(value):
                metric_names[name] = None
    metrics = sorted((m for m in metric_names if m not in EXTRA_METRICS), key=_metric_order)
    metrics += [m for m in EXTRA_METRICS if m in metric_names]
    for group in groups.values():
        _describe(group, objective, metrics, statistics)
    sign = -1.0 if mode == "max" else 1.0
    ranked = sorted(
        groups.values(),
        key=lambda g: (not g.values, sign * g.mean if g.values else 0.0,
                       sign * g.iqm if math.isfinite(g.iqm) else 0.0),
    )  # fmt: skip
    for group in ranked:  # the best mean wins; equal means all win
        group.winner = bool(group.values) and group.mean == ranked[0].mean
    subjects = {
        k: sorted({str(r.summary[k]) for r in runs if r.summary and r.summary.get(k)})
        for k in ("env_id", "dataset", "algo")
    }
    return Table(family, objective, mode, ranked, swept, common, subjects, metrics)


def _metric_order(name: str) -> tuple[int, str]:
    """eval/ and val/ first, then test/, then the rest, each alphabetically."""
    prefixes = ("eval/", "val/", "test/")
    rank = next((i for i, p in enumerate(prefixes) if name.startswith(p)), len(prefixes))
    return rank, name


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _describe(group: Group, objective: str, metrics: list[str], statistics: bool) -> None:
    group.runs.sort(key=lambda r: (str(r.summary.get("seed")) if r.summary else "", str(r.path)))
    values = [r.objective for r in group.runs]
    group.values = [v for v in values if math.isfinite(v)]
    group.mean, group.std = mean_std(group.values)
    if statistics and group.values:
        group.iqm = float(iqm(group.values))
        group.ci = bootstrap_ci(group.values)
    for name in metrics:
        found = [float(r.summary[name]) for r in group.runs if r.summary and name in r.summary]
        group.metrics[name] = mean_std([v for v in found if math.isfinite(v)])


# output ------------------------------------------------------------------------------------------
def fmt(value: float) -> str:
    if not math.isfinite(value):
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def make_console() -> Any:
    """A rich console on stdout; piped or captured output gets a wide line rather than 80
    columns, so the table's rows stay on one line each in logs."""
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 200
    return console


def render(table: Table) -> Any:
    """The rich table of `table`: one row per configuration, the winner starred."""
    from rich.table import Table as RichTable

    caption = (
        f"★ best mean. n: seeds. mean ± sample std over seeds. IQM: mean of the middle half of "
        f"the seeds. {CONFIDENCE:.0%} CI: percentile bootstrap of the IQM over seeds "
        f"({RESAMPLES:,} resamples). Other columns: means over seeds."
    )
    out = RichTable(title=table.title, title_style="bold", caption=caption, caption_justify="left")
    out.add_column("")
    for key in table.swept:
        out.add_column(key, justify="right")
    out.add_column("n", justify="right")
    out.add_column(f"{table.objective} (mean ± std)", justify="right")
    out.add_column("IQM", justify="right")
    out.add_column(f"{CONFIDENCE:.0%} CI", justify="right")
    for name in table.metrics:
        out.add_column(name, justify="right")
    for group in table.groups:
        objective = fmt(group.mean)
        if math.isfinite(group.std):
            objective += f" ± {fmt(group.std)}"
        low, high = group.ci
        ci = f"[{fmt(low)}, {fmt(high)}]" if math.isfinite(low) else "–"
        out.add_row(
            "★" if group.winner else "",
            *(group.overrides.get(k, "default") for k in table.swept),
            str(group.n),
            objective,
            fmt(group.iqm),
            ci,
            *(fmt(group.metrics[m][0]) for m in table.metrics),
            style="bold" if group.winner else None,
        )
    return out


def verdict(table: Table) -> str:
    """How sure the ranking is: whether the winner's interval clears the runner-up's."""
    ranked = [g for g in table.groups if g.values]
    if not ranked:
        return "No run of this kind finished with a finite objective."
    best, tied = ranked[0], [g for g in ranked[1:] if g.winner]
    line = f"Best: {best.label(table.swept)} (n={best.n})"
    if tied:
        line += ", tied on the mean with " + " and ".join(g.label(table.swept) for g in tied)
    line += "."
    if len(ranked) < 2:
        return line
    second = ranked[1]
    (b_low, b_high), (s_low, s_high) = best.ci, second.ci
    if not all(math.isfinite(v) for v in (b_low, b_high, s_low, s_high)):
        return line + " With one seed per setting there is no interval: run more seeds."
    apart = b_low > s_high if table.mode == "max" else b_high < s_low
    if not tied:
        line += f" Runner-up: {second.label(table.swept)}."
    line += " "
    if apart:
        line += f"The {CONFIDENCE:.0%} CIs of their IQMs do not overlap."
    else:
        line += (
            f"Their {CONFIDENCE:.0%} CIs overlap: the ranking of these two is not settled; "
            "more seeds would tell."
        )
    if min(best.n, second.n) < 5:
        line += " (With fewer than 5 seeds a bootstrap interval is rough.)"
    return line


def print_report(
    tables: Sequence[Table], failed: Sequence[RunRecord], unfinished: Sequence[Path], console: Any
) -> None:
    for table in tables:
        console.print(render(table))
        if table.common:
            same = " ".join(f"{k}={v}" for k, v in table.common.items())
            console.print(f"Same in every row: {same}", style="dim")
        console.print(verdict(table))
        console.print()
    if failed:
        console.print(f"Failed jobs ({len(failed)}):", style="bold red")
        for run in failed:
            failure = run.failure or {}
            listed = failure.get("overrides") or [f"{k}={v}" for k, v in run.overrides.items()]
            overrides = " ".join(
                o for o in listed if not split_override(o)[0].startswith(IGNORED_PREFIXES)
            )
            error = str(failure.get("error", "")).strip().splitlines()
            console.print(f"  {overrides or 'no overrides'}: {error[-1] if error else '?'}")
            console.print(f"    {_relative(run.path)}", style="dim")
    if unfinished:
        console.print(
            f"Not reported: {len(unfinished)} run director{'y' if len(unfinished) == 1 else 'ies'}"
            f" without {SUMMARY_FILE} or {FAILED_FILE} (still running, or stopped before the "
            "end): " + ", ".join(_relative(p) for p in unfinished),
            style="yellow",
        )


def write_csv(tables: Sequence[Table], path: Path) -> Path:
    """One row per configuration of every table: swept keys, n, the objective's statistics, the
    other final metrics (mean and std), the seeds and run directories."""
    rows: list[dict[str, Any]] = []
    for table in tables:
        for group in table.groups:
            row: dict[str, Any] = {"family": table.family, "objective": table.objective,
                                   "mode": table.mode}  # fmt: skip
            row.update({k: group.overrides.get(k, "") for k in table.swept})
            row.update({
                "config": group.config(), "n": group.n, "mean": group.mean, "std": group.std,
                "iqm": group.iqm, "ci95_low": group.ci[0], "ci95_high": group.ci[1],
                "winner": group.winner,
            })  # fmt: skip
            for name in table.metrics:
                row[name], row[f"{name} std"] = group.metrics[name]
            row["seeds"] = " ".join(str(s) for s in group.seeds)
            row["run_dirs"] = ";".join(str(r.path) for r in group.runs)
            rows.append({k: _csv_value(v) for k, v in row.items()})
    columns: dict[str, None] = {}
    for row in rows:
        columns.update((k, None) for k in row)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return value


# learning curves ---------------------------------------------------------------------------------
def read_curves(path: Path, names: Iterable[str]) -> dict[str, tuple[list[int], list[float]]]:
    """metric -> (steps, values) from a run's metrics.jsonl, the last value logged at a step
    winning; lines that do not parse (a run killed mid-write) are skipped."""
    wanted = set(names)
    points: dict[str, dict[int, float]] = {name: {} for name in wanted}
    try:
        with (path / METRICS_FILE).open(encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                    step = int(record["step"])
                except (ValueError, KeyError, TypeError):
                    continue
                for name in wanted.intersection(record):
                    try:
                        points[name][step] = float(record[name])
                    except (TypeError, ValueError):
                        continue
    except OSError:
        pass
    curves = {}
    for name, by_step in points.items():
        if by_step:
            steps = sorted(by_step)
            curves[name] = (steps, [by_step[s] for s in steps])
    return curves


def mean_curve(
    curves: Sequence[tuple[Sequence[int], Sequence[float]]],
) -> tuple[Any, Any, Any, Any]:
    """(steps, mean, band low, band high) of one configuration's seeds: each seed's curve read
    at the steps any of them logged within the range that all of them reached (linear
    interpolation between a seed's own points), the mean over seeds, and a 95% percentile
    bootstrap band of that mean (nan with one seed)."""
    import numpy as np

    start = max(steps[0] for steps, _ in curves)
    end = min(steps[-1] for steps, _ in curves)
    grid = np.unique(np.concatenate([np.asarray(s, dtype=float) for s, _ in curves]))
    grid = grid[(grid >= start) & (grid <= end)]
    if grid.size > MAX_CURVE_POINTS:
        grid = grid[np.linspace(0, grid.size - 1, MAX_CURVE_POINTS).round().astype(int)]
    data = np.stack([np.interp(grid, s, v) for s, v in curves])
    mean = data.mean(axis=0)
    low = np.full_like(mean, np.nan)
    high = np.full_like(mean, np.nan)
    if len(curves) >= 2 and grid.size:
        from scipy.stats import bootstrap

        finite = np.isfinite(data).all(axis=0)
        varied = finite & (np.ptp(np.where(finite, data, 0.0), axis=0) > 0)
        low[finite] = high[finite] = mean[finite]  # the same value in every seed
        if varied.any():
            result = bootstrap(
                (data[:, varied],),
                np.mean,
                axis=0,
                confidence_level=CONFIDENCE,
                n_resamples=BAND_RESAMPLES,
                batch=100,  # resamples x seeds x points per batch, not all at once
                method="percentile",
                rng=np.random.default_rng(BOOTSTRAP_SEED),
            )
            low[varied] = result.confidence_interval.low
            high[varied] = result.confidence_interval.high
    return grid, mean, low, high


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_") or "metric"


def plot_curves(table: Table, metric: str, out_dir: Path) -> Path | None:
    """One PNG: `metric` against steps, one line per configuration (the mean over its seeds)
    with its band. None if no run of the table logged the metric. The PNG's Description
    (a text chunk) lists each drawn line's label and number of points, read back from the
    figure's own lines, so what was drawn can be checked without looking at the image."""
    # the Agg canvas itself, not pyplot: no display and no global figure state
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    drawn = 0
    for group in table.groups:
        curves = [read_curves(r.path, [metric]).get(metric) for r in group.runs]
        curves = [c for c in curves if c]
        if not curves:
            continue
        steps, mean, low, high = mean_curve(curves)
        label = f"{group.label(table.swept)} (n={len(curves)})"
        (line,) = ax.plot(steps, mean, label=label, marker="o" if steps.size <= 30 else None,
                          markersize=3)  # fmt: skip
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
        drawn += 1
    if not drawn:
        return None
    units = {str(r.summary.get("unit", "steps")) for g in table.groups for r in g.runs if r.summary}
    unit = units.pop() if len(units) == 1 else "steps"
    ax.set_xlabel(X_LABELS.get(table.family, "steps") if unit == "steps" else unit)
    ax.set_ylabel(metric)
    ax.set_title(
        f"{table.title}\n{metric}: mean over seeds, band: {CONFIDENCE:.0%} bootstrap CI of the "
        "mean",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    lines = [{"label": ln.get_label(), "points": len(ln.get_xdata())} for ln in ax.get_lines()]
    path = out_dir / f"curves_{table.family}_{slug(metric)}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Title": metric, "Description": json.dumps(lines)})
    return path


# the commands ------------------------------------------------------------------------------------
def report(
    paths: Sequence[str | Path],
    metrics: Sequence[str] = (),
    out: Path | None = None,
    plots: bool = True,
    console: Any = None,
) -> list[Table]:
    """Find, group, print; write report.csv and the learning-curve PNGs in `out` (default: the
    first sweep directory given, else the current one)."""
    found, unfinished = find_runs(paths)
    runs = [load_run(p) for p in found]
    tables = build_tables(runs)
    failed = [r for r in runs if r.summary is None]
    console = console or make_console()
    print_report(tables, failed, unfinished, console)
    out = out if out is not None else _default_out(paths)
    written = [write_csv(tables, out / REPORT_FILE)] if tables else []
    if plots:
        plotted: set[str] = set()
        for table in tables:
            for metric in metrics or [table.objective]:
                png = plot_curves(table, metric, out)
                if png is not None:
                    written.append(png)
                    plotted.add(metric)
        for metric in dict.fromkeys(metrics):
            if metric not in plotted:
                console.print(
                    f"No run logged {metric!r} in its {METRICS_FILE}: nothing plotted for it "
                    "(the names are TensorBoard's tags, e.g. eval/mean_return, val/acc).",
                    style="yellow",
                )
    for path in written:
        console.print(f"Wrote {_relative(path)}")
    return tables


def _default_out(paths: Sequence[str | Path]) -> Path:
    for given in paths:
        path = Path(given).expanduser()
        if not (path / SUMMARY_FILE).exists() and not (path / FAILED_FILE).exists():
            return path
    return Path.cwd()


def summarize_sweep(sweep_dir: Path) -> None:
    """At the end of a --multirun: the grouped table of the sweep's finished jobs (no plots) and
    sweep_summary.csv in the sweep directory. The failed jobs are named by the entrypoint. A
    summary that cannot be made is a one-line warning: the jobs' own files are what counts."""
    if not sweep_dir.is_dir():
        return
    try:
        found, _ = find_runs([sweep_dir])
    except ConfigError:
        return  # no job got as far as its directory
    try:
        tables = build_tables([load_run(p) for p in found])
        if not tables:
            return
        console = make_console()
        console.print()
        print_report(tables, [], [], console)
        path = write_csv(tables, sweep_dir / SWEEP_SUMMARY_FILE)
        console.print(
            f"Wrote {_relative(path)}. Learning curves: python -m "
            f"{'dl_runner' if tables[0].family == 'dl' else 'rl_runner'}.report "
            f"{_relative(sweep_dir)}"
        )
    except Exception as exc:  # the sweep itself ran: its exit status is not this summary's
        print(f"Warning: no sweep summary ({type(exc).__name__}: {exc}).", file=sys.stderr)


def main(argv: Sequence[str], program: str) -> None:
    parser = argparse.ArgumentParser(
        prog=program,
        description=(
            "Compare runs: group run directories by configuration (their overrides without seed), "
            "rank the groups by the objective with its mean ± std, IQM and 95% bootstrap CI over "
            "seeds, write report.csv and learning-curve PNGs, and list failed sweep jobs. RL and "
            "DL runs are reported in separate tables."
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="DIR", help="run or sweep directories")
    parser.add_argument(
        "--metric",
        action="append",
        default=[],
        help="a metric of metrics.jsonl to plot against steps (repeatable; default: the "
        "objective, e.g. eval/mean_return or val/acc)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where report.csv and the PNGs go (default: the first sweep directory given, else "
        "the current directory)",
    )
    args = parser.parse_args(list(argv))
    report(args.paths, args.metric, args.out)


def run(program: str) -> None:
    """`python -m rl_runner.report` / `python -m dl_runner.report`: a user error is one paragraph
    and exit status 2, not a traceback."""
    from runner_core.errors import RunnerError

    try:
        main(sys.argv[1:], program)
    except RunnerError as err:
        print(f"Error: {err}", file=sys.stderr, flush=True)
        sys.exit(err.exit_code)
