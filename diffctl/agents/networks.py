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
    "ActorCritic",
    "GaussianActorCritic",
    "CategoricalActorCritic",
    "ManualActorCritic",
]

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}
_ACTIVATION_FNS = {"tanh": torch.tanh, "relu": torch.relu, "elu": nn.functional.elu}
_LOG_2PI = math.log(2 * math.pi)
_SIGMOID_ROWS = 256  # ActorCritic's tanh as a folded sigmoid from this batch size


def mlp(
    in_dim: int,
    hidden: Sequence[int],
    out_dim: int,
    activation: str = "tanh",
    out_gain: float = 1.0,
) -> nn.Sequential:
    """``Linear -> act -> ... -> Linear`` with orthogonal weights and zero biases."""
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    dims = [in_dim, *hidden]
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [_ortho(nn.Linear(a, b), math.sqrt(2)), _ACTIVATIONS[activation]()]
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
        """Reparameterised ``(action [B, act_dim], log_prob [B])``."""
        mu, log_std = self.head(self.act_fn(self.trunk(obs))).chunk(2, -1)
        log_std = log_std.clamp(self.log_std_min, self.log_std_max)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
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
    """Action value ``Q(o, a) [B]`` of continuous actions (input ``[o, a]``)."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (256, 256),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.net = mlp(obs_dim + act_dim, hidden, 1, activation, out_gain=1.0)

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        return self.net(torch.cat([obs, action], -1)).squeeze(-1)


class ActorCritic(nn.Module):
    """A policy MLP and a state-value MLP of the same hidden sizes, evaluated as one network.

    Hidden layer ``i`` of both is one batched matmul (``torch.baddbmm``) on weights stacked
    ``[2, in, out]`` (index 0 the policy, 1 the critic), so a forward and backward pass of
    both nets costs the ops of one: at PPO's sizes much of the time is per-op overhead.
    The policy head ``[hidden, out_dim]`` and the value head ``[hidden, 1]`` are one matmul
    each. Initialised as ``mlp`` initialises the two separate nets, drawing the policy's
    weights first, so under the same seed it holds exactly the weights (and computes the
    outputs) of ``GaussianActor`` / ``CategoricalActor`` built before a ``ValueCritic``.

    With ``tanh`` and batches of at least 256 rows, the nets use ``tanh(z) = 2 sigmoid(2z) - 1``
    (torch's CPU sigmoid kernel is about 3x faster than its tanh kernel): a layer keeps
    ``s = sigmoid(2z)`` (its weights and bias doubled give ``2z``), and the next layer folds
    ``2s - 1`` into its matmul, ``b + (2s - 1) W = (b - 1'W) + 2 s W``: the identity costs no
    elementwise op on the activations, only a few on the weights (equal to tanh up to
    rounding, tested).
    """

    def __init__(
        self,
        obs_dim: int,
        out_dim: int,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        pi = mlp(obs_dim, hidden, out_dim, activation, out_gain=0.01)
        v = mlp(obs_dim, hidden, 1, activation, out_gain=1.0)
        self.activation = activation
        self.act_fn = _ACTIVATION_FNS[activation]
        self.sigmoid_tanh = activation == "tanh"
        pairs = list(zip(pi[::2], v[::2]))  # the Linear layers of both nets, side by side
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.stack([a.weight.T, b.weight.T]).detach()) for a, b in pairs[:-1]]
        )
        self.biases = nn.ParameterList(
            [nn.Parameter(torch.stack([a.bias, b.bias])[:, None].detach()) for a, b in pairs[:-1]]
        )
        self.pi_weight = nn.Parameter(pi[-1].weight.T.detach().clone())
        self.pi_bias = nn.Parameter(pi[-1].bias.detach().clone())
        self.v_weight = nn.Parameter(v[-1].weight.T.detach().clone())
        self.v_bias = nn.Parameter(v[-1].bias.detach().clone())

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """``(policy output [B, out_dim], value [B])`` for ``obs [B, obs_dim]``."""
        h, fold = obs.expand(2, *obs.shape), self._fold(obs)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = self._layer(torch.baddbmm, b, h, w, fold, first=i == 0)
        h_pi, h_v = h.unbind()  # (one stack in the backward; selects would zero-fill twice)
        pi = _affine(torch.addmm, self.pi_bias, h_pi, self.pi_weight, fold)
        return pi, _affine(torch.addmm, self.v_bias, h_v, self.v_weight, fold).squeeze(-1)

    def policy_output(self, obs: Tensor) -> Tensor:
        """The policy net alone, ``[B, out_dim]`` (acting needs no value)."""
        h, fold = obs, self._fold(obs)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = self._layer(torch.addmm, b[0], h, w[0], fold, first=i == 0)
        return _affine(torch.addmm, self.pi_bias, h, self.pi_weight, fold)

    def frozen_policy(self, rows: int) -> Any:
        """``policy_output`` as a function of ``obs [rows, obs_dim]`` for as long as the
        parameters do not change (a rollout): the weights it uses are selected (and, for the
        folded tanh, derived) once, the biases broadcast to ``rows`` rows (so ``addmm`` only
        copies them), and the activations are taken in place. Computes exactly what
        ``policy_output`` does."""
        fold = self.sigmoid_tanh and rows >= _SIGMOID_ROWS
        layers = []
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            b, w = b[0].detach(), w[0].detach()
            if fold:  # as _layer / _affine derive them
                if i:
                    b, w = b - w.sum(-2, keepdim=True), 2 * w
                b, w = 2.0 * b, 2.0 * w
            layers.append((b.expand(rows, -1).contiguous(), w))
        b, w = self.pi_bias.detach(), self.pi_weight.detach()
        if fold:
            b, w = b - w.sum(-2, keepdim=True), 2 * w
        b = b.expand(rows, -1).contiguous()
        act = torch.sigmoid if fold else self.act_fn
        in_place = {torch.tanh: torch.tanh_, torch.sigmoid: torch.sigmoid_, torch.relu: torch.relu_}
        act = in_place.get(act, act)  # (on addmm's fresh result)

        def policy(obs: Tensor) -> Tensor:
            h = obs
            for lb, lw in layers:
                h = act(torch.addmm(lb, h, lw))
            return torch.addmm(b, h, w)

        return policy

    def value(self, obs: Tensor) -> Tensor:
        """The critic net alone, ``V(o) [B]``."""
        h, fold = obs, self._fold(obs)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = self._layer(torch.addmm, b[1], h, w[1], fold, first=i == 0)
        return _affine(torch.addmm, self.v_bias, h, self.v_weight, fold).squeeze(-1)

    def _fold(self, obs: Tensor) -> bool:
        # the sigmoid form of tanh from _SIGMOID_ROWS rows: below, tanh on a few elements costs
        # less than the folding's extra (small) ops
        return self.sigmoid_tanh and obs.shape[0] >= _SIGMOID_ROWS

    def _layer(self, mm: Any, b: Tensor, h: Tensor, w: Tensor, fold: bool, first: bool) -> Tensor:
        """A hidden layer: ``act(b + h w)``, or with ``fold`` the sigmoid ``s`` of the tanh
        (``h`` itself such an ``s`` unless ``first``)."""
        if fold:
            return torch.sigmoid(_affine(mm, b, h, w, not first, scale=2.0))
        return self.act_fn(mm(b, h, w))


def _affine(mm: Any, b: Tensor, x: Tensor, w: Tensor, folded: bool, scale: float = 1.0) -> Tensor:
    """``scale * (b + x' w)`` with ``mm`` (``torch.addmm`` / ``baddbmm``), where ``x' = 2x - 1``
    when ``folded`` (``x`` a sigmoid standing for a tanh) and ``x' = x`` otherwise. The
    constants scale the (small) weights, not the (large) activations, nor their gradients."""
    if folded:
        b, w = b - w.sum(-2, keepdim=True), 2 * w
    if scale != 1.0:
        b, w = scale * b, scale * w
    return mm(b, x, w)


class GaussianActorCritic(ActorCritic):
    """``GaussianActor`` and ``ValueCritic`` as one ``ActorCritic`` (same distribution and
    log-densities; ``log_std`` is state-independent)."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
        log_std_init: float = 0.0,
    ) -> None:
        super().__init__(obs_dim, act_dim, hidden, activation)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))

    def sample(
        self, obs: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(action [B, act_dim], log_prob [B])``, drawn with ``generator``."""
        return _gaussian_sample(self.policy_output(obs), self.log_std, generator)

    def rollout_sampler(
        self, rows: int, steps: int, generator: torch.Generator | None = None
    ) -> tuple[Any, Tensor]:
        """``(draw, log_probs)`` for a rollout of ``steps`` steps of ``rows`` envs with frozen
        parameters. The standard-normal noise of the whole rollout is drawn at once, as one
        ``randn([steps, rows, act_dim])`` from ``generator``; ``draw(obs)``, called once per
        step, returns the action ``mu(obs) + sigma eps_t`` of the next step's noise, and
        ``log_probs [steps, rows]`` are those actions' log-probabilities (as ``sample`` computes
        them from its noise). On the CPU, when ``rows * act_dim`` is a multiple of 16, the noise
        is the same numbers ``steps`` calls of ``sample`` draw from ``generator`` (torch's CPU
        normal sampler fills blocks of 16), so the actions are too; otherwise a different
        stream of the same distribution."""
        policy = self.frozen_policy(rows)
        log_std = self.log_std.detach()
        std = log_std.exp()
        device, dtype = std.device, self.pi_weight.dtype
        shape = (steps, rows, log_std.shape[0])
        noise = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        eps = iter(noise.unbind(0))

        def draw(obs: Tensor) -> Tensor:
            return torch.addcmul(policy(obs), std, next(eps))

        return draw, _standard_log_prob(noise, log_std)

    def mode(self, obs: Tensor) -> Tensor:
        return self.policy_output(obs)

    def evaluate(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(log pi(a|o) [B], entropy [B], V(o) [B])`` in one pass of both nets."""
        mu, value = self(obs)
        return _normal_log_prob(action, mu, self.log_std), self._entropy(value.shape), value

    def log_prob_entropy(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """``(log pi(a|o) [B], entropy [B])`` from the policy net alone (``GaussianActor``'s
        API, e.g. for AIRL's discriminator)."""
        mu = self.policy_output(obs)
        return _normal_log_prob(action, mu, self.log_std), self._entropy(mu.shape[:-1])

    def _entropy(self, shape: torch.Size) -> Tensor:
        return (0.5 + 0.5 * _LOG_2PI + self.log_std).sum().expand(shape)


class CategoricalActorCritic(ActorCritic):
    """``CategoricalActor`` and ``ValueCritic`` as one ``ActorCritic``."""

    def __init__(
        self,
        obs_dim: int,
        num_actions: int,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
    ) -> None:
        super().__init__(obs_dim, num_actions, hidden, activation)

    def sample(
        self, obs: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(action int64 [B], log_prob [B])``."""
        return _categorical_sample(self.policy_output(obs), generator)

    def mode(self, obs: Tensor) -> Tensor:
        return self.policy_output(obs).argmax(-1)

    def evaluate(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(log pi(a|o) [B], entropy [B], V(o) [B])`` in one pass of both nets."""
        logits, value = self(obs)
        return (*_categorical_log_prob_entropy(logits, action), value)

    def log_prob_entropy(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """``(log pi(a|o) [B], entropy [B])`` from the policy net alone (``CategoricalActor``'s
        API)."""
        return _categorical_log_prob_entropy(self.policy_output(obs), action)


def _categorical_sample(logits: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """``(action int64 [B], log pi(action) [B])`` drawn from ``softmax(logits)``."""
    logp = torch.log_softmax(logits, -1)
    a = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(-1)
    return a, logp.gather(-1, a[:, None]).squeeze(-1)


def _categorical_log_prob_entropy(logits: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
    logp = torch.log_softmax(logits, -1)
    entropy = -(logp.exp() * logp).sum(-1)
    return logp.gather(-1, action[..., None]).squeeze(-1), entropy


class ManualActorCritic:
    """An ``ActorCritic`` evaluated and differentiated by hand, without autograd, for a fixed
    batch size ``rows`` (PPO's minibatch): ``forward`` computes ``ActorCritic.forward`` (up to
    rounding; the value as ``[rows, 1]``), and
    ``backward`` writes the gradients of the trunks and heads straight into the parameters'
    ``.grad`` (the chain rule of the affine layers and of the activation, as autograd applies
    it). At PPO's sizes most of an autograd step is per-op overhead; this takes about a third
    of the ops.

    Supported: ``tanh`` (in the folded sigmoid form where ``ActorCritic`` uses it, i.e. from
    256 rows) and ``relu`` (``ACTIVATIONS``); anything else is refused. The parameters must lie
    back to back in one buffer with ``.grad`` views (build a ``FlatAdam`` over them first), and
    ``prepare()`` must run after each change of the parameters (it derives the weights the
    forward pass uses: with the folded tanh, ``2z`` of layer ``i`` is
    ``(2 b - 2 1'W) + s (4 W)`` on the previous layer's sigmoid ``s``, see ``ActorCritic``).
    ``neg_log_std`` holds ``-log_std`` of a ``GaussianActorCritic`` after ``prepare()``.
    Call the methods under ``torch.no_grad()`` (the PPO update runs whole under it: one
    grad-mode switch per update instead of one per call).
    """

    ACTIVATIONS = ("tanh", "relu")

    def __init__(self, ac: ActorCritic, rows: int) -> None:
        if ac.activation not in self.ACTIVATIONS:
            raise ValueError(
                f"ac: hand-derived gradients support the activations {self.ACTIVATIONS}, "
                f"got {ac.activation!r}"
            )
        params = list(ac.parameters())
        if any(p.grad is None for p in params):
            raise ValueError("ac: the parameters have no .grad views (build the optimiser first)")
        self.fold = ac.sigmoid_tanh and rows >= _SIGMOID_ROWS
        fold = self.fold
        depth = len(ac.weights)
        # factor of each parameter in the derived weights (see the class docstring)
        factors = {}
        for i, (w, b) in enumerate(zip(ac.weights, ac.biases)):
            factors[id(w)] = (2.0 if i == 0 else 4.0) if fold else 1.0
            factors[id(b)] = 2.0 if fold else 1.0
        factors[id(ac.pi_weight)] = factors[id(ac.v_weight)] = 2.0 if fold else 1.0
        log_std = getattr(ac, "log_std", None)
        if log_std is not None:
            factors[id(log_std)] = -1.0
        start = min(p.storage_offset() for p in params)
        total = sum(p.numel() for p in params)
        first = params[0].detach()
        same = all(
            p.is_contiguous()
            and p.untyped_storage().data_ptr() == first.untyped_storage().data_ptr()
            for p in params
        )
        end = max(p.storage_offset() + p.numel() for p in params)
        if not same or end - start != total:
            raise ValueError("ac: the parameters are not one flat buffer (build a FlatAdam first)")
        self.span = first.as_strided((total,), (1,), start)
        self.scale = torch.ones_like(self.span)
        self.derived = torch.empty_like(self.span)
        views = {}
        for p in params:
            lo = p.storage_offset() - start
            self.scale[lo : lo + p.numel()] = factors.get(id(p), 1.0)
            views[id(p)] = self.derived[lo : lo + p.numel()].view_as(p)
        self.weights = [views[id(w)] for w in ac.weights]
        self.weights_t = [w.transpose(1, 2) for w in self.weights]
        self.biases = [views[id(b)] for b in ac.biases]
        self.pi_weight, self.pi_bias = views[id(ac.pi_weight)], views[id(ac.pi_bias)]
        self.v_weight, self.v_bias = views[id(ac.v_weight)], views[id(ac.v_bias)]
        self.neg_log_std = None if log_std is None else views[id(log_std)]
        self.grad_w = [w.grad for w in ac.weights]
        self.grad_b = [b.grad for b in ac.biases]
        self.grad_pi = (ac.pi_weight.grad, ac.pi_bias.grad)
        self.grad_v = (ac.v_weight.grad, ac.v_bias.grad)
        dev, dt = first.device, first.dtype
        # d loss / d bias = factor * (sum over the batch of d loss / d pre-activation): one bmm
        self.bias_sum = torch.full((2, 1, rows), 2.0 if fold else 1.0, device=dev, dtype=dt)
        # weight gradients: alpha x' delta + beta (bias gradient), the beta term being the
        # folded ``-1'W`` of the bias (weights and biases in the derived form)
        self.alpha_beta = [
            ((2.0 if i == 0 else 4.0, 0.0 if i == 0 else -1.0) if fold else (1.0, 0.0))
            for i in range(depth)
        ]
        self.head_alpha_beta = (2.0, -1.0) if fold else (1.0, 0.0)
        self.ones = [torch.ones(2, 1, w.shape[1], device=dev, dtype=dt) for w in ac.weights]
        self.head_ones = torch.ones(1, ac.pi_weight.shape[0], device=dev, dtype=dt)
        # the activation in place, and its backward from its output (as autograd's)
        if fold:
            self.act_, self.act_backward = torch.sigmoid_, torch.ops.aten.sigmoid_backward.default
        elif ac.activation == "tanh":
            self.act_, self.act_backward = torch.tanh_, torch.ops.aten.tanh_backward.default
        else:
            self.act_ = torch.relu_
            self.act_backward = lambda g, h: torch.ops.aten.threshold_backward.default(g, h, 0)
        self.hidden_grad = torch.empty(2, rows, ac.pi_weight.shape[0], device=dev, dtype=dt)
        # the views backward takes on every call, made once (each view costs an op)
        self.head_weights_t = (self.pi_weight.T, self.v_weight.T)
        self.hidden_grad_rows = self.hidden_grad.unbind()
        self.inputs: list[Tensor] = []
        self.head_inputs: tuple[Tensor, ...] = ()

    def prepare(self) -> None:
        """Derive the weights of the forward pass from the current parameters."""
        torch.mul(self.span, self.scale, out=self.derived)
        if self.fold:  # b' = 2b - 2 1'W = 2b - 1'(4W) / 2 (hidden), b - 1'(2W) / 2 (heads)
            for b, w, ones in zip(self.biases[1:], self.weights[1:], self.ones[1:]):
                b.baddbmm_(ones, w, alpha=-0.5)
            self.pi_bias.view(1, -1).addmm_(self.head_ones, self.pi_weight, alpha=-0.5)
            self.v_bias.view(1, -1).addmm_(self.head_ones, self.v_weight, alpha=-0.5)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """``(policy output [rows, out_dim], value [rows, 1])``, keeping the activations."""
        h = obs.expand(2, *obs.shape)
        self.inputs = [h]
        for w, b in zip(self.weights, self.biases):
            h = self.act_(torch.baddbmm(b, h, w))
            self.inputs.append(h)
        h_pi, h_v = self.head_inputs = h.unbind()
        pi = torch.addmm(self.pi_bias, h_pi, self.pi_weight)
        return pi, torch.addmm(self.v_bias, h_v, self.v_weight)

    def backward(self, grad_pi: Tensor, grad_v: Tensor) -> None:
        """Write d loss / d parameters (all but ``log_std``) into their ``.grad``, from
        ``grad_pi [rows, out_dim]`` and ``grad_v [rows, 1]`` (d loss / d the outputs of the
        last ``forward``)."""
        hidden = self.inputs[:-1]
        alpha, beta = self.head_alpha_beta
        grads = (grad_pi, grad_v)
        for (gw, gb), g, x in zip((self.grad_pi, self.grad_v), grads, self.head_inputs):
            torch.sum(g, 0, out=gb)
            torch.addmm(gb, x.T, g, beta=beta, alpha=alpha, out=gw)
        for g, w_t, out in zip(grads, self.head_weights_t, self.hidden_grad_rows):
            # one output: an outer product, as a broadcast multiply (the same numbers, faster)
            (torch.mul if w_t.shape[0] == 1 else torch.mm)(g, w_t, out=out)
        grad = self.hidden_grad
        for i in range(len(self.weights) - 1, -1, -1):
            delta = self.act_backward(grad, self.inputs[i + 1])
            alpha, beta = self.alpha_beta[i]
            gb = torch.bmm(self.bias_sum, delta, out=self.grad_b[i])
            torch.baddbmm(
                gb, hidden[i].transpose(1, 2), delta, beta=beta, alpha=alpha, out=self.grad_w[i]
            )
            if i:
                grad = torch.bmm(delta, self.weights_t[i])
