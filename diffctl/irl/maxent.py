"""Maximum-entropy inverse RL.

- ``maxent_irl``: finite MDPs with exact expected state visitation frequencies (Ziebart et al.
  2008, Algorithm 1; the stationary variant is maximum causal entropy IRL, Ziebart 2010), with a
  linear reward on state features or a neural one (deep MaxEnt, Wulfmeier et al. 2015).
- ``maxent_irl_sampled``: continuous environments, where the partition function is estimated
  by importance sampling trajectories from a sampler policy (a planner or a learned policy with
  Gaussian exploration), as in guided cost learning (Finn et al. 2016, eq. 3-4).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from diffctl.configs.irl import SampledMaxEntConfig
from diffctl.data import Trajectory, rollout
from diffctl.mdp import (
    FiniteMDP,
    MDPSamples,
    policy_evaluation,
    soft_value_iteration,
    state_occupancy,
    value_iteration,
)

from .demos import check_demos, empirical_initial, empirical_occupancy, finite_demo_states
from .reward import RewardConfig, RewardModel

__all__ = [
    "MaxEntConfig",
    "MaxEntResult",
    "maxent_irl",
    "expected_value_difference",
    "SampledMaxEntConfig",
    "SampledMaxEntResult",
    "maxent_irl_sampled",
]


@dataclass(frozen=True)
class MaxEntConfig:
    """MaxEnt IRL on a finite MDP.

    Attributes:
        iterations: gradient steps on the demos' log-likelihood.
        lr: Adam step size.
        weight_decay: L2 penalty on the reward parameters.
        reward: ``"linear"`` (``r(s) = w . phi(s)``) or ``"mlp"`` (deep MaxEnt).
        hidden: hidden sizes of the MLP reward.
        horizon: planning horizon of the backward / forward passes; ``0`` uses the demos'
            length (Ziebart 2008); ignored when ``stationary``.
        stationary: infinite-horizon discounted soft value iteration with the exact occupancy
            ``D = (I - gamma P_pi^T)^-1 p0`` (maximum causal entropy IRL).
        initial: start distribution of the forward pass: ``"demos"`` (empirical) or ``"mdp"``.
        seed: initialisation of the MLP reward.
    """

    iterations: int = 200
    lr: float = 0.1
    weight_decay: float = 0.0
    reward: str = "linear"
    hidden: tuple[int, ...] = (32, 32)
    horizon: int = 0
    stationary: bool = False
    initial: str = "demos"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"iterations: expected a positive int, got {self.iterations}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected a positive float, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay: expected >= 0, got {self.weight_decay}")
        if self.reward not in ("linear", "mlp"):
            raise ValueError(f"reward: expected 'linear' or 'mlp', got {self.reward!r}")
        if self.horizon < 0:
            raise ValueError(f"horizon: expected >= 0 (0: the demos' length), got {self.horizon}")
        if self.initial not in ("demos", "mdp"):
            raise ValueError(f"initial: expected 'demos' or 'mdp', got {self.initial!r}")


@dataclass
class MaxEntResult:
    """Learned reward (a ``RewardModel`` on state features), its table ``rewards [S]``, the
    soft-optimal policy under it and the history (iteration, feature_gap, occupancy_gap)."""

    reward: RewardModel
    rewards: Tensor
    policy: Tensor
    history: list[dict[str, Any]] = field(default_factory=list)


def _soft_policy_and_occupancy(
    mdp: FiniteMDP, r: Tensor, p0: Tensor, horizon: int | None
) -> tuple[Tensor, Tensor]:
    m = mdp.with_reward(r)
    soft = soft_value_iteration(m, horizon=horizon)
    return soft.policy, state_occupancy(m, soft.policy, p0, horizon=horizon)


def maxent_irl(
    mdp: FiniteMDP,
    demos: MDPSamples | Tensor,
    config: MaxEntConfig = MaxEntConfig(),
    reward_model: RewardModel | None = None,
) -> MaxEntResult:
    """Learn a state reward ``r(phi(s))`` that makes the demos most likely under the max-ent
    policy.

    Args:
        mdp: the MDP (its reward is ignored); needs ``mdp.features [S, F]``.
        demos: ``MDPSamples`` or int64 states ``[T, B]``.
        config: see ``MaxEntConfig``.
        reward_model: start from this model (input size ``F``); default built from ``config``.

    The gradient of the log-likelihood with respect to the state rewards is
    ``mu_demos - E_pi[mu]`` (Ziebart 2008 eq. 6; Wulfmeier 2015 eq. 8), back-propagated into
    the reward's parameters.
    """
    if not isinstance(mdp, FiniteMDP):
        raise TypeError(f"mdp: expected a FiniteMDP, got {type(mdp).__name__}")
    if mdp.features is None:
        raise ValueError("mdp: needs state features (FiniteMDP(features=...))")
    states, valid = finite_demo_states(demos, mdp)
    feats = mdp.features
    T = states.shape[0]
    horizon = None if config.stationary else (config.horizon or T)
    mu_E = empirical_occupancy(states, valid, mdp.num_states, mdp.gamma, mdp.dtype)
    if horizon is not None and horizon < T:
        mu_E = empirical_occupancy(
            states[:horizon], valid[:horizon], mdp.num_states, mdp.gamma, mdp.dtype
        )
    p0 = (
        empirical_initial(states, mdp.num_states, mdp.dtype)
        if config.initial == "demos"
        else mdp.initial
    )
    if reward_model is None:
        with torch.random.fork_rng(devices=[]):  # seeded init, caller's RNG untouched
            torch.manual_seed(config.seed)
            reward_model = RewardModel(
                RewardConfig(state_dim=feats.shape[1], kind=config.reward, hidden=config.hidden)
            )
        reward_model.to(device=mdp.device, dtype=mdp.dtype)
    elif reward_model.config.state_dim != feats.shape[1]:
        raise ValueError(
            f"reward_model: input size {reward_model.config.state_dim} does not "
            f"match the MDP's {feats.shape[1]} features"
        )
    opt = torch.optim.Adam(
        reward_model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    history: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for it in range(config.iterations):
        r = reward_model(feats)  # [S]
        _, D = _soft_policy_and_occupancy(mdp, r.detach(), p0, horizon)
        grad_r = mu_E - D
        loss = -(grad_r * r).sum()  # surrogate whose gradient is -(mu_E - D) dr/dtheta
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(
            {
                "iteration": it + 1,
                "feature_gap": float((grad_r @ feats).norm()),
                "occupancy_gap": float(grad_r.abs().sum()),
                "time": time.perf_counter() - t0,
            }
        )
    with torch.no_grad():
        r = reward_model(feats)
        policy, _ = _soft_policy_and_occupancy(mdp, r, p0, horizon)
    return MaxEntResult(reward=reward_model, rewards=r, policy=policy, history=history)


def expected_value_difference(
    mdp: FiniteMDP, learned_reward: Tensor, initial: Tensor | None = None
) -> Tensor:
    """``E_{s0}[V*(s0) - V^{pi_L}(s0)]`` under ``mdp``'s (true) reward, where ``pi_L`` is the
    optimal policy for ``learned_reward`` (``[S]`` or ``[S, A]``) (Levine et al. 2011)."""
    p0 = mdp.initial if initial is None else initial
    opt_true = value_iteration(mdp)
    pi_L = value_iteration(mdp.with_reward(learned_reward.detach())).policy
    return ((opt_true.V - policy_evaluation(mdp, pi_L).V) * p0).sum()


# ---------------------------------------------------------------------- continuous, sampled


@dataclass
class SampledMaxEntResult:
    """Learned reward and history (iteration, loss, demo_reward, sample_reward, ess)."""

    reward: RewardModel
    history: list[dict[str, Any]] = field(default_factory=list)


def _traj_return(
    reward: RewardModel, states: Tensor, actions: Tensor, next_states: Tensor
) -> Tensor:
    return reward(states, actions, next_states).sum(0)  # [B]


def maxent_irl_sampled(
    env: Any,
    demos: Trajectory,
    reward_model: RewardModel,
    sampler: Callable[[Tensor], Tensor],
    config: SampledMaxEntConfig = SampledMaxEntConfig(),
    *,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> SampledMaxEntResult:
    """MaxEnt IRL on a continuous env with an importance-sampled partition function.

    ``log Z ~= log mean_j exp(R(tau_j)) / q(tau_j)`` over trajectories from ``q``: the
    ``sampler``'s mean action (a policy or ``MPCPolicy``, called on true states) plus Gaussian
    noise of std ``noise_std``; the loss is ``-mean_demos R(tau) + log Z`` (Finn et al. 2016
    eq. 3-4). ``demos`` must hold true ``states``; the reward model reads states.
    """
    check_demos(demos, env.spec)
    if demos.states is None or demos.next_states is None:
        raise ValueError("demos: sample-based MaxEnt needs true states (Trajectory.states)")
    if reward_model.config.state_dim != env.spec.state_dim:
        raise ValueError(
            f"reward_model: state_dim {reward_model.config.state_dim} does not match "
            f"env {env.spec.name!r} (state_dim {env.spec.state_dim})"
        )
    T, B = demos.states.shape[:2]
    H = config.horizon or T
    g = torch.Generator(device=demos.states.device).manual_seed(config.seed)
    opt = torch.optim.Adam(
        reward_model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    low, high = env.spec.action_bounds(demos.states.device, demos.states.dtype)
    sigma = config.noise_std
    nu = env.spec.act_dim

    class _Noisy:
        needs_state = True

        def __init__(self) -> None:
            self.logq: list[Tensor] = []

        def __call__(self, x: Tensor) -> Tensor:
            mean = sampler(x).detach()
            u = mean + sigma * torch.randn(
                mean.shape, generator=g, device=mean.device, dtype=mean.dtype
            )
            # Gaussian log-density of the exploration (Finn 2016: q is known in closed form)
            self.logq.append(
                -0.5 * (((u - mean) / sigma) ** 2).sum(-1)
                - nu * (math.log(sigma) + 0.5 * math.log(2 * math.pi))
            )
            return u.clamp(low, high)

    demo_s, demo_u, demo_s2 = demos.states[:H], demos.actions[:H], demos.next_states[:H]
    history: list[dict[str, Any]] = []
    for it in range(config.iterations):
        noisy = _Noisy()
        x0 = demos.states[
            0, torch.randint(B, (config.num_samples,), generator=g, device=demos.states.device)
        ]
        with torch.no_grad():
            samp = rollout(env, noisy, H, x0=x0)
        logq = torch.stack(noisy.logq).sum(0)  # [N]
        R_demo = _traj_return(reward_model, demo_s, demo_u, demo_s2)  # [B]
        R_samp = _traj_return(reward_model, samp.states, samp.actions, samp.next_states)
        log_w = R_samp - logq
        if config.include_demos:
            # demos enter the background set with the density of the sampler's mixture around
            # them approximated by the sample average of q (Finn 2016 Sec. 4.1 uses a fused q)
            log_w = torch.cat([log_w, R_demo - logq.mean().detach()])
        n = log_w.numel()
        log_Z = torch.logsumexp(log_w, 0) - math.log(n)
        loss = -R_demo.mean() + log_Z
        opt.zero_grad()
        loss.backward()
        opt.step()
        w = torch.softmax(log_w.detach(), 0)
        history.append(
            {
                "iteration": it + 1,
                "loss": float(loss.detach()),
                "demo_reward": float(R_demo.detach().mean()),
                "sample_reward": float(R_samp.detach().mean()),
                "ess": float(1.0 / (w**2).sum()),
            }
        )
        if callback is not None:  # once per iteration (progress)
            callback(history[-1])
    return SampledMaxEntResult(reward=reward_model, history=history)
