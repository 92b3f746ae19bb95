"""The real config tree composes: every option of every group, for both primary configs; tuned
presets apply to their pair only and CLI overrides still win; `name` resolves."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from runner_core.entrypoint import CONF_DIR, mode_is_unset
from tests.conftest import compose_cfg, options

PRIMARY = ("train", "dl")
GROUPS = sorted(
    p.name
    for p in CONF_DIR.iterdir()
    if p.is_dir() and p.name not in ("tuned", "hydra", "hparams_search")
)
GROUP_OPTIONS = [(g, o) for g in GROUPS for o in options(g)]


def _yaml(path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def _leaves(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_groups_are_found():
    assert {"algo", "env", "network", "device", "dataset", "logger", "checkpoint", "eval"} <= set(
        GROUPS
    )
    assert {"ppo", "dqn", "supervised"} <= set(options("algo"))
    assert {"cartpole", "gym", "pendulum"} <= set(options("env"))


@pytest.mark.parametrize("config_name", PRIMARY)
@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_every_option_composes(config_name, group, option):
    cfg = compose_cfg([f"{group}={option}"], config_name, fast=False)
    node = cfg[group]
    expected = {k for k in _yaml(CONF_DIR / group / f"{option}.yaml") if k != "defaults"}
    assert set(node.keys()) == expected
    # everything resolves (env=gym leaves env.id missing on purpose: ???)
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    assert isinstance(cfg.name, str)
    assert cfg.name
    if group in ("algo", "env", "dataset"):
        assert node.name == option


def test_hydra_group_composes():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", return_hydra_config=True)
    assert cfg.hydra.job.chdir is False
    assert "${name}" in OmegaConf.to_container(cfg.hydra.run, resolve=False)["dir"]
    assert cfg.hydra.help.app_name == "rl_runner"


def test_no_config_sets_hydra_mode():
    """What lets the entrypoint answer Hydra's mode probe without composing (`mode_is_unset`)."""
    for path in sorted(CONF_DIR.rglob("*.yaml")):
        tree = _yaml(path)
        hydra_node = tree if path.parent.name == "hydra" else tree.get("hydra") or {}
        assert "mode" not in hydra_node, f"{path} sets hydra.mode"
    for config_name in PRIMARY:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            assert compose(config_name, return_hydra_config=True).hydra.mode is None


@pytest.mark.parametrize(
    ("overrides", "argv_extra", "unset"),
    [
        (["algo=dqn", "seed=3", "hydra.run.dir=/tmp/x", "hydra.job.chdir=true"], [], True),
        (["hydra.sweep.dir=/tmp/s", "hydra.verbose=true"], ["--multirun"], True),
        (["hydra.mode=MULTIRUN"], [], False),
        (["hydra/launcher=basic"], [], False),
        (["hydra.searchpath=[pkg://x]"], [], False),
        (["+experiment=big"], [], False),
        (["++algo.lr=1"], [], False),
        (["~algo.lr"], [], False),
        (["algo=ppo"], ["--config-dir=/elsewhere"], False),
        (["algo=ppo"], ["-cn", "other"], False),
    ],
)
def test_mode_probe_is_skipped_only_when_nothing_can_set_the_mode(overrides, argv_extra, unset):
    assert mode_is_unset(overrides, [*argv_extra, *overrides]) is unset


def test_primary_defaults():
    train = compose_cfg(fast=False)
    assert (train.algo.name, train.env.name, train.algo.family) == ("ppo", "cartpole", "rl")
    dl = compose_cfg(config_name="dl", fast=False)
    assert (dl.algo.name, dl.dataset.name, dl.algo.family) == ("supervised", "digits", "dl")
    assert train.resume is None
    assert train.seed == 0


