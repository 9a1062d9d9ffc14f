"""Returns and advantage estimators over time-major reward sequences.

All functions take time-major tensors ``[T, *batch]`` (usually ``[T, B]``) and are vectorised over
the batch: the only loop is one reverse scan over time, built from tensor ops, so nothing
synchronises with the host and gradients flow through (for analytic policy gradients).

Episode boundaries follow gymnasium's convention:

- ``terminated[t]``: step ``t`` reached a terminal state; nothing after it counts and its value
  is zero (no bootstrap).
- ``truncated[t]``: the episode was cut at step ``t`` by a time limit; the state reached is not
  terminal, so the return bootstraps from ``next_values[t] = V(state reached at t, before any
  auto-reset)``.
- The step after the last one (``t = T - 1``) always bootstraps from ``next_values[-1]`` unless
  it is terminal: a rollout window ending is a truncation too.

In every case the recursion is cut at an episode end (``terminated | truncated``), so an
auto-reset episode that follows in the same row never leaks into the one before it.

Validation: types, dtypes, shapes and devices always (no host synchronisation); NaN/inf in the
inputs are refused too unless ``check_finite=False`` (a host synchronisation: training loops
pass ``False`` and let NaNs propagate). A ``next_values`` entry of a terminated step is never
used, so it may be anything. An empty batch (``[T, 0]``) gives an empty result.
"""

from __future__ import annotations

import torch
from torch import Tensor

from diffctl.envs import any_true

__all__ = [
    "discounted_returns",
    "rewards_to_go",
    "gae",
    "td_lambda",
    "n_step_returns",
    "n_step_targets",
]


