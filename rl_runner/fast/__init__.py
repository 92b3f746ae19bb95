"""The numpy backend: versions of some algorithms for small MLPs on the CPU, in numpy alone.

Every algorithm is written once as its maths in torch autograd (`rl_runner.algos`): that is the
reference. For PPO and DQN, whose CPU runs on small MLPs are dominated by torch's per-call
overhead, this package holds numpy versions (`FastPPO`, `FastDQN`) that subclass the reference,
keep its config, state-dict keys, initial weights, random draws and logs, and replace its
networks, gradients and optimizer with numpy (`nets.py`). Agreement tests hold each to its
reference update for update. A run on this backend never imports torch (its checkpoints are
written by `torchfile.py` in torch's own format), and its periodic evaluations can run in a
forked process.

The trainer asks `variant(cls, cfg, spec)` which class to run: the numpy version where one
exists and the run qualifies (and the device resolves to the CPU), else the reference. No
algorithm file imports this package; `device.backend=torch` turns it off.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from rl_runner.specs import EnvSpec
from runner_core import checkpoint

# the reference class's import path -> its numpy version's
VARIANTS = {
    "rl_runner.algos.on_policy.ppo.PPO": "rl_runner.fast.ppo.FastPPO",
    "rl_runner.algos.off_policy.dqn.DQN": "rl_runner.fast.dqn.FastDQN",
}
PLAIN_MLP = ("runner_core.networks.MLP", "runner_core.networks.mlp.MLP")
ACTIVATIONS = ("tanh", "relu", "sigmoid")


def why_not(cls: type, cfg: DictConfig, spec: EnvSpec) -> str | None:
    """Why this run cannot use a numpy version of `cls` (None: it can)."""
    from runner_core.networks import role_config

    name = f"{cls.__module__}.{cls.__qualname__}"
    if name not in VARIANTS:
        return f"algo={cfg.algo.name} has none"
    if spec.obs_kind == "image" or (spec.obs_kind == "vector" and len(spec.obs.shape) != 1):
        return f"it needs 1-d vector or discrete observations; {spec.id} has {spec.obs_kind} ones"
    if spec.action_kind != "discrete":
        return f"it needs discrete actions; {spec.id} has {spec.action_kind} ones"
    for role in cls.roles:
        net = role_config(cfg.network, role)
        if net.get("_target_") not in PLAIN_MLP:
            return f"the {role} network is {net.get('_target_')}, not a plain MLP"
        if net.get("batchnorm") or float(net.get("dropout", 0.0)) > 0:
            return f"the {role} network has batchnorm or dropout"
        if net.get("activation") not in ACTIVATIONS:
            return f"the {role} network's activation is {net.get('activation')}"
    return None


def variant(cls: type, cfg: DictConfig, spec: EnvSpec) -> type | None:
    """The numpy version of `cls` for this run, or None."""
    if why_not(cls, cfg, spec) is not None:
        return None
    from hydra.utils import get_class

    return get_class(VARIANTS[f"{cls.__module__}.{cls.__qualname__}"])


def _torch_free_writer(state: dict[str, Any], f: Any) -> None:
    from rl_runner.fast import torchfile

    torchfile.dump(state, f)


# checkpoints of runs that never import torch are written in torch's format without it
checkpoint.TORCH_FREE_WRITER = _torch_free_writer
