"""Margin-based IRL with a linear reward ``r_w(s) = w . phi(s)``.

- ``projection_irl``: apprenticeship learning by feature-expectation matching, projection
  method (Abbeel and Ng 2004, Section 3.1).
- ``max_margin_loss`` / ``max_margin_irl``: the lecture notes' form
  ``min_w ||w||^2 + ReLU(R_w(tau_best) - R_w(tau*))`` where ``tau_best`` is the best
  non-expert trajectory under the current ``w`` (found by planning on a finite MDP), with an
  optional margin (structured max-margin, Ratliff et al. 2006): without one, ``w = 0`` is a
  trivial minimiser.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from diffctl.configs.irl import SampledMarginConfig
from diffctl.mdp import FiniteMDP, MDPSamples, state_occupancy, value_iteration

from .demos import empirical_initial, empirical_occupancy, finite_demo_states
from .reward import RewardConfig, RewardModel

__all__ = [
    "ProjectionConfig",
    "MaxMarginConfig",
    "MarginResult",
    "projection_irl",
    "max_margin_loss",
    "max_margin_irl",
    "SampledMarginConfig",
    "max_margin_irl_sampled",
]


@dataclass(frozen=True)
class ProjectionConfig:
    """Abbeel and Ng's projection method.

    Attributes:
        iterations: maximum number of policies computed.
        epsilon: stop when ``t = ||mu_E - mu_bar||`` falls below it.
        horizon: horizon of the feature expectations (0: the demos' length).
    """

    iterations: int = 50
    epsilon: float = 1e-3
    horizon: int = 0

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"iterations: expected a positive int, got {self.iterations}")
        if not self.epsilon > 0:
            raise ValueError(f"epsilon: expected a positive float, got {self.epsilon}")
        if self.horizon < 0:
            raise ValueError(f"horizon: expected >= 0, got {self.horizon}")


@dataclass(frozen=True)
class MaxMarginConfig:
    """Max-margin IRL by subgradient descent.

    Attributes:
        iterations: subgradient steps.
        lr: Adam step size.
        l2: weight of ``||w||^2``.
        margin: required reward gap between the expert and the best other trajectory.
        horizon: horizon of the feature expectations (0: the demos' length).
    """

    iterations: int = 200
    lr: float = 0.05
    l2: float = 1e-2
    margin: float = 1.0
    horizon: int = 0

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"iterations: expected a positive int, got {self.iterations}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected a positive float, got {self.lr}")
        if self.l2 < 0 or self.margin < 0:
            raise ValueError("l2, margin: expected non-negative floats")
        if self.horizon < 0:
            raise ValueError(f"horizon: expected >= 0, got {self.horizon}")


@dataclass
class MarginResult:
    """Learned linear reward (``RewardModel`` on features), its table ``rewards [S]``, the
    policy (int64 ``[S]``) whose feature expectations came closest to the expert's, and the
    history."""

    reward: RewardModel
    rewards: Tensor
    policy: Tensor
    history: list[dict[str, Any]] = field(default_factory=list)


def _setup(
    mdp: FiniteMDP, demos: MDPSamples | Tensor, horizon: int
) -> tuple[Tensor, Tensor, Tensor, int]:
    if not isinstance(mdp, FiniteMDP):
        raise TypeError(f"mdp: expected a FiniteMDP, got {type(mdp).__name__}")
    if mdp.features is None:
        raise ValueError("mdp: needs state features (FiniteMDP(features=...))")
    states, valid = finite_demo_states(demos, mdp)
    H = horizon or states.shape[0]
    mu_E = empirical_occupancy(states[:H], valid[:H], mdp.num_states, mdp.gamma, mdp.dtype)
    p0 = empirical_initial(states, mdp.num_states, mdp.dtype)
    return mu_E @ mdp.features, p0, mdp.features, H


def _linear_model(w: Tensor) -> RewardModel:
    model = RewardModel(RewardConfig(state_dim=w.shape[0], kind="linear"))
    model.to(dtype=w.dtype, device=w.device)
    with torch.no_grad():
        model.net.weight.copy_(w[None])
    return model


def _feature_expectations(mdp: FiniteMDP, policy: Tensor, p0: Tensor, H: int) -> Tensor:
    return state_occupancy(mdp, policy, p0, horizon=H) @ mdp.features


def projection_irl(
    mdp: FiniteMDP, demos: MDPSamples | Tensor, config: ProjectionConfig = ProjectionConfig()
) -> MarginResult:
    """Apprenticeship learning via IRL, projection method (Abbeel and Ng 2004, Sec. 3.1):
    ``w_i = mu_E - mu_bar_{i-1}``, ``pi_i`` optimal for ``w_i . phi``,
    ``mu_bar_i = mu_bar_{i-1} + proj(mu_E - mu_bar_{i-1} onto mu_i - mu_bar_{i-1})``."""
    mu_E, p0, feats, H = _setup(mdp, demos, config.horizon)
    uniform = torch.full(
        (mdp.num_states, mdp.num_actions), 1.0 / mdp.num_actions, dtype=mdp.dtype, device=mdp.device
    )
    mu_bar = _feature_expectations(mdp, uniform, p0, H)
    w = mu_E - mu_bar
    best_policy, best_dist = None, float("inf")
    history: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for it in range(config.iterations):
        policy = value_iteration(mdp.with_reward(feats @ w), tol=1e-8).policy
        mu = _feature_expectations(mdp, policy, p0, H)
        dist = float((mu - mu_E).norm())
        if dist < best_dist:
            best_policy, best_dist = policy, dist
        d = mu - mu_bar
        denom = d @ d
        if float(denom) > 0:
            mu_bar = mu_bar + ((d @ (mu_E - mu_bar)) / denom) * d  # Abbeel-Ng eq. (projection)
        w = mu_E - mu_bar
        t = float(w.norm())
        history.append(
            {
                "iteration": it + 1,
                "t": t,
                "policy_feature_gap": dist,
                "time": time.perf_counter() - t0,
            }
        )
        if t < config.epsilon:
            break
    return MarginResult(
        reward=_linear_model(w), rewards=feats @ w, policy=best_policy, history=history
    )


def max_margin_loss(
    reward: RewardModel,
    expert: tuple[Tensor, Tensor | None, Tensor | None],
    candidates: tuple[Tensor, Tensor | None, Tensor | None],
    *,
    margin: float = 0.0,
    l2: float = 1.0,
) -> Tensor:
    """``l2 * ||w||^2 + ReLU(margin + max_k R_w(tau_k) - R_w(tau*))`` (lecture notes).

    ``expert`` is ``(x [T, nx], u [T, nu] | None, x_next [T, nx] | None)`` of one expert
    trajectory, ``candidates`` the same with a batch of ``K`` other trajectories
    ``[T, K, ...]``; ``R_w(tau)`` sums the reward over the trajectory and ``||w||^2`` is the sum
    of squares of the reward's parameters.
    """
    R_exp = reward(*expert).sum(0)
    R_cand = reward(*candidates).sum(0)  # [K]
    reg = sum((p**2).sum() for p in reward.parameters())
    return l2 * reg + torch.relu(margin + R_cand.max() - R_exp)


def max_margin_irl(
    mdp: FiniteMDP, demos: MDPSamples | Tensor, config: MaxMarginConfig = MaxMarginConfig()
) -> MarginResult:
    """Max-margin IRL on a finite MDP: subgradient descent on
    ``l2 ||w||^2 + ReLU(margin + w . mu_best(w) - w . mu_E)``, where ``mu_best`` are the
    feature expectations of the optimal policy under ``w`` (the best non-expert trajectory
    distribution, found by value iteration; Danskin's theorem gives the subgradient)."""
    mu_E, p0, feats, H = _setup(mdp, demos, config.horizon)
    w = torch.zeros(feats.shape[1], dtype=mdp.dtype, device=mdp.device, requires_grad=True)
    opt = torch.optim.Adam([w], lr=config.lr)
    history: list[dict[str, Any]] = []
    best_policy, best_dist = None, float("inf")
    V = None
    t0 = time.perf_counter()
    for it in range(config.iterations):
        vi = value_iteration(mdp.with_reward((feats @ w).detach()), tol=1e-8, V0=V)
        policy, V = vi.policy, vi.V  # warm start: w changes little per step
        mu_best = _feature_expectations(mdp, policy, p0, H)
        dist = float((mu_best - mu_E).norm())
        if dist < best_dist:
            best_policy, best_dist = policy, dist
        hinge = torch.relu(config.margin + w @ mu_best - w @ mu_E)
        loss = config.l2 * (w**2).sum() + hinge
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(
            {
                "iteration": it + 1,
                "loss": float(loss.detach()),
                "hinge": float(hinge.detach()),
                "policy_feature_gap": dist,
                "time": time.perf_counter() - t0,
            }
        )
    w = w.detach()
    return MarginResult(
        reward=_linear_model(w), rewards=feats @ w, policy=best_policy, history=history
    )


def max_margin_irl_sampled(
    env: Any,
    demos: Any,
    reward_model: RewardModel,
    config: SampledMarginConfig = SampledMarginConfig(),
    *,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> MarginResult:
    """``min l2 ||w||^2 + mean_b ReLU(margin + max_k R(tau_bk) - R(tau*_b))`` over sampled
    candidate trajectories ``tau_bk`` that start where expert trajectory ``b`` starts (lecture
    notes' max-margin form). ``demos`` is a ``Trajectory`` with true ``states``; returns the
    trained ``reward_model`` (``rewards`` and ``policy`` of the result are empty)."""
    from .demos import check_demos

    check_demos(demos, env.spec)
    if demos.states is None or demos.next_states is None:
        raise ValueError("demos: sampled max-margin IRL needs true states (Trajectory.states)")
    if env.spec.discrete:
        raise ValueError("env: sampled max-margin IRL needs continuous actions")
    T, B = demos.states.shape[:2]
    K = config.num_candidates
    dev, dt = demos.states.device, demos.states.dtype
    g = torch.Generator(device=dev).manual_seed(config.seed)
    low, high = env.spec.action_bounds(dev, dt)
    finite = torch.isfinite(low) & torch.isfinite(high)
    half = torch.where(finite, (high - low) / 2, torch.ones_like(low))
    mid = torch.where(finite, (high + low) / 2, torch.zeros_like(low))
    opt = torch.optim.Adam(reward_model.parameters(), lr=config.lr)
    history: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for it in range(config.iterations):
        with torch.no_grad():
            k_rand = K // 2
            u_rand = mid + half * (
                2 * torch.rand(T, B, k_rand, low.numel(), generator=g, device=dev, dtype=dt) - 1
            )
            noise = torch.randn(T, B, K - k_rand, low.numel(), generator=g, device=dev, dtype=dt)
            u_pert = demos.actions[:, :, None] + config.noise_std * half * noise
            us = torch.cat([u_rand, u_pert], 2).clamp(low, high).reshape(T, B * K, -1)
            x = demos.states[0].repeat_interleave(K, 0)
            xs = [x]
            for t in range(T):
                x = env._dynamics(x, us[t])  # (no per-step host sync)
                xs.append(x)
            xs_t = torch.stack(xs)
        R_exp = reward_model(demos.states, demos.actions, demos.next_states).sum(0)  # [B]
        R_cand = reward_model(xs_t[:-1], us, xs_t[1:]).sum(0).reshape(B, K)
        hinge = torch.relu(config.margin + R_cand.max(1).values - R_exp).mean()
        reg = sum((p**2).sum() for p in reward_model.parameters())
        loss = config.l2 * reg + hinge
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(
            {
                "iteration": it + 1,
                "loss": float(loss.detach()),
                "hinge": float(hinge.detach()),
                "time": time.perf_counter() - t0,
            }
        )
        if callback is not None:  # once per iteration (progress)
            callback(history[-1])
    empty = torch.zeros(0)
    return MarginResult(reward=reward_model, rewards=empty, policy=empty, history=history)