# ---------------------------------------------------------------------- validation
def _check_float(x: object, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating dtype, got {x.dtype}")
    if x.dim() < 1 or x.shape[0] < 1:
        raise ValueError(
            f"{name}: expected a time-major tensor [T, ...] with T >= 1, got shape {tuple(x.shape)}"
        )
    return x


def _check_like(x: object, ref: Tensor, name: str, ref_name: str, *, boolean: bool) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if boolean and x.dtype != torch.bool:
        raise TypeError(f"{name}: expected a bool tensor, got {x.dtype} (use `.bool()`)")
    if not boolean and not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating dtype, got {x.dtype}")
    if x.shape != ref.shape:
        raise ValueError(
            f"{name}: expected shape {tuple(ref.shape)} (same as {ref_name}), got {tuple(x.shape)}"
        )
    if x.device != ref.device:
        raise ValueError(f"{name}: tensor is on {x.device}, {ref_name} is on {ref.device}")
    return x


def _check_finite(x: Tensor, name: str, check: bool) -> None:
    if not isinstance(check, bool):
        raise TypeError(f"check_finite: expected a bool, got {type(check).__name__}")
    if check and any_true(~torch.isfinite(x)):
        raise ValueError(f"{name}: contains NaN or inf")


def _check_coef(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a float in [0, 1], got {type(value).__name__}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name}: expected a float in [0, 1], got {value!r}")
    return float(value)


def _reverse_scan(x: Tensor, coef: Tensor) -> Tensor:
    """``y_t = x_t + coef_t * y_{t+1}`` with ``y_T = 0``, over dim 0 (one fused op per step)."""
    out = []
    y = torch.zeros_like(x[0])
    for x_t, c_t in zip(reversed(x.unbind(0)), reversed(coef.unbind(0))):
        y = torch.addcmul(x_t, c_t, y)
        out.append(y)
    out.reverse()
    return torch.stack(out)


# ---------------------------------------------------------------------- returns
def discounted_returns(rewards: Tensor, gamma: float, *, check_finite: bool = True) -> Tensor:
    """Discounted return of each sequence, ``sum_t gamma^t r_t``.

    Args:
        rewards: ``[T, *batch]`` (``[T, B]`` usually).
        gamma: discount in ``[0, 1]``.
        check_finite: refuse NaN/inf in ``rewards`` (a host synchronisation).

    Returns:
        ``[*batch]``. Episode boundaries are not looked at: use ``rewards_to_go(...)[0]`` with
        ``dones`` for sequences that hold several episodes.
    """
    rewards = _check_float(rewards, "rewards")
    gamma = _check_coef(gamma, "gamma")
    _check_finite(rewards, "rewards", check_finite)
    T = rewards.shape[0]
    disc = gamma ** torch.arange(T, device=rewards.device, dtype=rewards.dtype)
    return torch.tensordot(disc, rewards, dims=([0], [0]))


def rewards_to_go(
    rewards: Tensor,
    gamma: float = 1.0,
    dones: Tensor | None = None,
    *,
    check_finite: bool = True,
) -> Tensor:
    """Discounted rewards-to-go ``G_t = sum_{t' >= t} gamma^(t'-t) r_t'`` within each episode.

    The recursion ``G_t = r_t + gamma (1 - done_t) G_{t+1}`` is cut after every ``done`` step and
    does not bootstrap past the end of the sequence (Monte-Carlo returns, as in REINFORCE with
    rewards-to-go). Note the discount restarts at each ``t`` (``gamma^(t'-t)``); the lecture form
    ``sum_{t'>=t} gamma^t' r_t'`` is this times ``gamma^t``.

    Args:
        rewards: ``[T, *batch]``.
        gamma: discount in ``[0, 1]``.
        dones: optional bool ``[T, *batch]``; ``dones[t]`` ends an episode after step ``t``.
        check_finite: refuse NaN/inf in ``rewards`` (a host synchronisation).

    Returns:
        ``[T, *batch]``.
    """
    rewards = _check_float(rewards, "rewards")
    gamma = _check_coef(gamma, "gamma")
    _check_finite(rewards, "rewards", check_finite)
    if dones is None:
        cont = torch.full_like(rewards, gamma)
    else:
        dones = _check_like(dones, rewards, "dones", "rewards", boolean=True)
        cont = gamma * (~dones).to(rewards.dtype)
    return _reverse_scan(rewards, cont)


def _check_value_args(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    lam: float,
    check_finite: bool,
) -> tuple[Tensor, Tensor, float, float]:
    """Validate the shared arguments; returns ``(terminated, done, gamma, lam)``."""
    rewards = _check_float(rewards, "rewards")
    _check_like(values, rewards, "values", "rewards", boolean=False)
    _check_like(next_values, rewards, "next_values", "rewards", boolean=False)
    _check_like(terminated, rewards, "terminated", "rewards", boolean=True)
    _check_like(truncated, rewards, "truncated", "rewards", boolean=True)
    gamma = _check_coef(gamma, "gamma")
    lam = _check_coef(lam, "lam")
    _check_finite(rewards, "rewards", check_finite)
    _check_finite(values, "values", check_finite)
    _check_finite(torch.where(terminated, 0.0, next_values), "next_values", check_finite)
    return terminated, terminated | truncated, gamma, lam


def gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    lam: float,
    *,
    check_finite: bool = True,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, "High-dimensional continuous
    control using generalized advantage estimation").

    Args:
        rewards: ``[T, *batch]``, ``r_t``.
        values: ``[T, *batch]``, ``V(s_t)`` of the state the action was taken in.
        next_values: ``[T, *batch]``, ``V(s_{t+1})`` of the state reached by step ``t`` before
            any auto-reset (for most steps this equals ``values[t + 1]``; at a truncation it is
            the value of the final observation; ``next_values[-1]`` bootstraps the last step).
        terminated: bool ``[T, *batch]``: no bootstrap after these steps.
        truncated: bool ``[T, *batch]``: bootstrap from ``next_values``, then cut the recursion.
        gamma: discount in ``[0, 1]``.
        lam: GAE lambda in ``[0, 1]`` (1: Monte-Carlo minus baseline, 0: one-step TD error).
        check_finite: refuse NaN/inf in ``rewards``, ``values`` and the ``next_values`` of
            non-terminated steps (a host synchronisation; training loops pass ``False``).

    Returns:
        ``(advantages, returns)``, both ``[T, *batch]``; ``returns = advantages + values`` is the
        critic target (the lambda-return of ``values``).
    """
    term, done, gamma, lam = _check_value_args(
        rewards, values, next_values, terminated, truncated, gamma, lam, check_finite
    )
    # TD residual delta_t = r_t + gamma V(s_{t+1}) - V(s_t) (Schulman et al. 2016, Sec. 3),
    # with V(terminal) = 0.
    # (torch.where rather than a 0/1 product, so a non-finite value of a terminal state is ignored)
    delta = rewards + gamma * torch.where(term, 0.0, next_values) - values
    # A_t = sum_l (gamma lam)^l delta_{t+l} (eq. 16), as the reverse recursion
    # A_t = delta_t + gamma lam (1 - done_t) A_{t+1}, cut at episode ends.
    coef = gamma * lam * (~done).to(delta.dtype)
    advantages = _reverse_scan(delta, coef)
    return advantages, advantages + values


def td_lambda(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    lam: float,
    *,
    check_finite: bool = True,
) -> Tensor:
    """TD(lambda) returns (Sutton & Barto 2018, Sec. 12.1, recursive form of the lambda-return).

    ``G_t = r_t + gamma (1 - term_t) [(1 - lam) V(s_{t+1}) + lam G_{t+1}]``, where
    ``V(s_{t+1}) = next_values[t]`` and ``G_{t+1}`` is replaced by ``next_values[t]`` at an
    episode end (``terminated | truncated``) and after the last step. Same arguments as ``gae``
    (``values`` is only used for its shape, device and dtype checks). When
    ``next_values[t] == values[t + 1]`` inside every episode this equals ``gae(...)[1]``.

    Returns:
        ``[T, *batch]``.
    """
    term, done, gamma, lam = _check_value_args(
        rewards, values, next_values, terminated, truncated, gamma, lam, check_finite
    )
    # Unrolled: G_t = base_t + gamma lam (1 - done_t) G_{t+1} with
    # base_t = r_t + gamma (1 - term_t) [(1 - lam) + lam done_t] V(s_{t+1}); the end of the
    # window counts as an episode end (bootstrap from next_values[-1]).
    done = done.clone()
    done[-1] = True
    donef = done.to(rewards.dtype)
    boot = next_values * ((1.0 - lam) + lam * donef)
    base = rewards + gamma * torch.where(term, 0.0, boot)
    return _reverse_scan(base, gamma * lam * (1.0 - donef))


# ---------------------------------------------------------------------- n-step returns
def n_step_returns(
    rewards: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    n: int,
    *,
    check_finite: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """The truncated n-step returns of multi-step Q-learning (Sutton 1988; Hessel et al. 2018,
    "Rainbow", Sec. "Multi-step learning"): for each step ``t`` of a time-major window,

    ``R_t = sum_{k < m_t} gamma^k r_{t+k}``, bootstrapped as ``R_t + gamma^{m_t} V(s_{t+m_t})``,

    where ``m_t <= n`` stops early at the first episode end (``terminated | truncated``) at or
    after ``t`` and at the end of the window (as ``td_lambda``: the window ending is a
    truncation). At a termination the state reached is terminal: no bootstrap (discount 0); at a
    time-limit truncation, or the window's end, the target bootstraps from the state reached
    before any auto-reset, discounted by ``gamma^{m_t}``. Nothing of a later episode in the same
    row ever counts.

    Args:
        rewards: ``[T, *batch]``, ``r_t``.
        terminated: bool ``[T, *batch]``: step ``t`` reached a terminal state.
        truncated: bool ``[T, *batch]``: the episode was cut by a time limit after step ``t``.
        gamma: discount in ``[0, 1]``.
        n: the number of steps, ``>= 1`` (1: the one-step target).
        check_finite: refuse NaN/inf in ``rewards`` (a host synchronisation).

    Returns:
        ``(returns, discounts, last)``, each ``[T, *batch]``: ``returns`` the ``R_t`` above,
        ``discounts`` the bootstrap coefficient ``gamma^{m_t}`` (0 where step ``last_t``
        terminated) and ``last`` (int64) the step ``t + m_t - 1`` whose next state
        ``s_{t+m_t}`` the target bootstraps from: ``R_t + discounts_t * V(next_obs[last_t])``
        (``n_step_targets``). The only loop is over the ``n`` offsets, vectorised over time and
        the batch (no host synchronisation).
    """
    rewards = _check_float(rewards, "rewards")
    _check_like(terminated, rewards, "terminated", "rewards", boolean=True)
    _check_like(truncated, rewards, "truncated", "rewards", boolean=True)
    gamma = _check_coef(gamma, "gamma")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    _check_finite(rewards, "rewards", check_finite)
    T = rewards.shape[0]
    done = terminated | truncated
    t = torch.arange(T, device=rewards.device).reshape(T, *([1] * (rewards.dim() - 1)))
    last = t.expand(rewards.shape).clone()
    returns = torch.zeros_like(rewards)
    alive = torch.ones_like(terminated)  # no episode end yet in steps t .. t + k - 1
    for k in range(min(n, T)):
        # the values of step t + k for the rows t < T - k (the others are past the window)
        r_k, done_k = rewards[k:], done[k:]
        live = alive[: T - k]
        returns[: T - k] += torch.where(live, (gamma**k) * r_k, 0.0)
        last[: T - k] = torch.where(live, t[k:].expand(r_k.shape), last[: T - k])
        alive[: T - k] = live & ~done_k
    m = (last - t + 1).to(rewards.dtype)
    discounts = torch.where(terminated.gather(0, last), 0.0, gamma**m)
    return returns, discounts, last


def n_step_targets(
    rewards: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    n: int,
    *,
    check_finite: bool = True,
) -> Tensor:
    """The n-step targets ``R_t^(n) = sum_{k < m} gamma^k r_{t+k} + gamma^m V(s_{t+m})``
    (``n_step_returns``; ``m = n`` inside an episode), with ``next_values[t] = V(s_{t+1})`` of
    the state reached by step ``t`` before any auto-reset (``max_a Q'(s_{t+1}, a)`` for
    Q-learning). A ``next_values`` entry of a terminated step is never used.

    Returns:
        ``[T, *batch]``.
    """
    returns, discounts, last = n_step_returns(
        rewards, terminated, truncated, gamma, n, check_finite=check_finite
    )
    _check_like(next_values, rewards, "next_values", "rewards", boolean=False)
    boot = next_values.gather(0, last)
    return returns + torch.where(discounts == 0, 0.0, discounts * boot)
