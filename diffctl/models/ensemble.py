"""``EnsembleDynamics``: probabilistic ensemble of Gaussian-output networks (PETS).

Chua, Calandra, McAllister, Levine, "Deep Reinforcement Learning in a Handful of Trials using
Probabilistic Dynamics Models", NeurIPS 2018:
- each member outputs a Gaussian over the (standardised) state change, trained with the Gaussian
  negative log-likelihood (Eq. 1) on its own bootstrap resample of the data;
- the log-variance is soft-bounded between learned ``max_logvar`` / ``min_logvar`` with softplus
  (Appendix A.1), which get a small loss term pulling them together;
- trajectory sampling (Sec. 4.2): every particle is propagated by one member, either re-drawn
  every step (TS-1) or fixed for the whole trajectory (TS-inf).

All members run as one batched matmul per layer (weights ``[E, in, out]``), never a Python
loop over members. The networks predict the standardised state change ``(x' - x - mean) / std``
from standardised inputs (both normalisers fitted on the training data by ``prepare``).

Elites (as in PETS's and MBPO's code): ``fit`` keeps the ``num_elites`` members with the lowest
one-step error on the held-out episodes (``select_elites``); the ensemble mean, trajectory
sampling and the planners then use the elites only (member ``k`` of a planner is elite ``k``).
With ``num_elites = num_members`` (the default) every member is an elite.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import DynamicsModel, Standardizer, angle_features
from .mlp import ACTIVATIONS, _check_arch

__all__ = ["EnsembleDynamics", "EnsembleLinear", "TS_MODES"]

TS_MODES = ("ts1", "tsinf")


class EnsembleLinear(nn.Module):
    """``E`` independent affine layers as one batched matmul: ``[E, N, in] -> [E, N, out]``."""

    def __init__(self, num_members: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)  # torch.nn.Linear's default init range, per member
        self.weight = nn.Parameter(
            torch.empty(num_members, in_dim, out_dim).uniform_(-bound, bound)
        )
        self.bias = nn.Parameter(torch.empty(num_members, 1, out_dim).uniform_(-bound, bound))

    def forward(self, h: Tensor) -> Tensor:
        """``h [E, N, in] -> [E, N, out]`` (``EnsembleDynamics`` also runs a subset of the
        members through their gathered weights: ``_layer_weights``)."""
        return torch.bmm(h, self.weight) + self.bias


class EnsembleDynamics(DynamicsModel):
    """PETS probabilistic ensemble; ``forward`` returns the ensemble-mean next state.

    Args:
        state_dim, act_dim: ``nx``, ``nu``.
        num_members: ensemble size ``E``.
        num_elites: members used for prediction and planning once ``select_elites`` has run
            (None: all; PETS/MBPO: 5 of 7).
        hidden, activation, angle_dims, position_dims: as in ``MLPDynamics``.
        max_logvar, min_logvar: initial soft bounds of the standardised log-variance.
        logvar_bound_weight: weight of ``sum(max_logvar) - sum(min_logvar)`` in the loss.
    """

    kind = "ensemble"

    def __init__(
        self,
        state_dim: int,
        act_dim: int,
        *,
        num_members: int = 5,
        num_elites: int | None = None,
        hidden: Sequence[int] = (200, 200),
        activation: str = "silu",
        angle_dims: Sequence[int] = (),
        position_dims: Sequence[int] = (),
        max_logvar: float = 0.5,
        min_logvar: float = -10.0,
        logvar_bound_weight: float = 0.01,
    ) -> None:
        super().__init__(state_dim, act_dim)
        hidden = tuple(hidden)
        angle_dims = tuple(int(i) for i in angle_dims)
        position_dims = tuple(int(i) for i in position_dims)
        _check_arch(hidden, activation, angle_dims, state_dim, position_dims)
        if isinstance(num_members, bool) or not isinstance(num_members, int) or num_members < 1:
            raise ValueError(f"num_members: expected a positive int, got {num_members!r}")
        num_elites = num_members if num_elites is None else num_elites
        if (
            isinstance(num_elites, bool)
            or not isinstance(num_elites, int)
            or not 1 <= num_elites <= num_members
        ):
            raise ValueError(
                f"num_elites: expected an int in [1, num_members={num_members}], got {num_elites!r}"
            )
        if not max_logvar > min_logvar:
            raise ValueError(
                f"max_logvar: must exceed min_logvar, got {max_logvar} <= {min_logvar}"
            )
        if not logvar_bound_weight >= 0:
            raise ValueError(f"logvar_bound_weight: expected >= 0, got {logvar_bound_weight}")
        self.num_members = num_members
        self.num_elites = num_elites
        self.hidden = hidden
        self.activation = activation
        self.angle_dims = angle_dims
        self.position_dims = position_dims
        self.logvar_bound_weight = float(logvar_bound_weight)
        in_dim = state_dim + len(angle_dims) - len(position_dims) + act_dim
        self.in_norm = Standardizer(in_dim)
        self.out_norm = Standardizer(state_dim)
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [EnsembleLinear(num_members, in_dim, h), ACTIVATIONS[activation]()]
            in_dim = h
        layers.append(EnsembleLinear(num_members, in_dim, 2 * state_dim))
        self.net = nn.Sequential(*layers)
        self.max_logvar = nn.Parameter(torch.full((state_dim,), float(max_logvar)))
        self.min_logvar = nn.Parameter(torch.full((state_dim,), float(min_logvar)))
        #: the elite members, best first (``select_elites``); saved with the state dict
        self.register_buffer("elite_idx", torch.arange(num_elites))
        self.register_load_state_dict_pre_hook(_default_elites)

    # ------------------------------------------------------------------ core
    def _inputs(self, x: Tensor, u: Tensor) -> Tensor:
        return torch.cat([angle_features(x, self.angle_dims, self.position_dims), u], dim=-1)

    def _features(self, x: Tensor, u: Tensor) -> Tensor:
        return self.in_norm.normalize(self._inputs(x, u))

    def _layer_weights(self, members: Tensor | None = None) -> list[tuple[Tensor, Tensor]]:
        """``(weight [E', in, out], bias [E', 1, out])`` of every ``EnsembleLinear``: of all
        members (views), or of ``members [E']`` only (gathered, i.e. copied)."""
        linears = [layer for layer in self.net if isinstance(layer, EnsembleLinear)]
        if members is None:
            return [(layer.weight, layer.bias) for layer in linears]
        return [(layer.weight[members], layer.bias[members]) for layer in linears]

    def _net(self, feats: Tensor, weights: list[tuple[Tensor, Tensor]] | None = None) -> Tensor:
        """Raw outputs ``[E, N, 2 nx]`` for ``feats [E, N, F]`` (with ``weights``, the
        ``_layer_weights`` of ``E'`` members: ``feats [E', N, F]`` through those members)."""
        weights = iter(self._layer_weights() if weights is None else weights)
        h = feats
        for layer in self.net:
            if isinstance(layer, EnsembleLinear):
                weight, bias = next(weights)
                # bmm, then the bias: compiled, the addition fuses into the activation's
                # kernel (baddbmm would first copy the bias into its output); the product in
                # the weights' dtype (``elite_weights(dtype)``), the rest in the biases'
                h = torch.bmm(h.to(weight.dtype), weight).to(bias.dtype) + bias
            else:
                h = layer(h)
        return h

    def _gaussian(self, feats: Tensor, members: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Standardised member means and log-variances ``[E, N, nx]`` of ``feats [E, N, F]``
        (with ``members [E']``: ``feats [E', N, F]`` through those members)."""
        out = self._net(feats, self._layer_weights(members))
        return out[..., : self.state_dim], self._logvar(out[..., self.state_dim :])

    def _logvar(self, raw: Tensor) -> Tensor:
        """The log-variance head's raw output soft-bounded (PETS, Appendix A.1)."""
        logvar = self.max_logvar - F.softplus(self.max_logvar - raw)
        return self.min_logvar + F.softplus(logvar - self.min_logvar)

    def _elites(self) -> Tensor | None:
        """``elite_idx``, or None when every member is an elite in order (no gather needed)."""
        return None if self.num_elites == self.num_members else self.elite_idx

    def _all_members(self, x: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        """The elites on all rows of ``x [..., nx]``: standardised mean, logvar ``[E', N, nx]``."""
        feats = self._features(x, u).reshape(1, -1, self.in_norm.mean.shape[0])
        return self._gaussian(feats.expand(self.num_elites, -1, -1), self._elites())

    def step_members(
        self,
        x: Tensor,
        u: Tensor,
        weights: list[tuple[Tensor, Tensor]] | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        """Next states ``[E', M, nx]`` of ``x [E', M, nx]``, ``u [E', M, nu]`` with slice ``k``
        through elite ``k`` only: the planners' fast ensemble call, ``1/E'`` of the work of
        ``forward(x, u, member)`` (which evaluates every elite on every row).

        ``weights``: ``elite_weights()``, gathered once for the many calls of a rollout (with
        fewer elites than members, a call without it gathers the elites' weights itself).
        ``noise``: None for each elite's mean prediction, or standard normal ``[E', M, nx]`` for
        a sample of its Gaussian, ``mean + std * noise`` (PETS's probabilistic propagation)."""
        weights = self.elite_weights() if weights is None else weights
        out = self._net(self._features(x, u), weights)
        mean = out[..., : self.state_dim]
        if noise is not None:
            mean = mean + torch.exp(0.5 * self._logvar(out[..., self.state_dim :])) * noise
        return x + self.out_norm.denormalize(mean)

    def elite_weights(self, dtype: torch.dtype | None = None) -> list[tuple[Tensor, Tensor]]:
        """The elites' layer weights ``(weight [E', in, out], bias [E', 1, out])`` for
        ``step_members``: views when every member is an elite, else one gathered copy. With
        ``dtype`` (e.g. ``torch.bfloat16``) the weights, not the biases, are cast to it, and
        ``step_members`` then multiplies in that dtype (its inputs cast to it at each layer)."""
        weights = self._layer_weights(self._elites())
        if dtype is None:
            return weights
        return [(weight.to(dtype), bias) for weight, bias in weights]

    def forward(self, x: Tensor, u: Tensor, member: Tensor | None = None) -> Tensor:
        """Mean of the elites' next states ``[..., nx]``; with ``member`` (int64 ``[...]`` in
        ``[0, num_elites)``; larger values wrap around), the mean prediction of each row's own
        elite instead (the planners' ensemble calling convention; it evaluates every elite on
        every row, ``step_members`` and ``sample`` are the cheaper TS paths)."""
        mean, _ = self._all_members(x, u)
        delta = self.out_norm.denormalize(mean)  # [E', N, nx]
        if member is None:
            delta = delta.mean(0)
        else:
            member = torch.remainder(member, self.num_elites)
            idx = member.reshape(1, -1, 1).expand(1, delta.shape[1], self.state_dim)
            delta = torch.gather(delta, 0, idx)[0]
        return x + delta.reshape(x.shape)

    def member_predictions(self, x: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        """Per-elite next-state mean and aleatoric variance, both ``[E', ..., nx]``."""
        mean, logvar = self._all_members(x, u)
        shape = (self.num_elites, *x.shape)
        mu = x + self.out_norm.denormalize(mean).reshape(shape)
        var = (logvar.exp() * self.out_norm.std**2).reshape(shape)
        return mu, var

    def mean(self, x: Tensor, u: Tensor) -> Tensor:
        """Ensemble-mean next state ``[..., nx]`` (what ``forward`` returns)."""
        return self(x, u)

    def spread(self, x: Tensor, u: Tensor) -> Tensor:
        """Epistemic spread: standard deviation of the member means, ``[..., nx]``."""
        mu, _ = self.member_predictions(x, u)
        return mu.std(0, unbiased=False)

    def sample(
        self,
        x: Tensor,
        u: Tensor,
        *,
        mode: str = "tsinf",
        noise: bool = True,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Trajectory-sampling step (PETS Sec. 4.2) of ``N`` particles ``x [..., nx]``.

        Row ``i`` of the flattened batch is propagated by elite ``i % E'`` (``"tsinf"``: the same
        member at every call, so a particle keeps its member over a trajectory) or by a member
        re-drawn at every call (``"ts1"``: a random balanced assignment). With ``noise`` the
        output is a sample of that member's Gaussian, else its mean. Returns ``[..., nx]``.

        With a sampling planner's ``particles = P`` (a multiple of ``E``) every sampled action
        sequence is rolled out by ``P / E`` particles of each member (its rows are consecutive).
        """
        if mode not in TS_MODES:
            raise ValueError(f"mode: expected one of {TS_MODES}, got {mode!r}")
        e = self.num_elites
        feats = self._features(x, u)
        f_dim = feats.shape[-1]
        feats = feats.reshape(-1, f_dim)
        n = feats.shape[0]
        perm = None
        if mode == "ts1":
            perm = torch.randperm(n, generator=generator, device=feats.device)
            feats = feats[perm]
        pad = -n % e  # zero rows so that row k * E + m -> member m fills [E, ceil(N / E), F]
        if pad:
            feats = torch.cat([feats, feats.new_zeros(pad, f_dim)])
        m = (n + pad) // e
        mean, logvar = self._gaussian(feats.reshape(m, e, f_dim).transpose(0, 1), self._elites())
        if noise:  # aleatoric sample of the member's Gaussian
            eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            mean = mean + torch.exp(0.5 * logvar) * eps
        delta = self.out_norm.denormalize(mean).transpose(0, 1).reshape(m * e, self.state_dim)
        delta = delta[:n]
        if perm is not None:
            delta = delta[torch.argsort(perm)]
        return x + delta.reshape(x.shape)

    def sampler(
        self, mode: str = "tsinf", noise: bool = True, generator: torch.Generator | None = None
    ) -> Callable[[Tensor, Tensor], Tensor]:
        """A dynamics callable ``(x, u) -> x_next`` that calls ``sample`` with these settings."""
        if mode not in TS_MODES:
            raise ValueError(f"mode: expected one of {TS_MODES}, got {mode!r}")

        def step(x: Tensor, u: Tensor) -> Tensor:
            return self.sample(x, u, mode=mode, noise=noise, generator=generator)

        return step

    # ------------------------------------------------------------------ training
    def prepare(self, x: Tensor, u: Tensor, x_next: Tensor) -> None:
        self.in_norm.fit(self._inputs(x, u))
        self.out_norm.fit(x_next - x)

    def bootstrap_indices(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Bootstrap resample (with replacement) of ``n`` rows for every member: ``[E, n]``."""
        gen_device = generator.device if generator is not None else torch.device("cpu")
        idx = torch.randint(0, n, (self.num_members, n), generator=generator, device=gen_device)
        return idx.to(self.max_logvar.device)

    def loss(self, x: Tensor, u: Tensor, x_next: Tensor) -> Tensor:
        """Gaussian NLL (PETS Eq. 1, up to constants) plus the log-variance bound term.

        ``x, u, x_next`` are ``[E, N, ...]`` (member ``m`` trains on row ``m``, its bootstrap
        minibatch) or ``[N, ...]`` (every member on the same rows).
        """
        feats = self._features(x, u)
        if feats.dim() == 2:
            feats = feats.expand(self.num_members, -1, -1)
        mean, logvar = self._gaussian(feats)
        target = self.out_norm.normalize(x_next - x)
        nll = ((mean - target) ** 2 * torch.exp(-logvar) + logvar).mean()
        return nll + self.logvar_bound_weight * (self.max_logvar.sum() - self.min_logvar.sum())

    @torch.no_grad()
    def member_errors(self, x: Tensor, u: Tensor, x_next: Tensor, chunk: int = 65536) -> Tensor:
        """Mean squared error ``[E]`` of every member's mean prediction of the standardised
        state change on the rows ``x [N, nx], u [N, nu], x_next [N, nx]`` (elite selection)."""
        total = torch.zeros(self.num_members, device=x.device, dtype=x.dtype)
        for i in range(0, x.shape[0], chunk):
            xs, us, ys = x[i : i + chunk], u[i : i + chunk], x_next[i : i + chunk]
            feats = self._features(xs, us).expand(self.num_members, -1, -1)
            mean, _ = self._gaussian(feats)
            target = self.out_norm.normalize(ys - xs)
            total = total + ((mean - target) ** 2).mean(-1).sum(-1)
        return total / max(x.shape[0], 1)

    @torch.no_grad()
    def select_elites(self, x: Tensor, u: Tensor, x_next: Tensor) -> Tensor:
        """Keep the ``num_elites`` members with the lowest ``member_errors`` on these (held-out)
        rows as ``elite_idx`` (best first); returns the errors ``[E]``."""
        err = self.member_errors(x, u, x_next)
        self.elite_idx.copy_(err.argsort()[: self.num_elites])
        return err

    def init_kwargs(self) -> dict[str, Any]:
        return {
            **super().init_kwargs(),
            "num_members": self.num_members,
            "num_elites": self.num_elites,
            "hidden": list(self.hidden),
            "activation": self.activation,
            "angle_dims": list(self.angle_dims),
            "position_dims": list(self.position_dims),
            "logvar_bound_weight": self.logvar_bound_weight,
        }


def _default_elites(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Load state dicts saved before elites existed: every member is an elite, in order."""
    key = prefix + "elite_idx"
    if key not in state_dict and isinstance(module, EnsembleDynamics):
        state_dict[key] = torch.arange(module.num_elites, device=module.elite_idx.device)
