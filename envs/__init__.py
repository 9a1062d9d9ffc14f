"""diffctl.envs: pure, batched, differentiable torch environments.

``to_gymnasium``, ``to_gymnasium_vector`` and ``from_gymnasium`` (in ``gym_adapters``) are
imported on first use, so ``import diffctl.envs`` works without gymnasium installed.
"""

from typing import Any

from .base import Env, EnvSpec, angle_normalize, any_true, as_device
from .registry import make, register, registered_names
from .vec_env import VecEnv

_GYM_ADAPTERS = ("from_gymnasium", "to_gymnasium", "to_gymnasium_vector")

__all__ = [
    "Env",
    "EnvSpec",
    "VecEnv",
    "angle_normalize",
    "any_true",
    "as_device",
    "from_gymnasium",
    "make",
    "register",
    "registered_names",
    "to_gymnasium",
    "to_gymnasium_vector",
]


def __getattr__(name: str) -> Any:
    if name in _GYM_ADAPTERS:
        try:
            from . import gym_adapters  # needs gymnasium
        except ModuleNotFoundError as e:
            if e.name != "gymnasium":
                raise
            raise ModuleNotFoundError(
                f"{name} needs gymnasium, which is not installed: pip install 'diffctl[gym]' "
                "(also in [all])",
                name="gymnasium",
            ) from e

        return getattr(gym_adapters, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
