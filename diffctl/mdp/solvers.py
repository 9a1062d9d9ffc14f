"""Exact solvers on finite MDPs: policy evaluation, value / policy iteration, soft (max-ent)
value iteration, state occupancy, sampling of trajectories.

All functions run where the MDP's tensors live. Iterative solvers test convergence every
``check_every`` iterations only (one host synchronisation per check, not per iteration).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .core import FiniteMDP, as_policy_matrix

__all__ = [
    "PolicyValues",
    "PlanningResult",
    "SoftResult",
    "MDPSamples",
    "policy_evaluation",
    "value_iteration",
    "policy_iteration",
    "soft_value_iteration",
    "greedy_policy",
    "state_occupancy",
    "expected_return",
    "sample_trajectories",
]


@dataclass
class PolicyValues:
    """Exact values of a policy: ``V [..., S]``, ``Q [..., S, A]``, advantage ``A = Q - V``."""

    V: Tensor
    Q: Tensor
    A: Tensor


@dataclass
class PlanningResult:
    """Optimal values and a greedy deterministic policy (int64 actions ``[S]``)."""

    V: Tensor
    Q: Tensor
    policy: Tensor
    iterations: int
    converged: bool
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def policy_matrix(self) -> Tensor:
        """The greedy policy as one-hot probabilities ``[S, A]``."""
        return torch.nn.functional.one_hot(self.policy, self.Q.shape[-1]).to(self.Q.dtype)


@dataclass
class SoftResult:
    """Soft-optimal values and the max-ent policy ``pi = exp((Q - V) / temperature)``.

    Infinite horizon: ``V [S]``, ``Q [S, A]``, ``policy [S, A]``. Finite horizon ``H``:
    ``V [H + 1, S]``, ``Q [H, S, A]``, ``policy [H, S, A]`` (time-varying, index t = step).
    """

    V: Tensor
    Q: Tensor
    policy: Tensor
    iterations: int
    converged: bool
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class MDPSamples:
    """Sampled episodes, time-major: ``states [T+1, B]``, ``actions [T, B]``, ``rewards [T, B]``,
    ``done [T, B]`` (the step entered a terminal state), ``valid [T, B]`` (the step happened,
    i.e. the episode had not ended before it)."""

    states: Tensor
    actions: Tensor
    rewards: Tensor
    done: Tensor
    valid: Tensor


def _check_iters(max_iters: int, tol: float, check_every: int) -> None:
    if isinstance(max_iters, bool) or not isinstance(max_iters, int) or max_iters < 1:
        raise ValueError(f"max_iters: expected a positive int, got {max_iters!r}")
    if not tol > 0:
        raise ValueError(f"tol: expected a positive float, got {tol!r}")
    if isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 1:
        raise ValueError(f"check_every: expected a positive int, got {check_every!r}")


def _check_mdp(mdp: Any) -> None:
    if not isinstance(mdp, FiniteMDP):
        raise TypeError(f"mdp: expected a FiniteMDP, got {type(mdp).__name__}")


def policy_evaluation(mdp: FiniteMDP, policy: Tensor) -> PolicyValues:
    """Exact ``V, Q, A`` of a (batch of) stochastic policies by one linear solve.

    Solves ``(I - gamma P_pi) V = r_pi`` (Bellman expectation equation, Sutton and Barto eq. 4.4)
    with terminal states pinned to 0. ``policy``: ``[..., S, A]`` probabilities or int64 actions
    ``[..., S]``. Returns ``V [..., S]``, ``Q [..., S, A]``, ``A [..., S, A]``. Differentiable
    with respect to ``policy``, ``P`` and ``R``.
    """
    _check_mdp(mdp)
    pi = as_policy_matrix(policy, mdp)
    S = mdp.num_states
    nonterm = (~mdp.terminal).to(mdp.dtype)
    r_sa = mdp.reward_sa
    Pc = mdp.P_continue
    r_pi = (pi * r_sa).sum(-1) * nonterm  # [..., S]
    P_pi = torch.einsum("...sa,sat->...st", pi, Pc) * nonterm[:, None]
    if mdp.gamma == 1.0:
        _check_absorbing(P_pi.detach())
    eye = torch.eye(S, dtype=mdp.dtype, device=mdp.device)
    M = eye - mdp.gamma * P_pi
    V = torch.linalg.solve(M, r_pi.unsqueeze(-1))
    V = V.squeeze(-1)
    Q = (r_sa + mdp.gamma * torch.einsum("sat,...t->...sa", Pc, V)) * nonterm[:, None]
    return PolicyValues(V=V, Q=Q, A=Q - V.unsqueeze(-1))


def _check_absorbing(P_pi: Tensor) -> None:
    """With ``gamma = 1``, ``I - P_pi`` is invertible iff from every state a terminal state is
    reached with positive probability within ``S`` steps (``P_pi`` restricted to non-terminal
    states is then strictly sub-stochastic after ``S`` steps, spectral radius < 1)."""
    S = P_pi.shape[-1]
    stay = torch.linalg.matrix_power(P_pi, S).sum(-1)
    if (stay > 1.0 - 1e-12).any():
        raise ValueError(
            "gamma: I - gamma * P_pi is singular; with gamma = 1 the policy must reach a "
            "terminal state with probability 1 from every state"
        )


def _bellman_q(mdp: FiniteMDP, V: Tensor, r_sa: Tensor, Pc: Tensor, nonterm: Tensor) -> Tensor:
    S, A = r_sa.shape
    return (r_sa + mdp.gamma * (Pc.reshape(S * A, S) @ V).reshape(S, A)) * nonterm[:, None]


def greedy_policy(Q: Tensor) -> Tensor:
    """Greedy deterministic policy ``argmax_a Q[..., s, a]`` as int64 ``[..., S]`` (ties go to
    the lowest action index)."""
    return Q.argmax(-1)


def value_iteration(
    mdp: FiniteMDP,
    *,
    tol: float = 1e-10,
    max_iters: int = 100_000,
    check_every: int = 10,
    V0: Tensor | None = None,
) -> PlanningResult:
    """Optimal ``V*, Q*`` by value iteration ``V <- max_a [r + gamma P V]`` (Bellman 1957).

    Stops when the sup-norm change of ``V`` falls below ``tol`` (checked every
    ``check_every`` sweeps); ``converged`` says whether it did within ``max_iters``.
    """
    _check_mdp(mdp)
    _check_iters(max_iters, tol, check_every)
    nonterm = (~mdp.terminal).to(mdp.dtype)
    r_sa, Pc = mdp.reward_sa, mdp.P_continue
    V = torch.zeros(mdp.num_states, dtype=mdp.dtype, device=mdp.device) if V0 is None else V0
    history: list[dict[str, Any]] = []
    converged = False
    it = 0
    while it < max_iters:
        V_prev = V
        for _ in range(min(check_every, max_iters - it)):
            V_prev = V
            V = _bellman_q(mdp, V, r_sa, Pc, nonterm).max(-1).values
            it += 1
        delta = float((V - V_prev).abs().max())
        history.append({"iteration": it, "delta": delta})
        if delta < tol:
            converged = True
            break
    Q = _bellman_q(mdp, V, r_sa, Pc, nonterm)
    return PlanningResult(
        V=V, Q=Q, policy=greedy_policy(Q), iterations=it, converged=converged, history=history
    )


def policy_iteration(
    mdp: FiniteMDP, *, max_iters: int = 1_000, policy0: Tensor | None = None
) -> PlanningResult:
    """Optimal policy by policy iteration (Howard 1960): exact evaluation, greedy improvement,
    until the policy is stable. Improvement keeps the current action on ties, so it terminates."""
    _check_mdp(mdp)
    _check_iters(max_iters, 1.0, 1)
    if policy0 is None:
        policy = torch.zeros(mdp.num_states, dtype=torch.int64, device=mdp.device)
    else:
        policy = as_policy_matrix(policy0, mdp, "policy0").argmax(-1)
    history: list[dict[str, Any]] = []
    converged = False
    it = 0
    vals = policy_evaluation(mdp, policy)
    while it < max_iters:
        it += 1
        Q = vals.Q
        best = Q.max(-1).values
        current = Q.gather(-1, policy[:, None]).squeeze(-1)
        scale = 1e-10 * (1.0 + best.abs())
        improve = best > current + scale
        new_policy = torch.where(improve, Q.argmax(-1), policy)
        changed = int(improve.sum())
        history.append({"iteration": it, "changed": changed})
        policy = new_policy
        vals = policy_evaluation(mdp, policy)
        if changed == 0:
            converged = True
            break
    return PlanningResult(
        V=vals.V, Q=vals.Q, policy=policy, iterations=it, converged=converged, history=history
    )


def soft_value_iteration(
    mdp: FiniteMDP,
    *,
    temperature: float = 1.0,
    horizon: int | None = None,
    tol: float = 1e-10,
    max_iters: int = 100_000,
    check_every: int = 10,
) -> SoftResult:
    """Soft (max-ent) Bellman backup ``V = T logsumexp_a(Q / T)``, ``Q = r + gamma P V``
    (Ziebart 2010, maximum causal entropy; Haarnoja et al. 2017 eq. 2-3).

    ``horizon=None``: infinite-horizon fixed point (needs ``gamma < 1`` or terminal states).
    ``horizon=H``: backward recursion over ``H`` steps from ``V_H = 0`` giving a time-varying
    policy ``[H, S, A]``.
    """
    _check_mdp(mdp)
    _check_iters(max_iters, tol, check_every)
    if not temperature > 0:
        raise ValueError(f"temperature: expected a positive float, got {temperature!r}")
    nonterm = (~mdp.terminal).to(mdp.dtype)
    r_sa, Pc = mdp.reward_sa, mdp.P_continue

    def backup(V: Tensor) -> tuple[Tensor, Tensor]:
        Q = _bellman_q(mdp, V, r_sa, Pc, nonterm)
        Vn = temperature * torch.logsumexp(Q / temperature, dim=-1) * nonterm
        return Q, Vn

    S = mdp.num_states
    if horizon is not None:
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon: expected a positive int or None, got {horizon!r}")
        Vs = [torch.zeros(S, dtype=mdp.dtype, device=mdp.device)]
        Qs = []
        for _ in range(horizon):
            Q, V = backup(Vs[-1])
            Qs.append(Q)
            Vs.append(V)
        Vt = torch.stack(Vs[::-1])  # [H+1, S], Vt[t] = value with H - t steps to go
        Qt = torch.stack(Qs[::-1])  # [H, S, A]
        policy = torch.softmax(Qt / temperature, dim=-1)
        return SoftResult(V=Vt, Q=Qt, policy=policy, iterations=horizon, converged=True)
    V = torch.zeros(S, dtype=mdp.dtype, device=mdp.device)
    history: list[dict[str, Any]] = []
    converged = False
    it = 0
    while it < max_iters:
        V_prev = V
        for _ in range(min(check_every, max_iters - it)):
            V_prev = V
            _, V = backup(V)
            it += 1
        delta = float((V - V_prev).abs().max())
        history.append({"iteration": it, "delta": delta})
        if delta < tol:
            converged = True
            break
    Q, _ = backup(V)
    policy = torch.softmax(Q / temperature, dim=-1)
    return SoftResult(V=V, Q=Q, policy=policy, iterations=it, converged=converged, history=history)


def state_occupancy(
    mdp: FiniteMDP,
    policy: Tensor,
    initial: Tensor | None = None,
    *,
    horizon: int | None = None,
) -> Tensor:
    """Discounted expected state visitation ``D(s) = sum_t gamma^t P(s_t = s)``, ``[S]``.

    ``horizon=None``: solves ``D = p0 + gamma P_pi^T D`` exactly (stationary ``policy [S, A]``);
    ``horizon=H``: sums ``t = 0..H-1`` with a stationary ``[S, A]`` or time-varying
    ``[H, S, A]`` policy (Ziebart et al. 2008, Algorithm 1 forward pass). Terminal states count
    at the step they are entered and absorb nothing afterwards.
    """
    _check_mdp(mdp)
    p0 = mdp.initial if initial is None else initial
    if tuple(p0.shape) != (mdp.num_states,):
        raise ValueError(
            f"initial: expected shape [S] = ({mdp.num_states},), got {tuple(p0.shape)}"
        )
    nonterm = (~mdp.terminal).to(mdp.dtype)
    P = mdp.P
    if horizon is None:
        pi = as_policy_matrix(policy, mdp)
        if pi.dim() != 2:
            raise ValueError(
                "policy: an infinite-horizon occupancy needs a stationary [S, A] policy"
            )
        P_pi = torch.einsum("sa,sat->st", pi, P) * nonterm[:, None]
        if mdp.gamma == 1.0:
            _check_absorbing((P_pi * nonterm).detach())
        M = torch.eye(mdp.num_states, dtype=mdp.dtype, device=mdp.device) - mdp.gamma * P_pi.T
        return torch.linalg.solve(M, p0.unsqueeze(-1)).squeeze(-1)
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"horizon: expected a positive int or None, got {horizon!r}")
    timevarying = policy.is_floating_point() and policy.dim() == 3
    if timevarying and policy.shape[0] != horizon:
        raise ValueError(
            f"policy: time-varying policy has {policy.shape[0]} steps, horizon is {horizon}"
        )
    pis = policy if timevarying else as_policy_matrix(policy, mdp).expand(horizon, -1, -1)
    S, A = mdp.num_states, mdp.num_actions
    P_flat = P.reshape(S * A, S)
    d = p0
    D = torch.zeros_like(p0)
    for t in range(horizon):
        D = D + (mdp.gamma**t) * d
        d = ((d * nonterm)[:, None] * pis[t]).reshape(S * A) @ P_flat
    return D


def expected_return(mdp: FiniteMDP, policy: Tensor, initial: Tensor | None = None) -> Tensor:
    """``E_{s0 ~ initial}[V^pi(s0)]`` for a (batch of) policies: ``[...]``."""
    p0 = mdp.initial if initial is None else initial
    return (policy_evaluation(mdp, policy).V * p0).sum(-1)


def sample_trajectories(
    mdp: FiniteMDP,
    policy: Tensor,
    horizon: int,
    num: int,
    *,
    generator: torch.Generator | None = None,
    initial: Tensor | None = None,
) -> MDPSamples:
    """Sample ``num`` episodes of ``horizon`` steps (batched over episodes).

    ``policy``: ``[S, A]`` probabilities, int64 actions ``[S]`` or time-varying ``[T, S, A]``.
    After an episode enters a terminal state it stays there with ``valid = False``.
    """
    _check_mdp(mdp)
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"horizon: expected a positive int, got {horizon!r}")
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"num: expected a positive int, got {num!r}")
    timevarying = policy.is_floating_point() and policy.dim() == 3
    pis = policy if timevarying else as_policy_matrix(policy, mdp).expand(horizon, -1, -1)
    p0 = mdp.initial if initial is None else initial
    s = torch.multinomial(p0.expand(num, -1), 1, generator=generator).squeeze(-1)
    states, actions, rewards, dones, valids = [s], [], [], [], []
    alive = ~mdp.terminal[s]
    R3 = mdp.R if mdp.R.dim() == 3 else None
    for t in range(horizon):
        a = torch.multinomial(pis[t][s], 1, generator=generator).squeeze(-1)
        s2 = torch.multinomial(mdp.P[s, a], 1, generator=generator).squeeze(-1)
        r = R3[s, a, s2] if R3 is not None else mdp.R[s, a]
        s2 = torch.where(alive, s2, s)
        rewards.append(torch.where(alive, r, torch.zeros_like(r)))
        actions.append(a)
        valids.append(alive)
        done = alive & mdp.terminal[s2]
        dones.append(done)
        alive = alive & ~done
        s = s2
        states.append(s)
    return MDPSamples(
        states=torch.stack(states),
        actions=torch.stack(actions),
        rewards=torch.stack(rewards),
        done=torch.stack(dones),
        valid=torch.stack(valids),
    )
