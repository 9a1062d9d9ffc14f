"""``FiniteMDP``: a validated tabular Markov decision process held as torch tensors.

Conventions: ``P[s, a, s']`` is the transition probability, ``R[s, a, s']`` (or ``R[s, a]``) the
reward received on that transition, ``gamma`` the discount. A ``terminal`` state ends the
episode: the reward of the transition *into* it is received, after which nothing more is
collected (its value is 0 and its own rows of ``P`` are ignored).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor

__all__ = ["FiniteMDP", "as_policy_matrix"]


def _as_float_tensor(x: Any, name: str, dtype: torch.dtype | None, device: Any) -> Tensor:
    if isinstance(x, Tensor):
        t = x
    else:
        try:
            t = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(f"{name}: cannot convert {type(x).__name__} to a tensor") from e
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64, torch.bool)):
        raise TypeError(f"{name}: expected a real-valued tensor, got dtype {t.dtype}")
    if dtype is not None or not t.is_floating_point():
        t = t.to(dtype=dtype or torch.get_default_dtype())
    if device is not None:
        t = t.to(device)
    return t


class FiniteMDP:
    """A finite MDP ``(P, R, gamma)`` with optional terminal states, start distribution and
    state features.

    Args:
        P: transition probabilities ``[S, A, S]``; every row ``P[s, a, :]`` must be a
            distribution (non-negative, summing to 1 within ``atol``).
        R: rewards ``[S, A, S]`` (on the transition) or ``[S, A]`` (on the state-action pair).
        gamma: discount in ``(0, 1]``. ``gamma == 1`` needs every policy you evaluate to reach a
            terminal state with probability 1 (otherwise the linear solve reports it).
        terminal: bool ``[S]`` marking terminal states (default: none).
        initial: start distribution ``[S]`` (default: uniform over non-terminal states).
        features: state features ``[S, F]`` used by the IRL methods (default: none).
        atol: tolerance of the row-sum check.

    The tensors keep their device and dtype (``R`` and the rest are cast to ``P``'s dtype), and
    ``R`` keeps its autograd graph, so a reward may be a function of learnable parameters.
    """

    def __init__(
        self,
        P: Tensor,
        R: Tensor,
        gamma: float,
        terminal: Tensor | None = None,
        initial: Tensor | None = None,
        features: Tensor | None = None,
        *,
        atol: float = 1e-6,
    ) -> None:
        P = _as_float_tensor(P, "P", None, None)
        if P.dim() != 3 or P.shape[0] != P.shape[2] or P.shape[0] < 1 or P.shape[1] < 1:
            raise ValueError(f"P: expected shape [S, A, S], got {tuple(P.shape)}")
        S, A = P.shape[0], P.shape[1]
        dtype, device = P.dtype, P.device
        Pd = P.detach()
        if not torch.isfinite(Pd).all():
            raise ValueError("P: contains NaN or inf")
        if (Pd < -atol).any():
            raise ValueError("P: transition probabilities must be non-negative")
        row_err = (Pd.sum(-1) - 1.0).abs()
        if (row_err > atol).any():
            bad = torch.nonzero(row_err > atol)[0].tolist()
            raise ValueError(
                f"P: rows must sum to 1 (P[s, a, :] for s={bad[0]}, a={bad[1]} sums to "
                f"{float(Pd[bad[0], bad[1]].sum()):.6g})"
            )
        R = _as_float_tensor(R, "R", dtype, device)
        if tuple(R.shape) not in ((S, A, S), (S, A)):
            raise ValueError(
                f"R: expected shape [S, A, S] = {(S, A, S)} or [S, A] = {(S, A)}, "
                f"got {tuple(R.shape)}"
            )
        if not torch.isfinite(R.detach()).all():
            raise ValueError("R: contains NaN or inf")
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)):
            raise TypeError(f"gamma: expected a float in (0, 1], got {type(gamma).__name__}")
        gamma = float(gamma)
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma: expected a value in (0, 1], got {gamma}")
        if terminal is None:
            terminal = torch.zeros(S, dtype=torch.bool, device=device)
        else:
            terminal = torch.as_tensor(terminal, device=device)
            if terminal.dtype != torch.bool:
                raise TypeError(f"terminal: expected a bool tensor, got dtype {terminal.dtype}")
            if tuple(terminal.shape) != (S,):
                raise ValueError(
                    f"terminal: expected shape [S] = ({S},), got {tuple(terminal.shape)}"
                )
        if initial is None:
            nonterm = (~terminal).to(dtype)
            if nonterm.sum() == 0:
                raise ValueError("terminal: every state is terminal")
            initial = nonterm / nonterm.sum()
        else:
            initial = _as_float_tensor(initial, "initial", dtype, device)
            if tuple(initial.shape) != (S,):
                raise ValueError(
                    f"initial: expected shape [S] = ({S},), got {tuple(initial.shape)}"
                )
            if (initial < -atol).any() or abs(float(initial.sum()) - 1.0) > atol:
                raise ValueError("initial: must be a probability distribution over states")
        if features is not None:
            features = _as_float_tensor(features, "features", dtype, device)
            if features.dim() != 2 or features.shape[0] != S:
                raise ValueError(
                    f"features: expected shape [S, F] with S={S}, got {tuple(features.shape)}"
                )
        self.P = P
        self.R = R
        self.gamma = gamma
        self.terminal = terminal
        self.initial = initial
        self.features = features

    # ------------------------------------------------------------------ properties
    @property
    def num_states(self) -> int:
        return self.P.shape[0]

    @property
    def num_actions(self) -> int:
        return self.P.shape[1]

    @property
    def device(self) -> torch.device:
        return self.P.device

    @property
    def dtype(self) -> torch.dtype:
        return self.P.dtype

    @property
    def reward_sa(self) -> Tensor:
        """Expected immediate reward ``r(s, a) = sum_s' P(s'|s,a) R(s,a,s')``, ``[S, A]``."""
        if self.R.dim() == 2:
            return self.R
        return (self.P * self.R).sum(-1)

    @property
    def P_continue(self) -> Tensor:
        """``P`` with the columns of terminal next states zeroed, ``[S, A, S]`` (the mass that
        keeps collecting reward)."""
        return self.P * (~self.terminal).to(self.dtype)

    # ------------------------------------------------------------------ copies
    def with_reward(self, R: Tensor) -> FiniteMDP:
        """A copy with reward ``R`` (``[S, A, S]``, ``[S, A]`` or state reward ``[S]``)."""
        R = _as_float_tensor(R, "R", self.dtype, self.device)
        S, A = self.num_states, self.num_actions
        if tuple(R.shape) == (S,):
            R = R[:, None].expand(S, A)
        if tuple(R.shape) not in ((S, A, S), (S, A)):
            raise ValueError(
                f"R: expected shape [S, A, S], [S, A] or [S] for S={S}, A={A}, got {tuple(R.shape)}"
            )
        # P, gamma and the rest were validated already: copy without re-checking them
        new = copy.copy(self)
        new.R = R
        return new

    def to(self, device: Any = None, dtype: torch.dtype | None = None) -> FiniteMDP:
        """A copy on ``device`` / ``dtype``."""

        def mv(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device=device, dtype=dtype or t.dtype)

        return FiniteMDP(
            mv(self.P),
            mv(self.R),
            self.gamma,
            self.terminal.to(device) if device is not None else self.terminal,
            mv(self.initial),
            mv(self.features),
        )

    def __repr__(self) -> str:
        return (
            f"FiniteMDP(S={self.num_states}, A={self.num_actions}, gamma={self.gamma}, "
            f"terminal={int(self.terminal.sum())}, device={self.device})"
        )


def as_policy_matrix(policy: Tensor, mdp: FiniteMDP, name: str = "policy") -> Tensor:
    """Validate a policy and return it as probabilities ``[..., S, A]``.

    Accepts a stochastic policy ``[..., S, A]`` (rows summing to 1) or a deterministic one as
    int64 action indices ``[..., S]``.
    """
    if not isinstance(policy, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(policy).__name__}")
    S, A = mdp.num_states, mdp.num_actions
    if policy.dtype in (torch.int64, torch.int32):
        if policy.dim() < 1 or policy.shape[-1] != S:
            raise ValueError(
                f"{name}: expected action indices [..., S={S}], got {tuple(policy.shape)}"
            )
        if ((policy < 0) | (policy >= A)).any():
            raise ValueError(f"{name}: action indices must lie in [0, {A})")
        return torch.nn.functional.one_hot(policy.long(), A).to(mdp.dtype).to(mdp.device)
    if not policy.is_floating_point():
        raise TypeError(f"{name}: expected probabilities or int64 indices, got {policy.dtype}")
    if policy.dim() < 2 or tuple(policy.shape[-2:]) != (S, A):
        raise ValueError(
            f"{name}: expected shape [..., S, A] = [..., {S}, {A}], got {tuple(policy.shape)}"
        )
    if policy.device != mdp.device:
        raise ValueError(f"{name}: tensor is on {policy.device}, the MDP is on {mdp.device}")
    pd = policy.detach()
    if (pd < -1e-6).any() or ((pd.sum(-1) - 1.0).abs() > 1e-5).any():
        raise ValueError(f"{name}: rows must be probability distributions over actions")
    return policy.to(mdp.dtype)
