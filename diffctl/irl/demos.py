"""Expert demonstrations: validation against an env / MDP and empirical statistics."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from diffctl.data import Trajectory
from diffctl.mdp import FiniteMDP, MDPSamples

__all__ = ["check_demos", "finite_demo_states", "empirical_occupancy", "empirical_initial"]


def check_demos(demos: Any, spec: Any, name: str = "demos") -> Trajectory:
    """Validate a ``Trajectory`` of demonstrations against an ``EnvSpec``; returns it.

    Raises ``ValueError`` naming ``name`` for an empty set or dimensions that do not match
    the env (observations, actions, states), ``TypeError`` for a wrong type.
    """
    if not isinstance(demos, Trajectory):
        raise TypeError(f"{name}: expected a diffctl.data.Trajectory, got {type(demos).__name__}")
    if demos.obs.shape[0] == 0 or demos.obs.shape[1] == 0:
        raise ValueError(f"{name}: empty demonstration set (shape {tuple(demos.obs.shape)})")
    if demos.obs.shape[-1] != spec.obs_dim:
        raise ValueError(
            f"{name}: observations have {demos.obs.shape[-1]} dims, env {spec.name!r} has "
            f"obs_dim {spec.obs_dim}"
        )
    if spec.discrete:
        if demos.actions.dim() != 2:
            raise ValueError(
                f"{name}: env {spec.name!r} has discrete actions, demos have "
                f"actions of shape {tuple(demos.actions.shape)}"
            )
    elif demos.actions.dim() != 3 or demos.actions.shape[-1] != spec.act_dim:
        raise ValueError(
            f"{name}: actions have shape {tuple(demos.actions.shape)}, env {spec.name!r} has "
            f"act_dim {spec.act_dim}"
        )
    if demos.states is not None and demos.states.shape[-1] != spec.state_dim:
        raise ValueError(
            f"{name}: states have {demos.states.shape[-1]} dims, env {spec.name!r} has "
            f"state_dim {spec.state_dim}"
        )
    return demos


def finite_demo_states(
    demos: MDPSamples | Tensor, mdp: FiniteMDP, name: str = "demos"
) -> tuple[Tensor, Tensor]:
    """States ``[T, B]`` (int64) and validity mask ``[T, B]`` of finite-MDP demonstrations.

    ``demos`` is an ``MDPSamples`` (its first ``T`` states with ``valid``) or an int64 tensor of
    state indices ``[T, B]`` (all valid).
    """
    if isinstance(demos, MDPSamples):
        states, valid = demos.states[:-1], demos.valid
    elif isinstance(demos, Tensor):
        states = demos
        if states.dim() == 1:
            states = states[:, None]
        valid = torch.ones_like(states, dtype=torch.bool)
    else:
        raise TypeError(
            f"{name}: expected MDPSamples or an int64 tensor of states [T, B], got "
            f"{type(demos).__name__}"
        )
    if states.dtype not in (torch.int64, torch.int32) or states.dim() != 2:
        raise ValueError(
            f"{name}: expected int64 state indices [T, B], got {states.dtype} {tuple(states.shape)}"
        )
    if states.numel() == 0 or not bool(valid.any()):
        raise ValueError(f"{name}: empty demonstration set")
    if ((states < 0) | (states >= mdp.num_states)).any():
        raise ValueError(
            f"{name}: state indices must lie in [0, {mdp.num_states}) (demos do not match the MDP)"
        )
    return states.long().to(mdp.device), valid.to(mdp.device)


def empirical_occupancy(
    states: Tensor, valid: Tensor, num_states: int, gamma: float, dtype: torch.dtype = torch.float64
) -> Tensor:
    """Discounted visitation counts averaged over demos, ``[S]``:
    ``(1/B) sum_b sum_t gamma^t 1[s_t^b = s]``."""
    T, B = states.shape
    w = (gamma ** torch.arange(T, dtype=dtype, device=states.device))[:, None] * valid.to(dtype)
    D = torch.zeros(num_states, dtype=dtype, device=states.device)
    D.index_add_(0, states.reshape(-1), w.reshape(-1))
    return D / B


def empirical_initial(
    states: Tensor, num_states: int, dtype: torch.dtype = torch.float64
) -> Tensor:
    """Start-state distribution of the demos, ``[S]``."""
    p = torch.bincount(states[0], minlength=num_states).to(dtype)
    return p / p.sum()
