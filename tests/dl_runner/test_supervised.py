"""The DL tasks and the DL trainer through `train()`."""

from __future__ import annotations

import math

import pytest
import torch

from dl_runner.data import load_data
from dl_runner.tasks.supervised import Supervised
from runner_core.errors import ConfigError
from tests.conftest import (
    algo_family,
    assert_run_dir,
    compose_cfg,
    options,
    read_metrics,
    run_train,
    steps_by_tag,
)

STEPS_PER_EPOCH = 20  # ceil(1259 training images / batch 64)


DL_TASKS = [a for a in options("algo") if algo_family(a) == "dl"]
OBJECTIVES = {"supervised": ("val/acc", "max"), "autoencoder": ("val/mse", "min")}


@pytest.mark.parametrize("algo", DL_TASKS)
def test_dl_task_on_digits(tmp_path, algo):
    cfg = compose_cfg([f"algo={algo}"], "dl")
    run_dir = tmp_path / "run"
    objective = run_train(cfg, run_dir)
    summary = assert_run_dir(run_dir)
    assert (summary["objective_name"], summary["objective_mode"]) == OBJECTIVES[algo]
    assert summary["objective"] == pytest.approx(objective)
    assert summary["global_step"] == 2 * STEPS_PER_EPOCH
    assert summary["dataset"] == "digits"
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    tags = steps_by_tag(read_metrics(run_dir))
    assert tags["train/loss"] == list(range(10, 2 * STEPS_PER_EPOCH + 1, 10))  # every 10 steps
    assert tags[OBJECTIVES[algo][0]] == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
    assert tags["test/loss"] == [2 * STEPS_PER_EPOCH]


def test_every_task_declares_a_known_objective():
    assert set(DL_TASKS) == set(OBJECTIVES), "a new DL task needs its objective listed here"


@pytest.mark.parametrize("network", ["mlp", "cnn"])
def test_supervised_with_each_network(tmp_path, network):
    run_train(compose_cfg([f"network={network}", "algo.epochs=1"], "dl"), tmp_path / "run")
    summary = assert_run_dir(tmp_path / "run")
    assert 0.0 <= summary["test/acc"] <= 1.0


def test_train_config_dispatches_to_dl(tmp_path):
    cfg = compose_cfg(["algo=supervised", "algo.epochs=1"], "train")
    run_train(cfg, tmp_path / "run")
    assert assert_run_dir(tmp_path / "run")["global_step"] == STEPS_PER_EPOCH


def test_sgd_constant_schedule(tmp_path):
    cfg = compose_cfg(["algo.optimizer=sgd", "algo.lr_schedule=constant", "algo.lr=0.05",
                       "network.batchnorm=true", "algo.epochs=1"], "dl")  # fmt: skip
    run_train(cfg, tmp_path / "run")
    lrs = {r["train/lr"] for r in read_metrics(tmp_path / "run") if "train/lr" in r}
    assert lrs == {0.05}


def test_cosine_schedule_decays_to_zero(tmp_path):
    run_train(compose_cfg([], "dl"), tmp_path / "run")
    lrs = [r["train/lr"] for r in read_metrics(tmp_path / "run") if "train/lr" in r]
    assert lrs[0] < 1e-3
    assert lrs[0] > lrs[len(lrs) // 2] > lrs[-1]
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)


def test_supervised_training_step_and_metrics():
    cfg = compose_cfg(["network.hidden=[16]", "network.dropout=0.0"], "dl")
    data = load_data(cfg.dataset, 0, torch.device("cpu"))
    torch.manual_seed(0)
    task = Supervised(cfg, data, torch.device("cpu"), total_steps=100)
    (x, y), (vx, vy) = (d.tensors for d in (data.train, data.val))
    with torch.no_grad():
        before = {k: v.mean().item() for k, v in task.metrics(vx, vy).items()}
    for _ in range(30):
        stats = task.training_step(x[:256], y[:256])
    with torch.no_grad():
        after = {k: v.mean().item() for k, v in task.metrics(vx, vy).items()}
    assert set(stats) == {"loss", "lr"}
    assert math.isfinite(stats["loss"])
    assert after["loss"] < before["loss"]
    assert after["acc"] > before["acc"]
    assert set(task.stateful()) == {"model", "optimizer", "scheduler"}


@pytest.mark.parametrize(
    ("override", "key", "value"),
    [
        ("algo.optimizer=rmsprop", "algo.optimizer", "'rmsprop'"),
        ("algo.epochs=0", "algo.epochs", "0"),
        ("algo.lr=-1", "algo.lr", "-1"),
        ("algo.label_smoothing=1.0", "algo.label_smoothing", "1.0"),
        ("network.activation=gelu", "network.activation", "'gelu'"),
        ("network.dropout=1.0", "network.dropout", "1.0"),
    ],
)
def test_bad_dl_config_is_refused(tmp_path, override, key, value):
    with pytest.raises(ConfigError) as err:
        run_train(compose_cfg([override], "dl"), tmp_path / "run")
    assert f"'{key}'" in str(err.value)
    assert f"value {value}" in str(err.value)
    assert not (tmp_path / "run").exists()
