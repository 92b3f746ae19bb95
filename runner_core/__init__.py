"""Shared core of the experiment runner: the `train` entrypoint and family dispatch, config
validation, run directory, metrics logger, checkpoints, device, seeding and network builders.

Importing this package is cheap (no torch, no gymnasium): the CLI answers --help without them.
"""

from omegaconf import OmegaConf


def _subject(family: str, env_name: str, dataset_name: str) -> str:
    """What a run learns from: the env for RL, the data set for DL (used in run names)."""
    return dataset_name if family == "dl" else env_name


if not OmegaConf.has_resolver("subject"):
    OmegaConf.register_new_resolver("subject", _subject)
