"""Name -> environment factory registry and ``make``."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .base import Env

__all__ = ["make", "register", "registered_names"]

# name -> "module:attr" (imported lazily) or a callable returning an Env.
_REGISTRY: dict[str, str | Callable[..., Env]] = {
    "pendulum": "diffctl.envs.pendulum:Pendulum",
    "cartpole": "diffctl.envs.cartpole:CartPole",
    "cartpole-continuous": "diffctl.envs.cartpole:CartPoleContinuous",
    "acrobot": "diffctl.envs.acrobot:Acrobot",
    "acrobot-continuous": "diffctl.envs.acrobot:AcrobotContinuous",
    "mountaincar-continuous": "diffctl.envs.mountaincar:MountainCarContinuous",
    "linear": "diffctl.envs.linear:Linear",
    "car": "diffctl.envs.car:Car",
    "reacher": "diffctl.envs.reacher:Reacher",
}


def register(name: str, factory: str | Callable[..., Env], *, overwrite: bool = False) -> None:
    """Register ``factory`` (a callable or ``"module:attr"``) under ``name``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a non-empty string, got {name!r}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"name: {name!r} is already registered (pass overwrite=True)")
    _REGISTRY[name] = factory


def registered_names() -> list[str]:
    """Sorted list of the registered environment names."""
    return sorted(_REGISTRY)


def _resolve(factory: str | Callable[..., Env]) -> Callable[..., Env]:
    if callable(factory):
        return factory
    module, attr = factory.split(":")
    return getattr(importlib.import_module(module), attr)


def make(name: str, **overrides: Any) -> Env:
    """Build a registered environment.

    ``overrides`` are physical parameters (``make("pendulum", m=1.3)``) or constructor
    options (``device=``, ``dtype=``, system-specific flags such as ``swing_up=True``).
    ``"brax:<name>"`` builds a Brax system through the bridge (needs the ``[brax]`` extra);
    ``"mujoco:<Task>-v5"`` one of gymnasium's MuJoCo tasks and ``"mjcf:<path.xml>"`` a user's
    MuJoCo model, both on MuJoCo's C engine (need the ``[mujoco]`` extra).
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a string, got {type(name).__name__}")
    if name.startswith("brax:"):
        from .brax_bridge import make_brax  # optional dependency, imported on demand

        return make_brax(name[len("brax:") :], **overrides)
    if name.startswith("mujoco:"):
        from .mujoco_tasks import make_mujoco  # optional dependency, imported on demand

        return make_mujoco(name[len("mujoco:") :], **overrides)
    if name.startswith("mjcf:"):
        from .mujoco_bridge import make_mjcf

        return make_mjcf(name[len("mjcf:") :], **overrides)
    if name not in _REGISTRY:
        raise ValueError(
            f"name: unknown environment {name!r}; known: {', '.join(registered_names())}"
            " (and 'brax:<name>' with the [brax] extra, 'mujoco:<Task>-v5' and 'mjcf:<path.xml>'"
            " with the [mujoco] extra)"
        )
    return _resolve(_REGISTRY[name])(**overrides)
