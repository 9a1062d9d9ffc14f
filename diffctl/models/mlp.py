"""``MLPDynamics``: a deterministic network predicting the state change ``x' - x``.

Inputs ``(x, u)`` (angle components of ``x`` as ``sin``/``cos``) are standardised, the network
outputs the standardised state change, and the model returns ``x + denormalise(output)``
(the usual delta parametrisation, e.g. Nagabandi et al. 2018, Sec. IV-A). The standardisers
are fitted from the training data by ``prepare``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .base import DynamicsModel, Standardizer, angle_features

__all__ = ["MLPDynamics", "ACTIVATIONS"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
}


def _check_arch(
    hidden: Sequence[int],
    activation: str,
    angle_dims: Sequence[int],
    nx: int,
    position_dims: Sequence[int] = (),
) -> None:
    if not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
        raise ValueError(f"hidden: expected a non-empty sequence of positive ints, got {hidden!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if len(set(angle_dims)) != len(angle_dims) or any(not 0 <= i < nx for i in angle_dims):
        raise ValueError(f"angle_dims: expected distinct indices in [0, {nx}), got {angle_dims!r}")
    if len(set(position_dims)) != len(position_dims) or any(
        not 0 <= i < nx or i in angle_dims for i in position_dims
    ):
        raise ValueError(
            f"position_dims: expected distinct indices in [0, {nx}) that are not angle_dims, "
            f"got {position_dims!r}"
        )


class MLPDynamics(DynamicsModel):
    """``x' = x + MLP(x, u)`` with fitted input/output standardisation.

    Args:
        state_dim, act_dim: ``nx``, ``nu``.
        hidden: hidden layer widths.
        activation: one of ``ACTIVATIONS``.
        angle_dims: indices of state components that are angles (fed as ``sin``, ``cos``).
        position_dims: indices of state components the dynamics do not depend on (a robot's
            position on the floor): left out of the input, their change still predicted.
    """

    kind = "mlp"

    def __init__(
        self,
        state_dim: int,
        act_dim: int,
        *,
        hidden: Sequence[int] = (200, 200),
        activation: str = "silu",
        angle_dims: Sequence[int] = (),
        position_dims: Sequence[int] = (),
    ) -> None:
        super().__init__(state_dim, act_dim)
        hidden = tuple(hidden)
        angle_dims = tuple(int(i) for i in angle_dims)
        position_dims = tuple(int(i) for i in position_dims)
        _check_arch(hidden, activation, angle_dims, state_dim, position_dims)
        self.hidden = hidden
        self.activation = activation
        self.angle_dims = angle_dims
        self.position_dims = position_dims
        in_dim = state_dim + len(angle_dims) - len(position_dims) + act_dim
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(in_dim, h), ACTIVATIONS[activation]()]
            in_dim = h
        layers.append(nn.Linear(in_dim, state_dim))
        self.net = nn.Sequential(*layers)
        self.in_norm = Standardizer(state_dim + len(angle_dims) - len(position_dims) + act_dim)
        self.out_norm = Standardizer(state_dim)

    def features(self, x: Tensor, u: Tensor) -> Tensor:
        """Standardised network input ``[..., nx + len(angle_dims) - len(position_dims) + nu]``."""
        return self.in_norm.normalize(self._inputs(x, u))

    def _inputs(self, x: Tensor, u: Tensor) -> Tensor:
        return torch.cat([angle_features(x, self.angle_dims, self.position_dims), u], dim=-1)

    def forward(self, x: Tensor, u: Tensor) -> Tensor:
        return x + self.out_norm.denormalize(self.net(self.features(x, u)))

    def prepare(self, x: Tensor, u: Tensor, x_next: Tensor) -> None:
        self.in_norm.fit(self._inputs(x, u))
        self.out_norm.fit(x_next - x)

    def loss(self, x: Tensor, u: Tensor, x_next: Tensor) -> Tensor:
        """Mean squared error of the standardised state change."""
        pred = self.net(self.features(x, u))
        return ((pred - self.out_norm.normalize(x_next - x)) ** 2).mean()

    def init_kwargs(self) -> dict[str, Any]:
        return {
            **super().init_kwargs(),
            "hidden": list(self.hidden),
            "activation": self.activation,
            "angle_dims": list(self.angle_dims),
            "position_dims": list(self.position_dims),
        }
