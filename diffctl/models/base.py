"""``DynamicsModel``: the learned-dynamics protocol, plus the shared input/output standardiser.

A dynamics model is an ``nn.Module`` whose ``forward(x, u) -> x_next`` maps ``[..., nx]`` states
and ``[..., nu]`` actions to ``[..., nx]`` next states, so it plugs in anywhere an env's
``dynamics`` does (planners, ``torch.func.jacrev`` + ``vmap`` linearisations). ``forward`` uses no
in-place ops and no Python branching on tensor values.

Validation: every call ``model(x, u)`` checks what needs no host synchronisation (types,
dtypes, the last dimensions, broadcastable batch shapes, the device) and names the argument;
``predict(x, u)`` is the validated public entry point that also refuses NaN/inf (a host
synchronisation, so planners and training loops call the model itself).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from diffctl.envs import any_true

__all__ = ["DynamicsModel", "Standardizer", "angle_features"]


class Standardizer(nn.Module):
    """Per-feature affine standardisation ``(v - mean) / std`` with statistics fitted from data.

    The statistics are buffers (saved in the ``state_dict``, moved by ``.to``), not parameters.
    """

    def __init__(self, dim: int, min_std: float = 1e-6) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim: expected a positive int, got {dim}")
        self.min_std = float(min_std)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, v: Tensor) -> Standardizer:
        """Set mean/std from samples ``v: [N, dim]`` (std floored at ``min_std``)."""
        v = v.reshape(-1, self.mean.shape[0]).to(self.mean)
        self.mean.copy_(v.mean(0))
        std = v.std(0, unbiased=False) if v.shape[0] > 1 else torch.ones_like(self.std)
        self.std.copy_(std.clamp_min(self.min_std))
        return self

    def normalize(self, v: Tensor) -> Tensor:
        return (v - self.mean) / self.std

    def denormalize(self, v: Tensor) -> Tensor:
        return v * self.std + self.mean


def _check_call(module: nn.Module, args: tuple[Any, ...]) -> None:
    """Forward pre-hook of every ``DynamicsModel``: ``model(x, u, ...)`` checks its inputs."""
    if len(args) >= 2:
        module._check_call_inputs(args[0], args[1])  # type: ignore[operator]


def angle_features(
    x: Tensor, angle_dims: Sequence[int], position_dims: Sequence[int] = ()
) -> Tensor:
    """The network input of a state ``x: [..., nx]``: each angle component replaced by
    ``(sin, cos)``, and the ``position_dims`` left out (components the dynamics do not depend on,
    such as a robot's position on a flat floor: a model then generalises to where it never was).

    Returns ``[..., nx + len(angle_dims) - len(position_dims)]``: the other components in order,
    then ``sin`` and ``cos`` of the angle components.
    """
    if not angle_dims and not position_dims:
        return x
    nx = x.shape[-1]
    skip = set(angle_dims) | set(position_dims)
    keep = [i for i in range(nx) if i not in skip]
    if not angle_dims:
        return x[..., keep]
    ang = x[..., list(angle_dims)]
    return torch.cat([x[..., keep], torch.sin(ang), torch.cos(ang)], dim=-1)


class DynamicsModel(nn.Module):
    """Base class of the learned dynamics models: ``forward(x, u) -> x_next``.

    Subclasses set ``kind`` (the name used in checkpoints and on the command line) and implement
    ``forward``; trainable ones implement ``loss`` (one-step training loss on a minibatch).
    ``prepare`` fits data-dependent statistics (normalisers) before training.

    Attributes:
        state_dim: ``nx``.
        act_dim: ``nu``.
        default_train_horizon: steps of the training loss ``fit`` uses when its config leaves
            ``train_horizon`` unset (1: one-step loss; ``k > 1``: open-loop ``k``-step loss).
        default_lr: learning rate ``fit`` uses when its config leaves ``lr`` unset.
    """

    kind: ClassVar[str] = ""
    default_train_horizon: ClassVar[int] = 1
    default_lr: ClassVar[float] = 1e-3

    def __init__(self, state_dim: int, act_dim: int) -> None:
        super().__init__()
        for name, v in (("state_dim", state_dim), ("act_dim", act_dim)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        self.state_dim = state_dim
        self.act_dim = act_dim
        self.register_forward_pre_hook(_check_call)

    # ------------------------------------------------------------------ protocol
    def forward(self, x: Tensor, u: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Next state ``[..., nx]`` from ``x: [..., nx]``, ``u: [..., nu]``."""
        raise NotImplementedError

    def prepare(self, x: Tensor, u: Tensor, x_next: Tensor) -> None:
        """Fit data-dependent statistics from the training transitions (default: nothing)."""

    def loss(self, x: Tensor, u: Tensor, x_next: Tensor) -> Tensor:
        """Scalar one-step training loss on a minibatch ``[N, ...]`` (default: squared error)."""
        return ((self(x, u) - x_next) ** 2).mean()

    def init_kwargs(self) -> dict[str, Any]:
        """Constructor arguments (plain Python values) that rebuild this model's architecture."""
        return {"state_dim": self.state_dim, "act_dim": self.act_dim}

    def predict(self, x: Tensor, u: Tensor) -> Tensor:
        """Next state ``[..., nx]``, with ``x``, ``u`` validated first (shapes, dtypes, device,
        NaN/inf; a host synchronisation): the checked form of ``model(x, u)``."""
        self.check_inputs(x, u)
        for name, t in (("x", x), ("u", u)):
            if any_true(~torch.isfinite(t)):
                raise ValueError(f"{name}: contains NaN or inf")
        return self(x, u)

    # ------------------------------------------------------------------ helpers
    def check_inputs(self, x: Tensor, u: Tensor) -> None:
        """Validate types, dtypes, shapes and devices of ``x`` and ``u`` (no host sync)."""
        self._check_call_inputs(x, u)
        if x.shape[:-1] != u.shape[:-1]:
            raise ValueError(
                f"u: expected batch shape {tuple(x.shape[:-1])} (that of x), "
                f"got {tuple(u.shape[:-1])}"
            )

    def _device(self) -> torch.device | None:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return None

    def _check_call_inputs(self, x: Any, u: Any) -> None:
        for name, t, n in (("x", x, self.state_dim), ("u", u, self.act_dim)):
            if not isinstance(t, Tensor):
                raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
            if not t.is_floating_point():
                raise TypeError(f"{name}: expected a floating dtype, got {t.dtype}")
            if t.dim() == 0 or t.shape[-1] != n:
                raise ValueError(f"{name}: expected shape [..., {n}], got {tuple(t.shape)}")
        dev = self._device()
        for name, t in (("x", x), ("u", u)):
            if dev is not None and t.device != dev:
                raise ValueError(f"{name}: tensor is on {t.device}, the model is on {dev}")
        try:
            torch.broadcast_shapes(x.shape[:-1], u.shape[:-1])
        except RuntimeError:
            raise ValueError(
                f"u: batch shape {tuple(u.shape[:-1])} does not broadcast against x's "
                f"{tuple(x.shape[:-1])}"
            ) from None

    def rollout(self, x0: Tensor, actions: Tensor) -> Tensor:
        """Open-loop states ``[T+1, B, nx]`` from ``x0 [B, nx]`` under ``actions [T, B, nu]``."""
        xs = [x0]
        for t in range(actions.shape[0]):
            xs.append(self(xs[-1], actions[t]))
        return torch.stack(xs)

    def extra_repr(self) -> str:
        return f"state_dim={self.state_dim}, act_dim={self.act_dim}"
