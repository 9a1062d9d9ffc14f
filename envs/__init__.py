"""diffctl.envs: pure, batched, differentiable torch environments."""

from .base import Env, EnvSpec, angle_normalize
from .registry import make, register, registered_names
from .vec_env import VecEnv

__all__ = ["Env", "EnvSpec", "VecEnv", "angle_normalize", "make", "register", "registered_names"]
