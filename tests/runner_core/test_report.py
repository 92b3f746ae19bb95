"""The comparison report (`python -m rl_runner.report`, and the table at the end of a --multirun):
its statistics on numbers worked out by hand, grouping and tables on hand-made run directories,
and a real 2x2 sweep with 2 seeds."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from runner_core import report
from tests.conftest import read_summary, run_cli


# statistics --------------------------------------------------------------------------------------
def test_iqm_is_the_mean_of_the_middle_half():
    assert report.iqm([1, 2, 3, 4, 5, 6, 7, 8]) == 4.5  # 3, 4, 5, 6
    assert report.iqm([8, 1, 4, 2]) == 3.0  # 2, 4 of 1, 2, 4, 8
    assert report.iqm([1, 2, 3, 4, 100]) == 3.0  # 2, 3, 4: the outlier is cut
    assert report.iqm([2, 4]) == 3.0  # fewer than 4 values: nothing is cut


def test_bootstrap_ci_on_exactly_known_distributions():
    # two seeds: a resample's mean is 1, 2 or 3 with probability 1/4, 1/2, 1/4, so the 2.5th
    # and 97.5th percentiles are 1 and 3
    assert report.bootstrap_ci([1.0, 3.0]) == (1.0, 3.0)
    # [0, 0, 3]: a resample's mean is k (k threes drawn) with P(k=3) = 1/27 = 3.7% > 2.5% and
    # P(k=0) = 8/27 > 2.5%, so the interval is [0, 3]; the IQM of three values is their mean
    assert report.bootstrap_ci([0.0, 0.0, 3.0]) == (0.0, 3.0)
    assert report.bootstrap_ci([5.0, 5.0, 5.0]) == (5.0, 5.0)
    assert all(math.isnan(v) for v in report.bootstrap_ci([7.0]))


def test_bootstrap_ci_of_the_iqm_agrees_with_a_plain_resampling_loop():
    data = np.array([3.0, 9.0, 1.0, 7.0, 4.0, 12.0, 6.0, 8.0])
    low, high = report.bootstrap_ci(data)
    assert (low, high) == report.bootstrap_ci(data)  # a fixed seed: the same report twice
    rng = np.random.default_rng(1)
    draws = np.sort(data[rng.integers(0, data.size, size=(20_000, data.size))], axis=1)
    iqms = draws[:, 2:6].mean(axis=1)  # the middle 4 of 8
    expected = np.percentile(iqms, [2.5, 97.5])
    assert low < report.iqm(data) < high
    assert abs(low - expected[0]) <= 0.25 and abs(high - expected[1]) <= 0.25, (low, high)


def test_mean_and_sample_std():
    mean, std = report.mean_std([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and std == pytest.approx(statistics.stdev([1, 2, 3, 4]))
    assert math.isnan(report.mean_std([3.0])[1])


def test_mean_curve_reads_each_seed_at_every_logged_step():
    steps, mean, low, high = report.mean_curve(
        [([0, 10], [0.0, 10.0]), ([0, 5, 10], [2.0, 7.0, 12.0])]
    )
    assert steps.tolist() == [0, 5, 10]
    assert mean.tolist() == [1.0, 6.0, 11.0]  # the first seed read at step 5 between its points
    assert low.tolist() == [0.0, 5.0, 10.0] and high.tolist() == [2.0, 7.0, 12.0]  # two seeds
    steps, mean, low, _ = report.mean_curve([([0, 100], [1.0, 2.0])])
    assert mean.tolist() == [1.0, 2.0] and np.isnan(low).all()  # one seed: no band


# hand-made run directories -----------------------------------------------------------------------
def make_run(folder: Path, overrides: list[str], summary: dict | None = None,
             curve: list[tuple[int, float]] = (), failed: str | None = None) -> Path:  # fmt: skip
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))
    if failed is not None:
        record = {"job": 0, "overrides": overrides, "error": failed, "kind": "ConfigError"}
        (folder / "failed.json").write_text(json.dumps(record))
    name = (summary or {}).get("objective_name", "eval/mean_return")
    lines = [json.dumps({"step": s, "wall_time": 0.0, name: v}) for s, v in curve]
    (folder / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    return folder


def rl_summary(value: float, seed: int) -> dict:
    return {"objective": value, "objective_name": "eval/mean_return", "objective_mode": "max",
            "eval/mean_return": value, "eval/best_mean_return": value + 1, "global_step": 100,
            "unit": "steps", "wall_time_s": 1.0, "seed": seed, "env_id": "CartPole-v1",
            "algo": "ppo"}  # fmt: skip


def dl_summary(loss: float, seed: int) -> dict:
    return {"objective": loss, "objective_name": "val/loss", "objective_mode": "min",
            "val/loss": loss, "global_step": 40, "unit": "steps", "wall_time_s": 2.0,
            "seed": seed, "dataset": "digits", "algo": "supervised"}  # fmt: skip


def test_seeds_of_one_setting_form_a_group_and_the_families_get_a_table_each(tmp_path):
    sweep = tmp_path / "sweep"
    # 1e-3 and 0.001 are one learning rate; logger.* and hydra.* keys do not make a setting
    make_run(sweep / "0", ["algo.lr=1e-3", "seed=0", "logger.tensorboard=false"],
             rl_summary(10.0, 0), [(50, 5.0), (100, 10.0)])  # fmt: skip
    make_run(sweep / "1", ["algo.lr=0.001", "seed=1", "hydra.verbose=true"],
             rl_summary(20.0, 1), [(50, 7.0), (100, 20.0)])  # fmt: skip
    make_run(sweep / "2", ["algo.lr=3e-4", "seed=0"], rl_summary(30.0, 0), [(50, 9.0), (100, 30.0)])
    make_run(sweep / "3", ["algo.lr=0", "seed=0"], failed="Config key 'algo.lr' must be > 0.")
    (sweep / "4").mkdir()
    (sweep / "4" / "metrics.jsonl").write_text("")  # a run still going: no summary yet
    dl = tmp_path / "dl"
    for seed, (lr, loss) in enumerate([("0.01", 0.5), ("0.01", 0.7), ("0.1", 0.2)]):
        make_run(dl / str(seed), [f"algo.lr={lr}", f"seed={seed}"], dl_summary(loss, seed),
                 [(20, loss + 1), (40, loss)])  # fmt: skip
    result = run_cli("rl_runner.report", str(sweep), str(dl), "--out", "out", cwd=tmp_path,
                     env={"COLUMNS": "200"})  # fmt: skip
    assert result.rc == 0, result.output
    out = result.stdout
    rl_title, dl_title = out.index("RL runs (CartPole-v1, ppo)"), out.index("DL runs (digits")
    assert rl_title < dl_title and "val/loss, lower is better" in out
    rl_rows = [ln for ln in out[rl_title:dl_title].splitlines() if ln.startswith("│")]
    assert len(rl_rows) == 2 and "3e-4" in rl_rows[0] and "30" in rl_rows[0]  # best first
    assert "★" in rl_rows[0] and "15 ± 7.071" in rl_rows[1]  # seeds 0 and 1 of lr=1e-3
    dl_rows = [ln for ln in out[dl_title:].splitlines() if ln.startswith("│")]
    assert "0.1" in dl_rows[0] and "★" in dl_rows[0]  # the lower loss wins
    assert "Failed jobs (1):" in out and "algo.lr=0 seed=0: Config key 'algo.lr' must be" in out
    assert "Not reported: 1 run directory without summary.json" in out
    with (tmp_path / "out" / "report.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["family"], r["algo.lr"], r["n"], r["winner"]) for r in rows] == [
        ("rl", "3e-4", "1", "True"), ("rl", "1e-3", "2", "False"),
        ("dl", "0.1", "1", "True"), ("dl", "0.01", "2", "False"),
    ]  # fmt: skip
    assert float(rows[1]["mean"]) == 15.0 and float(rows[1]["eval/best_mean_return"]) == 16.0
    assert float(rows[3]["mean"]) == pytest.approx(0.6) and rows[3]["seeds"] == "0 1"
    assert (tmp_path / "out" / "curves_rl_eval_mean_return.png").is_file()
    assert (tmp_path / "out" / "curves_dl_val_loss.png").is_file()


def test_a_path_without_runs_is_one_paragraph_and_exit_2(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    for target in ("empty", "missing"):
        result = run_cli("dl_runner.report", target, cwd=tmp_path)
        assert result.rc == 2 and "Traceback" not in result.output, result.output
        assert result.stderr.startswith(f"Error: '{target}' ") and result.stderr.count("\n") == 1
    assert "holds no runs to report" in run_cli("rl_runner.report", "empty", cwd=tmp_path).stderr


# a real sweep ------------------------------------------------------------------------------------
TINY = ("algo.total_steps=512", "env.num_envs=2", "algo.num_steps=64", "algo.num_epochs=1",
        "eval.episodes=2", "eval.every_steps=128", "checkpoint.every_steps=0",
        "logger.console=off", "device=cpu")  # fmt: skip
EVAL_STEPS = 4  # evaluations at steps 128, 256, 384 and 512


def fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def test_a_2x2_sweep_with_2_seeds_is_reported_by_setting(tmp_path):
    grid = run_cli("rl_runner", "--multirun", "algo.lr=1e-3,3e-3", "algo.gamma=0.98,0.99",
                   "seed=0,1", *TINY, "hydra.sweep.dir=grid", cwd=tmp_path,
                   env={"COLUMNS": "200"})  # fmt: skip
    assert grid.rc == 0, grid.output
    jobs = sorted(p for p in (tmp_path / "grid").iterdir() if p.is_dir())
    assert len(jobs) == 8
    # the objectives of each setting, read from each job's own config and summary
    settings: dict[tuple[float, float], list[float]] = {}
    for job in jobs:
        config = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
        key = (float(config["algo"]["lr"]), float(config["algo"]["gamma"]))
        settings.setdefault(key, []).append(float(read_summary(job)["objective"]))
    assert len(settings) == 4 and all(len(v) == 2 for v in settings.values())
    expected = {k: (statistics.mean(v), statistics.stdev(v)) for k, v in settings.items()}

    # the end of the sweep: the table and sweep_summary.csv
    printed = [ln for ln in grid.stdout.splitlines() if ln.startswith("│")]
    assert len(printed) == 4, grid.stdout
    with (tmp_path / "grid" / "sweep_summary.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 4

    bad = run_cli("rl_runner", "--multirun", "algo.lr=0", *TINY, "hydra.sweep.dir=bad",
                  cwd=tmp_path)  # fmt: skip
    assert bad.rc == 1 and "failed.json" in bad.stderr, bad.output
    assert not (tmp_path / "bad" / "sweep_summary.csv").exists()  # no job finished

    result = run_cli("rl_runner.report", "grid", "bad", cwd=tmp_path,
                     env={"COLUMNS": "200"})  # fmt: skip
    assert result.rc == 0, result.output
    rows = [ln for ln in result.stdout.splitlines() if ln.startswith("│")]
    assert len(rows) == 4, result.stdout
    shown = {f"{fmt(mean)} ± {fmt(std)}": mean for mean, std in expected.values()}
    order = [next(m for text, m in shown.items() if text in row) for row in rows]
    assert sorted(order, reverse=True) == order == sorted(shown.values(), reverse=True)
    assert "★" in rows[0]
    assert "Failed jobs (1):" in result.stdout and "must be a number > 0" in result.stdout

    with (tmp_path / "grid" / "report.csv").open() as f:  # the first sweep dir given
        table = list(csv.DictReader(f))
    assert len(table) == 4
    for row in table:
        mean, std = expected[(float(row["algo.lr"]), float(row["algo.gamma"]))]
        assert float(row["mean"]) == pytest.approx(mean) and float(row["std"]) == pytest.approx(std)
        assert row["n"] == "2" and row["seeds"] == "0 1"
        assert float(row["ci95_low"]) <= float(row["iqm"]) <= float(row["ci95_high"])
    means = [float(r["mean"]) for r in table]
    assert means == sorted(means, reverse=True) and table[0]["winner"] == "True"

    # The PNG: its Description lists the lines matplotlib drew (read back from the figure's
    # Line2D objects before saving). The pixels themselves are not inspected.
    png = tmp_path / "grid" / "curves_rl_eval_mean_return.png"
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 400
        lines = json.loads(image.text["Description"])
    labels = {f"algo.lr={r['algo.lr']} algo.gamma={r['algo.gamma']} (n=2)" for r in table}
    assert {ln["label"] for ln in lines} == labels and len(lines) == 4
    assert all(ln["points"] == EVAL_STEPS for ln in lines)
