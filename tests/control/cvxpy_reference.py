"""The reference the LQ solvers are tested against: one finite-horizon LQ problem (no batch
dimension) solved by cvxpy + Clarabel at tight tolerances."""

from __future__ import annotations

import numpy as np
import pytest


def _at(M, t: int, rank: int):
    """``M[t]`` if ``M`` is time-major (one dimension more than ``rank``), else ``M``."""
    return M[t] if np.ndim(M) == rank + 1 else M


def cvxpy_lq(x0, C, c, F, f, CT=None, cT=None, lo=None, hi=None):
    """``min sum_t 1/2 tau_t' C_t tau_t + c_t' tau_t [+ 1/2 x_T' CT x_T + cT' x_T]`` s.t.
    ``x_{t+1} = F_t tau_t + f_t``, ``x_0 = x0`` [and ``lo <= u_t <= hi``], ``tau_t = [x_t; u_t]``.

    ``C``, ``F`` and ``f`` may be time-major (``[T, ...]``) or shared. Returns
    ``(states [T+1, nx], actions [T, nu], optimal value)``.
    """
    cp = pytest.importorskip("cvxpy")
    T, nx = c.shape[0], x0.shape[0]
    x, u = cp.Variable((T + 1, nx)), cp.Variable((T, c.shape[1] - nx))
    obj, cons = 0, [x[0] == x0]
    if lo is not None:
        cons += [u >= lo, u <= hi]
    for t in range(T):
        tau = cp.hstack([x[t], u[t]])
        obj += 0.5 * cp.quad_form(tau, cp.psd_wrap(_at(C, t, 2))) + c[t] @ tau
        cons.append(x[t + 1] == _at(F, t, 2) @ tau + _at(f, t, 1))
    if CT is not None:
        obj += 0.5 * cp.quad_form(x[T], cp.psd_wrap(CT)) + cT @ x[T]
    prob = cp.Problem(cp.Minimize(obj), cons)
    prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    return x.value, u.value, prob.value
