"""Networks built from the `network` config group by role.

`conf/network/<name>.yaml` names a builder with `_target_` and its settings; sizes come from the
env or the data at run time. An algorithm or task builds each of its networks for a role
(actor, critic, q, model, encoder, ...): the role's settings are the `network` node's, with the
keys of `network.<role>` (if given: `network.actor.hidden=[256,256]`) overriding them.

A built network is `Network(encoder, body)`: the encoder turns observations of one kind into what
the body takes (one-hot for discrete states, float channels-first for uint8 images, unchanged
vectors), so the same body YAML serves every env.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from runner_core.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from runner_core.networks.encoders import Network

__all__ = ["CNN", "MLP", "adam", "build", "check_roles", "count_parameters", "role_config"]

# the builders, imported on first use (this package's config helpers need no torch: the numpy
# backend reads role settings without importing it)
_LAZY = {"MLP": "runner_core.networks.mlp", "CNN": "runner_core.networks.cnn",
         "Network": "runner_core.networks.encoders"}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# keys of a network node that are not settings of its builder
_META = ("_target_",)


def role_config(net: DictConfig, role: str) -> dict[str, Any]:
    """The settings of `role`: the network node's own keys, overridden by `network.<role>`."""
    tree = OmegaConf.to_container(net, resolve=True)
    assert isinstance(tree, dict)
    base = {k: v for k, v in tree.items() if not isinstance(v, dict)}
    return {**base, **(tree.get(role) or {})}


def check_roles(net: DictConfig, roles: Sequence[str], who: str) -> None:
    """Refuse `network.<x>` nodes that are not roles of `who`, and role keys the builder does
    not have (a typo would otherwise be ignored)."""
    tree = OmegaConf.to_container(net, resolve=True)
    assert isinstance(tree, dict)
    settings = sorted(k for k, v in tree.items() if not isinstance(v, dict) and k not in _META)
    for name, value in tree.items():
        if not isinstance(value, dict):
            continue
        if name not in roles:
            raise ConfigError(
                f"Config key 'network.{name}' names no network of {who}: its networks (roles) "
                f"are {', '.join(roles)}. Override one with network.<role>.<key>=..."
            )
        unknown = sorted(set(value) - set(settings))
        if unknown:
            raise ConfigError(
                f"Config key 'network.{name}.{unknown[0]}' is not a setting of this network "
                f"({tree.get('_target_')}); its settings are {', '.join(settings)}."
            )


def check_settings(net: DictConfig, role: str, settings: dict[str, Any]) -> None:
    """The builder's own `rules` on the role's settings, each key named where it is set
    (`network.<key>`, or `network.<role>.<key>` for a role's override)."""
    from hydra.utils import get_class

    from runner_core.validation import Rule, check

    try:
        builder = get_class(str(settings.get("_target_")))
    except Exception as exc:
        raise ConfigError(
            f"Config key 'network._target_' is {settings.get('_target_')!r}, which cannot be "
            f"imported ({exc})."
        ) from None
    overridden = set(net.get(role) or {})

    def where(key: str) -> str:
        return f"network.{role}.{key}" if key in overridden else f"network.{key}"

    rules = [
        Rule(where(r.key), r.test, r.allowed, r.optional) for r in getattr(builder, "rules", ())
    ]
    # the effective values, at both the shared and the role's key
    check(OmegaConf.create({"network": {**settings, role: settings}}), rules)


def build(
    net: DictConfig,
    role: str,
    obs_kind: str,
    obs_shape: tuple[int, ...],
    out_features: int,
    n_states: int | None = None,
) -> Network:
    """The network for `role`: an encoder for observations of `obs_kind` ("vector", "image",
    "discrete" with `n_states`) and shape `obs_shape`, then the configured body with
    `out_features` outputs."""
    from hydra.utils import instantiate

    from runner_core.networks.encoders import Network, encoder_for

    encoder, shape = encoder_for(obs_kind, obs_shape, n_states)
    settings = role_config(net, role)
    check_settings(net, role, settings)
    try:
        body = instantiate(settings, in_shape=shape, out_features=out_features)
    except ConfigError:
        raise
    except Exception as exc:  # Hydra wraps the builder's own error
        cause = exc.__cause__ if isinstance(exc.__cause__, ConfigError) else None
        if cause is not None:
            raise cause from None
        reason = " ".join(str(exc).split())
        raise ConfigError(
            f"Cannot build the {role} network from network={settings.get('_target_')}: {reason}"
        ) from None
    return Network(encoder, body)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def adam(params: Any, lr: float, device: torch.device, **kwargs: Any) -> torch.optim.Adam:
    """`torch.optim.Adam`, with the fused single-kernel update where torch has one (CPU, CUDA)."""
    import torch

    fused = device.type in ("cpu", "cuda")
    return torch.optim.Adam(params, lr=lr, fused=fused or None, **kwargs)