def _tuned_pairs():
    """(config_name, overrides choosing the pair, preset file) for every tuned preset."""
    second_group = {"rl": "env", "dl": "dataset"}
    pairs = []
    for family, group in second_group.items():
        for path in sorted((CONF_DIR / "tuned" / family).glob("*.yaml")):
            matches = [
                (algo, other)
                for algo in options("algo")
                for other in options(group)
                if path.stem == f"{algo}_{other}"
            ]
            assert len(matches) == 1, f"{path} names no (algo, {group}) pair"
            algo, other = matches[0]
            config_name = "dl" if family == "dl" else "train"
            pairs.append(
                pytest.param(config_name, [f"algo={algo}", f"{group}={other}"], path, id=path.stem)
            )
    return pairs


@pytest.mark.parametrize(("config_name", "overrides", "preset"), _tuned_pairs())
def test_tuned_preset_applies_to_its_pair(config_name, overrides, preset):
    cfg = compose_cfg(overrides, config_name, fast=False)
    for key, value in _leaves(_yaml(preset)).items():
        assert OmegaConf.select(cfg, key) == value, key


@pytest.mark.parametrize(("config_name", "overrides", "preset"), _tuned_pairs())
def test_cli_overrides_beat_tuned_presets(config_name, overrides, preset):
    leaves = {k: v for k, v in _leaves(_yaml(preset)).items() if isinstance(v, int | float)}
    key, value = next((k, v) for k, v in leaves.items() if not isinstance(v, bool))
    new = value * 2 + 1
    cfg = compose_cfg([*overrides, f"{key}={new}"], config_name, fast=False)
    assert OmegaConf.select(cfg, key) == new


def test_ppo_cartpole_preset_values():
    cfg = compose_cfg(["algo=ppo", "env=cartpole"], fast=False)
    assert cfg.algo.num_steps == 32
    assert cfg.algo.num_epochs == 20
    assert cfg.algo.total_steps == 100_000
    assert cfg.algo.gamma == 0.98
    override = compose_cfg(["algo=ppo", "env=cartpole", "algo.num_steps=64"], fast=False)
    assert override.algo.num_steps == 64
    assert override.algo.num_epochs == 20  # the rest of the preset still applies


def test_presets_do_not_leak_to_other_pairs():
    # cem has a CartPole preset (a 16-unit network) and none for Acrobot
    cem_acrobot = compose_cfg(["algo=cem", "env=acrobot"], fast=False)
    assert cem_acrobot.algo.generations == _yaml(CONF_DIR / "algo" / "cem.yaml")["generations"]
    assert list(cem_acrobot.network.hidden) == [64, 64]
    assert list(compose_cfg(["algo=cem", "env=cartpole"], fast=False).network.hidden) == [16]
    # two presets of one algo each keep their own values
    dqn_acrobot = compose_cfg(["algo=dqn", "env=acrobot"], fast=False)
    assert dqn_acrobot.algo.train_freq == 4
    assert dqn_acrobot.algo.target_update_interval == 250
    dqn_cartpole = compose_cfg(["algo=dqn", "env=cartpole"], fast=False)
    assert dqn_cartpole.algo.train_freq == 256
    assert list(dqn_cartpole.network.hidden) == [256, 256]


@pytest.mark.parametrize(
    ("config_name", "overrides", "name"),
    [
        ("train", [], "ppo_cartpole"),
        ("train", ["algo=dqn", "env=acrobot"], "dqn_acrobot"),
        ("train", ["env=gym", "env.id=Acrobot-v1"], "ppo_Acrobot-v1"),
        ("train", ["algo=supervised"], "supervised_digits"),
        ("dl", [], "supervised_digits"),
        ("dl", ["env=taxi"], "supervised_digits"),  # dl runs are named after their data set
    ],
)
def test_name_interpolation(config_name, overrides, name):
    assert compose_cfg(overrides, config_name, fast=False).name == name


def test_train_with_supervised_gets_dl_preset():
    cfg = compose_cfg(["algo=supervised"], fast=False)
    assert cfg.algo.family == "dl"
    assert cfg.algo.epochs == 60  # tuned/dl/supervised_digits.yaml
    assert list(cfg.network.hidden) == [256, 128]
