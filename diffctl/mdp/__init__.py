"""Finite MDPs: exact policy evaluation (V, Q, A), value / policy iteration, soft value
iteration, state occupancy, tabular Q-learning, gridworld and objectworld generators."""

from .core import FiniteMDP, as_policy_matrix
from .qlearning import QLearningResult, q_learning
from .solvers import (
    MDPSamples,
    PlanningResult,
    PolicyValues,
    SoftResult,
    expected_return,
    greedy_policy,
    policy_evaluation,
    policy_iteration,
    sample_trajectories,
    soft_value_iteration,
    state_occupancy,
    value_iteration,
)
from .worlds import MOVES, grid_features, grid_transitions, gridworld, objectworld

__all__ = [
    "FiniteMDP",
    "as_policy_matrix",
    "QLearningResult",
    "q_learning",
    "MDPSamples",
    "PlanningResult",
    "PolicyValues",
    "SoftResult",
    "expected_return",
    "greedy_policy",
    "policy_evaluation",
    "policy_iteration",
    "sample_trajectories",
    "soft_value_iteration",
    "state_occupancy",
    "value_iteration",
    "MOVES",
    "grid_features",
    "grid_transitions",
    "gridworld",
    "objectworld",
]
