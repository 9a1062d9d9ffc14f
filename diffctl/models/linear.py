"""``LinearModel``: ``x' = A x + B u + c`` identified by regularised least squares in closed form.

Model identification of a fully observed, discrete-time linear system ``x_{k+1} = A x_k + B u_k``
(lecture notes, "Model identification": ``argmin_theta sum_k ||p_theta(x_k, u_k) - x_{k+1}||^2``)
with a ridge term on ``[A B]`` and an unpenalised offset ``c``. Fitting "around an operating
point" ``(x*, u*)`` regresses the deviations ``x - x*``, ``u - u*`` (so ``c`` is the drift at the
operating point) and, with a ``bandwidth``, weights each transition by its proximity to it
(locally weighted least squares: a data-driven linearisation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .base import DynamicsModel

__all__ = ["LinearModel"]


class LinearModel(DynamicsModel):
    """Affine dynamics ``x' = x* + A (x - x*) + B (u - u*) + c`` (``x* = u* = 0`` by default).

    Args:
        state_dim, act_dim: ``nx``, ``nu``.
        ridge: ``lambda >= 0`` of the penalty ``lambda ||[A B]||_F^2`` (``c`` is not penalised).
        operating_point: optional ``(x*, u*)`` (sequences or tensors of length ``nx``, ``nu``).
        bandwidth: optional ``h > 0``; weights transition ``i`` by
            ``exp(-||(z_i - z*) / s||^2 / (2 h^2))`` with ``z = (x, u)`` and ``s`` the per-feature
            standard deviation of the data (needs ``operating_point``).
        affine: fit the offset ``c`` (otherwise ``c = 0``).

    ``A [nx, nx]``, ``B [nx, nu]``, ``c [nx]`` are buffers (no gradient training): ``fit`` calls
    ``fit_closed_form``.
    """

    kind = "linear"

    def __init__(
        self,
        state_dim: int,
        act_dim: int,
        *,
        ridge: float = 1e-6,
        operating_point: tuple[Sequence[float] | Tensor, Sequence[float] | Tensor] | None = None,
        bandwidth: float | None = None,
        affine: bool = True,
    ) -> None:
        super().__init__(state_dim, act_dim)
        if not ridge >= 0:
            raise ValueError(f"ridge: expected >= 0, got {ridge}")
        if bandwidth is not None and not bandwidth > 0:
            raise ValueError(f"bandwidth: expected > 0 or None, got {bandwidth}")
        if bandwidth is not None and operating_point is None:
            raise ValueError("bandwidth: needs an operating_point to weight the data around")
        self.ridge = float(ridge)
        self.bandwidth = None if bandwidth is None else float(bandwidth)
        self.affine = bool(affine)
        xs = torch.zeros(state_dim)
        us = torch.zeros(act_dim)
        if operating_point is not None:
            if len(operating_point) != 2:
                raise ValueError("operating_point: expected a pair (x*, u*)")
            xs = torch.as_tensor(operating_point[0], dtype=torch.float32).reshape(-1)
            us = torch.as_tensor(operating_point[1], dtype=torch.float32).reshape(-1)
            if xs.shape != (state_dim,) or us.shape != (act_dim,):
                raise ValueError(
                    f"operating_point: expected shapes ({state_dim},) and ({act_dim},), got "
                    f"{tuple(xs.shape)} and {tuple(us.shape)}"
                )
        self.has_operating_point = operating_point is not None
        self.register_buffer("x_star", xs.clone())
        self.register_buffer("u_star", us.clone())
        self.register_buffer("A", torch.eye(state_dim))
        self.register_buffer("B", torch.zeros(state_dim, act_dim))
        self.register_buffer("c", torch.zeros(state_dim))

    def forward(self, x: Tensor, u: Tensor) -> Tensor:
        dx = x - self.x_star
        du = u - self.u_star
        return self.x_star + dx @ self.A.T + du @ self.B.T + self.c

    @torch.no_grad()
    def fit_closed_form(self, x: Tensor, u: Tensor, x_next: Tensor) -> LinearModel:
        """Solve the (weighted) ridge regression exactly on transitions ``x, u, x_next: [N, ...]``.

        Normal equations ``(Z^T W Z + lambda D) Theta = Z^T W Y`` with ``Z = [x - x*, u - u*, 1]``,
        ``Y = x' - x*`` and ``D = diag(1, ..., 1, 0)`` (offset unpenalised); solved in float64.
        """
        self.check_inputs(x, u)
        if x_next.shape != x.shape:
            raise ValueError(f"x_next: expected shape {tuple(x.shape)}, got {tuple(x_next.shape)}")
        x = x.reshape(-1, self.state_dim).double()
        u = u.reshape(-1, self.act_dim).double()
        y = x_next.reshape(-1, self.state_dim).double() - self.x_star.double()
        zx = x - self.x_star.double()
        zu = u - self.u_star.double()
        cols = [zx, zu] + ([torch.ones_like(x[:, :1])] if self.affine else [])
        z = torch.cat(cols, dim=1)
        n_feat = self.state_dim + self.act_dim
        if self.bandwidth is not None:
            s = z[:, :n_feat].std(0, unbiased=False).clamp_min(1e-12)
            d2 = ((z[:, :n_feat] / s) ** 2).sum(1)
            w = torch.exp(-0.5 * d2 / self.bandwidth**2)
        else:
            w = torch.ones(z.shape[0], dtype=z.dtype, device=z.device)
        if z.shape[0] < z.shape[1] and self.ridge == 0:
            raise ValueError(
                f"x: {z.shape[0]} transitions cannot determine {z.shape[1]} coefficients per "
                "state component without regularisation (set ridge > 0 or add data)"
            )
        zw = z * w[:, None]
        gram = zw.T @ z
        pen = torch.zeros(z.shape[1], dtype=z.dtype, device=z.device)
        pen[:n_feat] = self.ridge
        gram = gram + torch.diag(pen)
        theta = torch.linalg.solve(gram, zw.T @ y)  # [n_feat (+1), nx]
        self.A.copy_(theta[: self.state_dim].T.to(self.A))
        self.B.copy_(theta[self.state_dim : n_feat].T.to(self.B))
        self.c.copy_(theta[n_feat].to(self.c) if self.affine else torch.zeros_like(self.c))
        return self

    def init_kwargs(self) -> dict[str, Any]:
        return {
            **super().init_kwargs(),
            "ridge": self.ridge,
            "operating_point": (self.x_star.tolist(), self.u_star.tolist())
            if self.has_operating_point
            else None,
            "bandwidth": self.bandwidth,
            "affine": self.affine,
        }
