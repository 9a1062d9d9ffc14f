"""diffctl.data: trajectories, rollouts, returns, replay buffer, datasets, normalisers."""

from ._io import atomic_write, content_digest
from .buffer import ReplayBuffer
from .dataset import load_dataset, save_dataset, spec_to_dict
from .normalize import RunningNormalizer
from .returns import discounted_returns, gae, rewards_to_go, td_lambda
from .rollout import Policy, rollout
from .trajectory import Trajectory

__all__ = [
    "atomic_write",
    "content_digest",
    "Policy",
    "ReplayBuffer",
    "RunningNormalizer",
    "Trajectory",
    "discounted_returns",
    "gae",
    "load_dataset",
    "rewards_to_go",
    "rollout",
    "save_dataset",
    "spec_to_dict",
    "td_lambda",
]
