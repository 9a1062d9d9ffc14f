"""Batched linear-quadratic regulators.

Finite-horizon, time-varying LQR in the notation of Amos et al. 2018 ("Differentiable MPC for
End-to-end Planning and Control", Sec. 3): with ``tau_t = [x_t; u_t]`` (``n = nx + nu``),

    min_tau  sum_{t<T} 1/2 tau_t' C_t tau_t + c_t' tau_t  +  1/2 x_T' C_T x_T + c_T' x_T
    s.t.     x_{t+1} = F_t tau_t + f_t,   x_0 = x_init,

solved by the Riccati recursion (paper Eq. 2-4). Plain torch ops, so autograd differentiates
through it exactly. ``dare`` solves the discrete algebraic Riccati equation (infinite horizon)
in batch with the structure-preserving doubling algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["LQRSolution", "lqr", "DAREResult", "dare", "check_finite"]


@dataclass
class LQRSolution:
    """Solution of a batched finite-horizon LQR.

    Attributes:
        states: ``[T+1, B, nx]``.
        actions: ``[T, B, nu]``.
        K: feedback gains ``[T, B, nu, nx]`` (``u_t = K_t x_t + k_t``).
        k: feed-forward terms ``[T, B, nu]``.
        V: value Hessians ``[T+1, B, nx, nx]`` (cost-to-go ``1/2 x'V_t x + v_t'x + const``).
        v: value gradients ``[T+1, B, nx]``.
        cost: total cost per example ``[B]``.
    """

    states: Tensor
    actions: Tensor
    K: Tensor
    k: Tensor
    V: Tensor
    v: Tensor
    cost: Tensor


def check_finite(t: Tensor, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` when ``t`` holds NaN or inf (validation only)."""
    if not torch.isfinite(t.detach()).all():
        raise ValueError(f"{name}: contains NaN or inf")


def _as_tensor(t: object, name: str) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name}: expected a floating dtype, got {t.dtype}")
    return t


def _time_batch(t: Tensor, name: str, trailing: tuple[int, ...], T: int, B: int) -> Tensor:
    """Broadcast ``t`` (shared ``trailing`` or ``[T|1, B|1, *trailing]``) to ``[T, B, ...]``."""
    nd = len(trailing)
    if tuple(t.shape) == trailing:
        return t.expand(T, B, *trailing)
    if t.dim() == nd + 2 and tuple(t.shape[2:]) == trailing:
        if t.shape[0] in (1, T) and t.shape[1] in (1, B):
            return t.expand(T, B, *trailing)
    raise ValueError(
        f"{name}: expected shape {list(trailing)} or [T={T}|1, B={B}|1, "
        f"{', '.join(map(str, trailing))}], got {list(t.shape)}"
    )


def _batch(t: Tensor, name: str, trailing: tuple[int, ...], B: int) -> Tensor:
    if tuple(t.shape) == trailing:
        return t.expand(B, *trailing)
    if t.dim() == len(trailing) + 1 and tuple(t.shape[1:]) == trailing and t.shape[0] in (1, B):
        return t.expand(B, *trailing)
    raise ValueError(
        f"{name}: expected shape {list(trailing)} or [B={B}|1, "
        f"{', '.join(map(str, trailing))}], got {list(t.shape)}"
    )


def _sym(M: Tensor) -> Tensor:
    return 0.5 * (M + M.transpose(-1, -2))


