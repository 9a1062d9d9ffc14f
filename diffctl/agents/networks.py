"""Networks shared by the model-free agents.

Every network is a small MLP with orthogonal initialisation (Saxe et al. 2014; the PPO
"implementation details" of Engstrom et al. 2020 / Huang et al. 2022): hidden layers with gain
``sqrt(2)``, policy heads with gain 0.01, value heads with gain 1, zero biases.

Stochastic actors sample with an explicit ``torch.Generator`` (never the global RNG), so a
training run is reproducible and resumable bit-for-bit.

Shapes: observations ``[B, obs_dim]``; continuous actions ``[B, act_dim]``; discrete actions
int64 ``[B]``; log-probabilities, entropies and values ``[B]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "mlp",
    "GaussianActor",
    "SquashedGaussianActor",
    "DeterministicActor",
    "CategoricalActor",
    "ValueCritic",
    "QCritic",
]

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}
_LOG_2PI = math.log(2 * math.pi)


def mlp(
    in_dim: int,
    hidden: Sequence[int],
    out_dim: int,
    activation: str = "tanh",
    out_gain: float = 1.0,
    layer_norm: bool = False,
) -> nn.Sequential:
    """``Linear -> act -> ... -> Linear`` with orthogonal weights and zero biases; with
    ``layer_norm``, ``Linear -> LayerNorm -> act`` in every hidden layer (Ba et al. 2016)."""
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    dims = [in_dim, *hidden]
    for a, b in zip(dims[:-1], dims[1:]):
        layers.append(_ortho(nn.Linear(a, b), math.sqrt(2)))
        if layer_norm:
            layers.append(nn.LayerNorm(b))
        layers.append(_ACTIVATIONS[activation]())
    layers.append(_ortho(nn.Linear(dims[-1], out_dim), out_gain))
    return nn.Sequential(*layers)


def _ortho(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def _bounds(low: Sequence[float], high: Sequence[float]) -> tuple[Tensor, Tensor]:
    low_t = torch.as_tensor(low, dtype=torch.float32)
    high_t = torch.as_tensor(high, dtype=torch.float32)
    return (high_t - low_t) / 2, (high_t + low_t) / 2


class GaussianActor(nn.Module):
    """Diagonal Gaussian policy ``N(mu(o), diag(exp(log_std))^2)`` with a state-independent
    ``log_std`` (PPO / A2C / REINFORCE on continuous actions). Samples are unbounded; the
    caller clips them to the action box before stepping the env."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
        log_std_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.mean = mlp(obs_dim, hidden, act_dim, activation, out_gain=0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))

    def distribution(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean [B, act_dim], log_std [B, act_dim])``."""
        mu = self.mean(obs)
        return mu, self.log_std.expand_as(mu)

    def sample(
        self, obs: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(action [B, act_dim], log_prob [B])``, drawn with ``generator``."""
        return _gaussian_sample(self.mean(obs), self.log_std, generator)

    def log_prob_entropy(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """``(log pi(a|o) [B], entropy [B])``."""
        mu, log_std = self.distribution(obs)
        entropy = (0.5 + 0.5 * _LOG_2PI + log_std).sum(-1)
        return _normal_log_prob(action, mu, log_std), entropy

    def kl(self, obs: Tensor, old_mean: Tensor, old_log_std: Tensor) -> Tensor:
        """``KL(pi_old || pi) [B]`` between diagonal Gaussians."""
        mu, log_std = self.distribution(obs)
        var, old_var = (2 * log_std).exp(), (2 * old_log_std).exp()
        return (log_std - old_log_std + (old_var + (old_mean - mu) ** 2) / (2 * var) - 0.5).sum(-1)

    def mode(self, obs: Tensor) -> Tensor:
        return self.mean(obs)


def _normal_log_prob(a: Tensor, mu: Tensor, log_std: Tensor) -> Tensor:
    z = (a - mu) * torch.exp(-log_std)
    return (-0.5 * z * z - log_std - 0.5 * _LOG_2PI).sum(-1)


def _gaussian_sample(
    mu: Tensor, log_std: Tensor, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """``(a = mu + exp(log_std) eps, log pi(a))`` with ``eps ~ N(0, I)`` from ``generator``."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return torch.addcmul(mu, log_std.exp(), eps), _standard_log_prob(eps, log_std)


def _standard_log_prob(eps: Tensor, log_std: Tensor) -> Tensor:
    """``log N(mu + sigma eps; mu, sigma^2)`` from the standard-normal draw ``eps`` (fewer ops
    than ``_normal_log_prob`` on the sampled action; ``log_std`` may be ``[act_dim]``)."""
    return -0.5 * eps.square().sum(-1) - (log_std + 0.5 * _LOG_2PI).sum(-1)


class CategoricalActor(nn.Module):
    """Softmax policy over ``num_actions`` discrete actions."""

    def __init__(
        self,
        obs_dim: int,
        num_actions: int,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        self.logits = mlp(obs_dim, hidden, num_actions, activation, out_gain=0.01)

    def sample(
        self, obs: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(action int64 [B], log_prob [B])``."""
        return _categorical_sample(self.logits(obs), generator)

    def log_prob_entropy(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        return _categorical_log_prob_entropy(self.logits(obs), action)

    def mode(self, obs: Tensor) -> Tensor:
        return self.logits(obs).argmax(-1)


def stochastic_policy(
    spec: Any, hidden: Sequence[int], activation: str, log_std_init: float = 0.0
) -> nn.Module:
    """The on-policy agents' policy for ``spec``'s action space: ``CategoricalActor`` over
    ``spec.num_actions`` discrete actions, else a ``GaussianActor`` on ``spec.act_dim``."""
    if spec.discrete:
        return CategoricalActor(spec.obs_dim, spec.num_actions, hidden, activation)
    return GaussianActor(spec.obs_dim, spec.act_dim, hidden, activation, log_std_init)


class SquashedGaussianActor(nn.Module):
    """SAC policy: ``a = scale * tanh(u) + bias`` with ``u ~ N(mu(o), sigma(o)^2)`` and a
    state-dependent ``log sigma`` clamped to ``[log_std_min, log_std_max]`` (Haarnoja et al.
    2018, appendix C: the tanh change of variables in the log-density)."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        action_low: Sequence[float],
        action_high: Sequence[float],
        hidden: Sequence[int] = (256, 256),
        activation: str = "relu",
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
    ) -> None:
        super().__init__()
        self.trunk = mlp(obs_dim, hidden[:-1], hidden[-1], activation, out_gain=math.sqrt(2))
        self.act_fn = _ACTIVATIONS[activation]()
        self.head = _ortho(nn.Linear(hidden[-1], 2 * act_dim), 0.01)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max
        scale, bias = _bounds(action_low, action_high)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", bias)
        # sum over action dims of 0.5 log(2 pi) + 2 log 2 + log scale
        self._logp_const = act_dim * (0.5 * _LOG_2PI + 2 * math.log(2)) + scale.log().sum().item()

    def sample(
        self, obs: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Reparameterised ``(action [B, act_dim], log_prob [B])`` (``rsample`` with a fresh
        standard-normal draw)."""
        shape = (*obs.shape[:-1], self.scale.shape[-1])
        eps = torch.randn(shape, generator=generator, device=obs.device, dtype=obs.dtype)
        return self.rsample(obs, eps)

    def rsample(self, obs: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        """``(action [B, act_dim], log pi(action | obs) [B])`` for the standard-normal draw
        ``eps [B, act_dim]``: ``a = scale tanh(mu + sigma eps) + bias`` (SAC, Haarnoja et al.
        2018, eq. 11, with the tanh change of variables of its appendix C). The noise is an
        argument so that a compiled loss (which cannot trace a ``torch.Generator``) gets it."""
        mu, log_std = self.head(self.act_fn(self.trunk(obs))).chunk(2, -1)
        log_std = log_std.clamp(self.log_std_min, self.log_std_max)
        u = torch.addcmul(mu, log_std.exp(), eps)
        # log pi(a) = log N(u) - sum log(scale * (1 - tanh(u)^2)), with the stable form
        # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)); constants folded in _logp_const
        per_dim = 2 * (u + nn.functional.softplus(-2 * u)) - log_std - 0.5 * eps.square()
        logp = per_dim.sum(-1) - self._logp_const
        return torch.addcmul(self.bias, torch.tanh(u), self.scale), logp

    def mode(self, obs: Tensor) -> Tensor:
        mu, _ = self.head(self.act_fn(self.trunk(obs))).chunk(2, -1)
        return torch.tanh(mu) * self.scale + self.bias


class DeterministicActor(nn.Module):
    """DDPG / TD3 policy ``a = scale * tanh(mu(o)) + bias``."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        action_low: Sequence[float],
        action_high: Sequence[float],
        hidden: Sequence[int] = (256, 256),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, act_dim, activation, out_gain=0.01)
        scale, bias = _bounds(action_low, action_high)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", bias)

    def forward(self, obs: Tensor) -> Tensor:
        return torch.tanh(self.net(obs)) * self.scale + self.bias

    def mode(self, obs: Tensor) -> Tensor:
        return self(obs)


class ValueCritic(nn.Module):
    """State value ``V(o) [B]``."""

    def __init__(
        self, obs_dim: int, hidden: Sequence[int] = (64, 64), activation: str = "tanh"
    ) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, 1, activation, out_gain=1.0)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs).squeeze(-1)


class QCritic(nn.Module):
    """Action value ``Q(o, a) [B]`` of continuous actions (input ``[o, a]``); ``layer_norm``
    normalises every hidden layer (as ``mlp``)."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (256, 256),
        activation: str = "relu",
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        self.net = mlp(obs_dim + act_dim, hidden, 1, activation, layer_norm=layer_norm)

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        return self.net(torch.cat([obs, action], -1)).squeeze(-1)


def _categorical_sample(logits: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """``(action int64 [B], log pi(action) [B])`` drawn from ``softmax(logits)``."""
    logp = torch.log_softmax(logits, -1)
    a = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(-1)
    return a, logp.gather(-1, a[:, None]).squeeze(-1)


def _categorical_log_prob_entropy(logits: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
    logp = torch.log_softmax(logits, -1)
    entropy = -(logp.exp() * logp).sum(-1)
    return logp.gather(-1, action[..., None]).squeeze(-1), entropy
