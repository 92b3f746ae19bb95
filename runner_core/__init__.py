"""Shared core of the experiment runner: the `train` entrypoint and family dispatch, config
validation, run directory, metrics logger, checkpoints, device, seeding and network builders.

Importing this package is cheap (no torch, no gymnasium): the CLI answers --help without them.
"""

import re

from omegaconf import OmegaConf


def _subject(family: str, env_name: str, dataset_name: str) -> str:
    """What a run learns from: the env for RL, the data set for DL (used in run names)."""
    return dataset_name if family == "dl" else env_name


def _env_name(env_id: str) -> str:
    """A run-name-friendly env id: `my_pkg.envs:MyEnv-v0` -> `MyEnv-v0`."""
    name = str(env_id).rpartition(":")[2]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "gym"


if not OmegaConf.has_resolver("subject"):
    OmegaConf.register_new_resolver("subject", _subject)
if not OmegaConf.has_resolver("env_name"):
    OmegaConf.register_new_resolver("env_name", _env_name)