def riccati_sweep(
    C: Tensor,
    c: Tensor,
    F: Tensor,
    f: Tensor,
    C_final: Tensor,
    c_final: Tensor,
    u_free: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Backward Riccati recursion (Amos et al. 2018, Eq. 3-4) on full ``[T, B, ...]`` tensors.

    ``u_free`` (bool ``[T, B, nu]``) pins the non-free controls to zero (their rows/columns of
    ``Q_uu`` become the identity and their gains vanish), as in the paper's backward pass over the
    free controls. Returns ``K [T,B,nu,nx], k [T,B,nu], V [T+1,B,nx,nx], v [T+1,B,nx]`` and a
    ``[B]`` mask of examples whose ``Q_uu`` was not positive definite at some step.
    """
    T, B = C.shape[:2]
    nx = F.shape[-2]
    V, v = C_final, c_final
    Ks, ks, Vs, vs = [], [], [V], [v]
    bad = torch.zeros(B, dtype=torch.bool, device=C.device)
    for t in range(T - 1, -1, -1):
        Ft = F[t]
        FtV = Ft.transpose(-1, -2) @ V
        Q = C[t] + FtV @ Ft
        q = (
            c[t]
            + (FtV @ f[t].unsqueeze(-1)).squeeze(-1)
            + (Ft.transpose(-1, -2) @ v.unsqueeze(-1)).squeeze(-1)
        )
        Qxx, Qxu = Q[:, :nx, :nx], Q[:, :nx, nx:]
        Qux, Quu = Q[:, nx:, :nx], Q[:, nx:, nx:]
        qx, qu = q[:, :nx], q[:, nx:]
        if u_free is not None:
            m = u_free[t].to(Q.dtype)
            Quu = Quu * m.unsqueeze(-1) * m.unsqueeze(-2) + torch.diag_embed(1 - m)
            Qux = Qux * m.unsqueeze(-1)
            qu = qu * m
        # K = -Quu^{-1} Qux, k = -Quu^{-1} qu  (paper Eq. 3)
        L, info = torch.linalg.cholesky_ex(_sym(Quu))
        bad = bad | (info > 0)
        sol = torch.cholesky_solve(torch.cat([Qux, qu.unsqueeze(-1)], dim=-1), L)
        K, k = -sol[..., :nx], -sol[..., nx]
        # V = Qxx + Qxu K, v = qx + Qxu k  (paper Eq. 4)
        V = _sym(Qxx + Qxu @ K)
        v = qx + (Qxu @ k.unsqueeze(-1)).squeeze(-1)
        Ks.append(K)
        ks.append(k)
        Vs.append(V)
        vs.append(v)
    return (
        torch.stack(Ks[::-1]),
        torch.stack(ks[::-1]),
        torch.stack(Vs[::-1]),
        torch.stack(vs[::-1]),
        bad,
    )


def rollout_linear(x0: Tensor, K: Tensor, k: Tensor, F: Tensor, f: Tensor) -> tuple[Tensor, Tensor]:
    """Forward pass ``u_t = K_t x_t + k_t``, ``x_{t+1} = F_t [x_t; u_t] + f_t``."""
    xs, us = [x0], []
    x = x0
    for t in range(K.shape[0]):
        u = (K[t] @ x.unsqueeze(-1)).squeeze(-1) + k[t]
        x = (F[t] @ torch.cat([x, u], -1).unsqueeze(-1)).squeeze(-1) + f[t]
        xs.append(x)
        us.append(u)
    return torch.stack(xs), torch.stack(us)


def quad_cost(
    states: Tensor, actions: Tensor, C: Tensor, c: Tensor, C_final: Tensor, c_final: Tensor
) -> Tensor:
    """Total cost ``[B]`` of a trajectory under ``(C, c, C_final, c_final)`` (full shapes)."""
    tau = torch.cat([states[:-1], actions], -1)
    stage = 0.5 * (tau.unsqueeze(-2) @ C @ tau.unsqueeze(-1)).squeeze(-1).squeeze(-1)
    stage = stage + (tau * c).sum(-1)
    xT = states[-1]
    term = 0.5 * (xT.unsqueeze(-2) @ C_final @ xT.unsqueeze(-1)).squeeze(-1).squeeze(-1)
    return stage.sum(0) + term + (xT * c_final).sum(-1)


def lqr(
    x_init: Tensor,
    C: Tensor,
    c: Tensor,
    F: Tensor,
    f: Tensor | None = None,
    *,
    C_final: Tensor | None = None,
    c_final: Tensor | None = None,
    T: int | None = None,
) -> LQRSolution:
    """Solve a batched time-varying finite-horizon LQR (Amos et al. 2018, Sec. 3).

    Args:
        x_init: start states ``[B, nx]``.
        C: stage cost Hessians over ``tau = [x; u]``: ``[n, n]`` (shared) or ``[T|1, B|1, n, n]``.
        c: stage cost gradients ``[n]`` or ``[T|1, B|1, n]``.
        F: dynamics ``[nx, n]`` or ``[T|1, B|1, nx, n]`` (``x' = F tau + f``).
        f: dynamics offsets ``[nx]`` or ``[T|1, B|1, nx]`` (zero if ``None``).
        C_final, c_final: terminal cost on ``x_T``: ``[nx, nx]`` / ``[B|1, nx, nx]`` and
            ``[nx]`` / ``[B|1, nx]`` (zero if ``None``).
        T: horizon; needed only when every time-indexed argument is shared.

    Returns:
        ``LQRSolution`` (states ``[T+1,B,nx]``, actions ``[T,B,nu]``, gains, value function,
        cost). Differentiable by autograd w.r.t. every argument.
    """
    x_init = _as_tensor(x_init, "x_init")
    C, c, F = _as_tensor(C, "C"), _as_tensor(c, "c"), _as_tensor(F, "F")
    if x_init.dim() != 2:
        raise ValueError(f"x_init: expected shape [B, nx], got {list(x_init.shape)}")
    B, nx = x_init.shape
    if F.dim() < 2 or F.shape[-2] != nx:
        raise ValueError(f"F: expected [..., nx={nx}, nx + nu], got {list(F.shape)}")
    n = F.shape[-1]
    nu = n - nx
    if nu < 1:
        raise ValueError(f"F: last dim must be nx + nu > nx={nx}, got {n}")
    if T is None:
        T = next((t.shape[0] for t in (C, c, F, f) if t is not None and t.dim() > 2), None)
        if T is None and c.dim() == 3:
            T = c.shape[0]
        if T is None:
            raise ValueError("T: every argument is shared over time, pass the horizon T")
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T: expected a positive int, got {T!r}")
    dt = x_init.dtype
    C = _time_batch(C, "C", (n, n), T, B)
    c = _time_batch(c, "c", (n,), T, B)
    F = _time_batch(F, "F", (nx, n), T, B)
    f = torch.zeros(T, B, nx, dtype=dt, device=x_init.device) if f is None else f
    f = _time_batch(_as_tensor(f, "f"), "f", (nx,), T, B)
    if C_final is None:
        C_final = torch.zeros(nx, nx, dtype=dt, device=x_init.device)
    if c_final is None:
        c_final = torch.zeros(nx, dtype=dt, device=x_init.device)
    C_final = _batch(_as_tensor(C_final, "C_final"), "C_final", (nx, nx), B)
    c_final = _batch(_as_tensor(c_final, "c_final"), "c_final", (nx,), B)
    for t, name in ((x_init, "x_init"), (C, "C"), (c, "c"), (F, "F"), (f, "f")):
        check_finite(t, name)
    check_finite(C_final, "C_final")
    check_finite(c_final, "c_final")
    K, k, V, v, bad = riccati_sweep(C, c, F, f, C_final, c_final)
    if bool(bad.any()):
        raise ValueError(
            "C: the control Hessian Q_uu = C_uu + F_u' V F_u is not positive definite at some "
            f"step for examples {bad.nonzero().flatten().tolist()} (cost not convex in u)"
        )
    states, actions = rollout_linear(x_init, K, k, F, f)
    cost = quad_cost(states, actions, C, c, C_final, c_final)
    return LQRSolution(states=states, actions=actions, K=K, k=k, V=V, v=v, cost=cost)


@dataclass
class DAREResult:
    """Solution of the discrete algebraic Riccati equation.

    Attributes:
        P: ``[B, nx, nx]`` stabilising solution of ``P = A'PA - A'PB (R + B'PB)^{-1} B'PA + Q``.
        K: ``[B, nu, nx]`` optimal infinite-horizon gain, ``u = -K x``.
        converged: ``[B]`` bool.
        iterations: doubling iterations used (int).
    """

    P: Tensor
    K: Tensor
    converged: Tensor
    iterations: int


def dare(
    A: Tensor, B: Tensor, Q: Tensor, R: Tensor, *, max_iter: int = 60, tol: float = 1e-12
) -> DAREResult:
    """Batched DARE by the structure-preserving doubling algorithm (Chu et al. 2004).

    Args:
        A: ``[nx, nx]`` or ``[B, nx, nx]``; B: ``[nx, nu]`` or ``[B, nx, nu]``;
        Q: ``[nx, nx]`` PSD or batched; R: ``[nu, nu]`` positive definite or batched.
        max_iter: doubling iterations at most (convergence is quadratic).
        tol: relative change of ``P`` below which an example counts as converged.

    Returns:
        ``DAREResult``; examples whose iteration did not settle (e.g. an unstabilisable pair)
        have ``converged`` false.
    """
    A, Bm, Q, R = (_as_tensor(t, n) for t, n in ((A, "A"), (B, "B"), (Q, "Q"), (R, "R")))
    if A.dim() not in (2, 3) or A.shape[-1] != A.shape[-2]:
        raise ValueError(f"A: expected [nx, nx] or [B, nx, nx], got {list(A.shape)}")
    nx = A.shape[-1]
    if Bm.shape[-2] != nx:
        raise ValueError(f"B: expected [..., nx={nx}, nu], got {list(Bm.shape)}")
    nu = Bm.shape[-1]
    if Q.shape[-2:] != (nx, nx):
        raise ValueError(f"Q: expected [..., {nx}, {nx}], got {list(Q.shape)}")
    if R.shape[-2:] != (nu, nu):
        raise ValueError(f"R: expected [..., {nu}, {nu}], got {list(R.shape)}")
    for t, name in ((A, "A"), (Bm, "B"), (Q, "Q"), (R, "R")):
        check_finite(t, name)
    batch = torch.broadcast_shapes(A.shape[:-2], Bm.shape[:-2], Q.shape[:-2], R.shape[:-2])
    if len(batch) == 0:
        batch = torch.Size([1])
    A, Bm = A.expand(*batch, nx, nx), Bm.expand(*batch, nx, nu)
    Q, R = _sym(Q.expand(*batch, nx, nx)), _sym(R.expand(*batch, nu, nu))
    if (torch.linalg.eigvalsh(R.detach()) <= 0).any():
        raise ValueError("R: must be symmetric positive definite")
    eye = torch.eye(nx, dtype=A.dtype, device=A.device).expand_as(A)
    Ak, Gk = A, Bm @ torch.linalg.solve(R, Bm.transpose(-1, -2))
    Hk = Q
    converged = torch.zeros(batch, dtype=torch.bool, device=A.device)
    iterations = 0
    for _ in range(max_iter):
        iterations += 1
        W = eye + Gk @ Hk
        WA = torch.linalg.solve(W, Ak)
        WG = torch.linalg.solve(W, Gk)
        H_new = _sym(Hk + Ak.transpose(-1, -2) @ Hk @ WA)
        Gk = _sym(Gk + Ak @ WG @ Ak.transpose(-1, -2))
        Ak = Ak @ WA
        change = (H_new - Hk).flatten(1).norm(dim=1) / H_new.flatten(1).norm(dim=1).clamp_min(
            1e-300
        )
        Hk = H_new
        converged = change <= tol
        if bool(converged.all()):  # one sync per doubling step (not a hot loop)
            break
    P = Hk
    BtP = Bm.transpose(-1, -2) @ P
    K = torch.linalg.solve(R + BtP @ Bm, BtP @ A)
    converged = converged & torch.isfinite(P).flatten(1).all(1)
    return DAREResult(P=P, K=K, converged=converged, iterations=iterations)
