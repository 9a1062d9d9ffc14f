"""diffctl.data: trajectories, rollouts, returns, replay buffers (uniform and prioritised),
datasets, normalisers."""

from ._io import atomic_write, content_digest
from .buffer import ReplayBuffer
from .dataset import load_dataset, save_dataset, spec_to_dict
from .normalize import RunningNormalizer
from .prioritized import PrioritizedReplayBuffer, SumTree
from .returns import (
    discounted_returns,
    gae,
    n_step_returns,
    n_step_targets,
    rewards_to_go,
    td_lambda,
)
from .rollout import Policy, rollout
from .trajectory import Trajectory

__all__ = [
    "atomic_write",
    "content_digest",
    "Policy",
    "PrioritizedReplayBuffer",
    "ReplayBuffer",
    "RunningNormalizer",
    "SumTree",
    "Trajectory",
    "discounted_returns",
    "gae",
    "load_dataset",
    "n_step_returns",
    "n_step_targets",
    "rewards_to_go",
    "rollout",
    "save_dataset",
    "spec_to_dict",
    "td_lambda",
]
