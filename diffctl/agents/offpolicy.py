"""The loop shared by the off-policy actor-critics (DDPG, TD3, SAC).

Per vector-env step: act (uniformly random actions for the first ``learning_starts`` env
steps, then the agent's exploratory policy), store ``(o, a, r, o', terminated)`` in a
device-resident ``ReplayBuffer`` (``o'`` is the observation reached before any auto-reset, so
targets bootstrap through time-limit truncations), then take ``updates_per_step`` gradient steps
with the algorithm's ``update``. One history record every ``log_interval`` env steps.

Each algorithm module supplies its config (with the fields read here: ``total_steps``,
``num_envs``, ``buffer_size``, ``batch_size``, ``learning_starts``, ``updates_per_step``,
``log_interval``), ``make_agent`` and ``make_learner``: the learner owns the optimisers
(``learner.optimizers``, saved in checkpoints), acts (``learner.explore``, the same actions as
``agent.act(obs, deterministic=False)``) and takes gradient steps (``learner.update``).

The networks are small ReLU MLPs evaluated at batch 256, where eager PyTorch spends much of
its time in per-op and autograd overhead rather than in arithmetic. The learners therefore run
without autograd: ``ReluMLP`` evaluates an MLP and backpropagates through it by hand (the chain
rule of ``Linear`` and ``ReLU``, written straight into the ``FlatAdam`` gradient views with
``out=``), and ``FlatTargets`` keeps the target networks in one flat buffer so Polyak averaging
is one ``lerp_``; ``FlatAdam`` takes each Adam step as one fused kernel.
``tests/agents/test_offpolicy_manual_grad.py`` checks every update against the same losses
differentiated by autograd. The loop runs under ``torch.inference_mode`` (no autograd dispatch
per op) when it built the env runner itself and the env steps as fast there
(``common.loop_mode``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from diffctl.agents.common import (
    Agent,
    Callback,
    FlatAdam,
    IterationLogger,
    TrainResult,
    check_action_space,
    load_checkpoint,
    loop_mode,
    restore_runner,
    runner_state,
    setup_runner,
)
from diffctl.configs.agents import validate_off_policy_config
from diffctl.data import ReplayBuffer

__all__ = [
    "train_off_policy",
    "soft_update",
    "validate_off_policy_config",
    "adam",
    "Learner",
    "ReluMLP",
    "ensemble_parameters",
    "constant",
    "mean",
    "FlatTargets",
    "Critics",
]


class Learner(Protocol):
    """What ``train_off_policy`` needs from an algorithm (see the module docstring)."""

    optimizers: dict[str, FlatAdam]

    def explore(self, obs: Tensor, generator: torch.Generator) -> Tensor: ...

    def update(
        self, batch: dict[str, Tensor], generator: torch.Generator, n_update: int
    ) -> dict[str, Tensor]: ...


@torch.no_grad()
def soft_update(pairs: list[tuple[torch.nn.Module, torch.nn.Module]], tau: float) -> None:
    """Polyak averaging ``target <- tau * source + (1 - tau) * target`` (Lillicrap et al. 2016)
    of every ``(target, source)`` pair, as one multi-tensor kernel."""
    targets = [t for target, _ in pairs for t in target.parameters()]
    sources = [s for _, source in pairs for s in source.parameters()]
    torch._foreach_lerp_(targets, sources, tau)


def adam(params: Any, lr: float) -> FlatAdam:
    """Adam over ``params`` as one flat tensor (see ``FlatAdam``)."""
    return FlatAdam(params, lr=lr)


# --------------------------------------------------------------------------- manual MLPs
Net = nn.Module | Sequence[nn.Module]
"""One ReLU MLP: ``nn.Linear`` / ``nn.ReLU`` modules or ``nn.Sequential`` of them, in order."""


def _linears(net: Net) -> list[nn.Linear]:
    """The ``nn.Linear`` layers of ``net``, which must alternate ``Linear, ReLU, ..., Linear``."""
    flat: list[nn.Module] = []
    for m in net if isinstance(net, Sequence) else [net]:
        flat.extend(m if isinstance(m, nn.Sequential) else [m])
    pattern_ok = len(flat) % 2 == 1 and all(
        isinstance(m, nn.Linear if i % 2 == 0 else nn.ReLU) for i, m in enumerate(flat)
    )
    if not pattern_ok or any(m.bias is None for m in flat[::2]):
        names = ", ".join(type(m).__name__ for m in flat)
        raise TypeError(
            f"nets: expected alternating Linear (with bias) and ReLU layers, got {names}"
        )
    return flat[::2]


def ensemble_parameters(*nets: Net) -> list[nn.Parameter]:
    """The parameters of same-shaped ReLU MLPs, layer by layer with the ``K`` copies side by
    side (``W_1^1 .. W_1^K, b_1^1 .. b_1^K, W_2^1, ...``): a ``FlatAdam`` or ``FlatTargets``
    built in this order stores each layer of the ensemble as one ``[K, out, in]`` block."""
    layers = [_linears(net) for net in nets]
    shapes = {tuple(tuple(m.weight.shape) for m in net) for net in layers}
    if len(shapes) != 1:
        raise ValueError(f"nets: expected the same layer shapes, got {sorted(shapes)}")
    return [
        getattr(net[i], name)
        for i in range(len(layers[0]))
        for name in ("weight", "bias")
        for net in layers
    ]


def _stacked(tensors: Sequence[Tensor], what: str) -> Tensor:
    """``[K, *shape]`` view of ``K`` same-shaped contiguous tensors lying back to back."""
    first = tensors[0].detach()
    stacked = first.as_strided(
        (len(tensors), *first.shape), (first.numel(), *first.stride()), first.storage_offset()
    )
    for k, t in enumerate(tensors):
        if not t.is_contiguous() or stacked[k].data_ptr() != t.data_ptr():
            raise ValueError(
                f"nets: the {what} of the ensemble are not one block; build the optimiser "
                "over ensemble_parameters(*nets)"
            )
    return stacked


class ReluMLP:
    """``K >= 1`` same-shaped ReLU MLPs (``Linear, ReLU, ..., Linear``; anything else is
    refused) evaluated as one stacked network and differentiated by hand, without autograd:
    each layer is one ``baddbmm`` on ``[K, B, in]`` (the vectorised-ensemble form), so twin
    critics cost the ops of one.

    It holds ``[K, ...]`` views of the parameters and of their ``.grad``: for ``K > 1`` each
    layer's copies must be back to back (a ``FlatAdam`` / ``FlatTargets`` over
    ``ensemble_parameters(*nets)``). Build it after that optimiser and do not replace the
    parameters' storage afterwards (in-place ``load_state_dict`` is fine). ``input_columns``
    selects the input columns ``backward`` returns the gradient of.
    """

    def __init__(self, *nets: Net, input_columns: slice | None = None) -> None:
        layers = [_linears(net) for net in nets]
        ensemble_parameters(*nets)  # same shapes
        self.weights, self.biases, self.grads = [], [], []
        for i in range(len(layers[0])):
            ms = [net[i] for net in layers]
            self.weights.append(_stacked([m.weight for m in ms], "weights"))
            self.biases.append(_stacked([m.bias for m in ms], "biases"))
            if all(m.weight.grad is not None and m.bias.grad is not None for m in ms):
                gw = _stacked([m.weight.grad for m in ms], "weight gradients")
                self.grads.append((gw, _stacked([m.bias.grad for m in ms], "bias gradients")))
        self.weights_t = [w.transpose(1, 2) for w in self.weights]
        self.biases_row = [b[:, None] for b in self.biases]
        cols = slice(None) if input_columns is None else input_columns
        self.input_weight = self.weights[0][:, :, cols]
        self.input_weight_t = self.input_weight.transpose(1, 2)
        # MKL takes the products of a [K, B, out] gradient with few-column matrices 2-3x faster
        # transposed: the first layer's dW as (x^T grad)^T (K > 1: other rounding) and the
        # input gradient of an ensemble as (W^T grad^T)^T
        self._transposed_dw = self.weights[0].shape[2] < 16
        self._transposed_dx = len(self.weights[0]) > 1

    def forward(self, x: Tensor, inputs: list[Tensor] | None = None) -> Tensor:
        """The outputs ``[K, B, out]`` for ``x [K, B, in]`` (or one ``[B, in]`` shared by all
        ``K``); appends each layer's input to ``inputs`` (for ``backward``) when given."""
        if x.dim() == 2:
            x = x.expand(len(self.weights[0]), *x.shape)
        last = len(self.weights) - 1
        for i, (w_t, b) in enumerate(zip(self.weights_t, self.biases_row)):
            if inputs is not None:
                inputs.append(x)
            x = torch.baddbmm(b, x, w_t)
            if i < last:
                x = x.relu_()
        return x

    def backward(
        self,
        inputs: Sequence[Tensor],
        grad: Tensor,
        weight_grads: bool = True,
        input_grad: bool = False,
    ) -> Tensor | None:
        """Backpropagate ``grad`` (d loss / d output, ``[K, B, out]``) through the pass that
        recorded ``inputs``: the chain rule of ``Linear`` (``dW = grad^T x``, ``db = sum_B
        grad``, ``dx = grad W``) and ``ReLU`` (the gradient passes where the post-ReLU input
        is positive, as in autograd).

        ``weight_grads``: write (not accumulate) the parameters' gradients into their
        ``.grad``. ``input_grad``: return d loss / d input ``[K, B, len(input_columns)]``.
        """
        if weight_grads and not self.grads:
            raise ValueError("weight_grads: the parameters have no .grad views (no optimiser)")
        for i in range(len(self.weights) - 1, -1, -1):
            x = inputs[i]
            if weight_grads:
                gw, gb = self.grads[i]
                if i == 0 and self._transposed_dw:
                    gw.copy_(torch.bmm(x.transpose(1, 2), grad).transpose(1, 2))
                else:
                    torch.bmm(grad.transpose(1, 2), x, out=gw)
                torch.sum(grad, 1, out=gb)
            if i == 0:
                if not input_grad:
                    return None
                if self._transposed_dx:
                    return torch.bmm(self.input_weight_t, grad.transpose(1, 2)).transpose(1, 2)
                return torch.bmm(grad, self.input_weight)
            w = self.weights[i]
            # one output (a critic's value): the product is an outer one, a broadcast multiply
            # (the same numbers; MKL takes 2-3x longer over it)
            dx = torch.mul(grad, w) if w.shape[1] == 1 else torch.bmm(grad, w)
            grad = torch.ops.aten.threshold_backward(dx, x, 0)
        return None


def mean(cache: dict[Any, Tensor], x: Tensor) -> Tensor:
    """``x.mean()`` (the same number: torch's mean is the sum divided by the count) without
    wrapping the count into a new tensor on every call."""
    return x.sum().div_(constant(cache, float(x.numel()), x))


def constant(cache: dict[Any, Tensor], value: float, like: Tensor) -> Tensor:
    """``value`` as a 0-d tensor of ``like``'s dtype and device, made once per ``cache`` (a
    Python number in a tensor op is wrapped into a new tensor on every call, which costs
    about as much as a small op itself)."""
    key = (value, like.dtype, like.device)
    if key not in cache:
        cache[key] = torch.tensor(value, dtype=like.dtype, device=like.device)
    return cache[key]


class FlatTargets:
    """Target parameters in one flat buffer, Polyak-averaged towards their sources in one op.

    ``sources`` are parameters that are, in this order, the consecutive views of
    ``optimizer.flat`` (a ``FlatAdam`` built over exactly them); ``targets`` (same shapes, same
    order) are moved into a flat buffer of the same layout. ``update(tau)``:
    ``target <- tau * source + (1 - tau) * target`` (Lillicrap et al. 2016) as one ``lerp_``.
    """

    def __init__(
        self, targets: Sequence[Tensor], sources: Sequence[Tensor], optimizer: FlatAdam
    ) -> None:
        flat = optimizer.flat
        offset = 0
        for p, q in zip(targets, sources, strict=True):
            if p.shape != q.shape:
                raise ValueError(
                    f"targets: parameter of shape {tuple(p.shape)} paired with {tuple(q.shape)}"
                )
            view = flat[offset : offset + q.numel()]
            if q.data_ptr() != view.data_ptr() or not q.is_contiguous():
                raise ValueError("sources: not the optimizer's flat buffer in order")
            offset += q.numel()
        if offset != flat.numel():
            raise ValueError("sources: the optimizer holds parameters beyond the sources")
        self.source = flat
        self.flat = torch.cat([p.detach().reshape(-1) for p in targets])
        offset = 0
        for p in targets:
            p.data = self.flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()

    def update(self, tau: float) -> None:
        with torch.no_grad():
            self.flat.lerp_(self.source, tau)


class Critics:
    """Action-value critics ``Q_k(o, a)`` (same-shaped ReLU MLPs on ``[o, a]``, e.g.
    ``QCritic.net``) as one stacked ``ReluMLP``, their targets (likewise), one ``FlatAdam``
    over all critics and their ``FlatTargets``.

    ``targets_min`` gives ``min_k Q'_k(o', a')`` (clipped double-Q, Fujimoto et al. 2018,
    eq. 10); ``step`` takes one Adam step on ``sum_k mean_B (Q_k(o, a) - y)^2`` and returns
    that loss and the batch mean of ``Q_1``; ``forward`` / ``action_grad`` give the values
    ``[K, B]`` and d/da of ``sum_k sum_B g_k Q_k(o, a)``; ``first`` is ``Q_1`` alone.
    """

    def __init__(
        self, nets: Sequence[nn.Module], targets: Sequence[nn.Module], lr: float, obs_dim: int
    ) -> None:
        params = ensemble_parameters(*nets)
        self.optimizer = adam(params, lr)
        self.polyak = FlatTargets(ensemble_parameters(*targets), params, self.optimizer)
        actions = slice(obs_dim, None)
        self.nets = ReluMLP(*nets, input_columns=actions)
        self.first = ReluMLP(nets[0], input_columns=actions)
        self.targets = ReluMLP(*targets)
        self.constants: dict[Any, Tensor] = {}

    def targets_min(self, x: Tensor) -> Tensor:
        """``min_k Q'_k`` at ``x = [o', a'] [B, in]``: ``[B]``."""
        q = self.targets.forward(x).squeeze(-1)
        q_min = q[0]
        for k in range(1, len(q)):
            q_min = torch.minimum(q_min, q[k])
        return q_min

    def step(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """One Adam step on the regression of every critic at ``x = [o, a]`` to ``y [B]``."""
        n = x.shape[0]
        inputs: list[Tensor] = []
        q = self.nets.forward(x, inputs)
        err = q.squeeze(-1) - y  # [K, B]
        self.nets.backward(inputs, (err * constant(self.constants, 2.0 / n, err))[..., None])
        self.optimizer.step()
        flat = err.reshape(-1)
        loss = torch.dot(flat, flat).div_(constant(self.constants, float(n), flat))
        return loss, mean(self.constants, q[0])

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``(Q_k(x) [K, B], recorded inputs)`` for ``action_grad``."""
        inputs: list[Tensor] = []
        return self.nets.forward(x, inputs).squeeze(-1), inputs

    def action_grad(self, inputs: list[Tensor], grads: Tensor) -> Tensor:
        """``d(sum_k sum_B g_k Q_k)/da [B, act_dim]`` for weights ``g [K, B]``; no weight
        gradients."""
        return self.nets.backward(inputs, grads[..., None], False, True).sum(0)


def train_off_policy(
    algo: str,
    env: Any,
    config: Any,
    config_type: type,
    default_config: Callable[[str], Any],
    make_agent: Callable[..., Agent],
    make_learner: Callable[[Agent, Any], Learner],
    seed: int,
    *,
    device: str | torch.device | None,
    checkpoint: str | os.PathLike | None,
    checkpoint_every: int,
    resume: str | os.PathLike | None,
    callback: Callback | None,
) -> TrainResult:
    """Run the off-policy loop (see the module docstring)."""
    runner, cfg = setup_runner(env, config, config_type, default_config, seed, device)
    spec = runner.spec
    check_action_space(spec, algo, discrete=False, continuous=True)
    dev = runner.device
    agent = make_agent(spec, cfg, seed).to(dev)
    learner = make_learner(agent, cfg)
    optimizers = learner.optimizers
    buffer = ReplayBuffer(cfg.buffer_size, spec.obs_dim, spec.act_dim, device=dev)
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    low, high = spec.action_bounds(dev)
    obs = runner.reset(seed=seed)
    n = runner.num_envs
    step, n_update, iteration, history, wall = 0, 0, 0, [], 0.0
    if resume is not None:
        saved, ts = load_checkpoint(resume, map_location=dev)
        if ts is None:
            raise ValueError(f"resume: {os.fspath(resume)!r} holds no training state")
        agent.load_state_dict(saved.state_dict())  # in place: the flat buffers stay shared
        for k, opt in optimizers.items():
            # "critics": older files hold "critic", laid out net by net
            if k not in ts["optimizers"]:
                raise ValueError(
                    f"resume: {os.fspath(resume)!r} holds no {k!r} optimiser state (written by "
                    "an older diffctl with another optimiser layout); its agent still loads"
                )
            opt.load_state_dict(ts["optimizers"][k])
        gen.set_state(ts["generator"])
        restore_runner(runner, ts["runner"])
        buffer.load_state_dict(
            {"storage": ts["buffer"], "ptr": ts["buffer_ptr"], "size": ts["buffer_size"]}
        )
        obs = ts["obs"].to(dev)
        step, n_update, iteration = ts["step"], ts["n_update"], ts["iteration"]
        history, wall = ts["history"], ts["wall_time"]
    logger = IterationLogger(runner, checkpoint, checkpoint_every, callback, history, wall)

    def snapshot() -> tuple[Agent, dict[str, Any]]:
        return agent, {
            "optimizers": {k: opt.state_dict() for k, opt in optimizers.items()},
            "generator": gen.get_state(),
            "runner": runner_state(runner),
            "buffer": buffer.storage,
            "buffer_ptr": buffer._ptr,
            "buffer_size": buffer._size,
            "obs": obs,
            "step": step,
            "n_update": n_update,
            "iteration": iteration,
        }

    acc: dict[str, Tensor] = {}  # sums of the update's scalars since the last record
    counts: dict[str, int] = {}
    total = (cfg.total_steps // n) * n
    checked: bool | None = None  # the exploration phase whose buffer writes were checked
    # the loop needs no autograd: inference mode where loop_mode allows it (about 8% of a step)
    with loop_mode(runner, env):
        while step < total:
            if step < cfg.learning_starts:  # uniform random exploration
                u = torch.rand(n, spec.act_dim, generator=gen, device=dev)
                action = low + (high - low) * u
            else:
                action = learner.explore(obs, gen)
            next_obs, reward, term, _trunc, info = runner.step(action)
            # the first step of each phase checks its arguments, the others are alike
            phase = step < cfg.learning_starts
            buffer.add(obs, action, reward, info["final_obs"], term, check=phase is not checked)
            checked = phase
            obs = next_obs
            step += n
            if step >= cfg.learning_starts and step >= cfg.batch_size:
                for _ in range(cfg.updates_per_step):
                    batch = buffer.sample(cfg.batch_size, gen)
                    out = learner.update(batch, gen, n_update)
                    n_update += 1
                    summed = [k for k in out if k in acc]
                    if summed:  # one multi-tensor add for the scalars seen before
                        torch._foreach_add_([acc[k] for k in summed], [out[k] for k in summed])
                    for k, v in out.items():
                        if k not in acc:
                            acc[k] = v.clone()
                        counts[k] = counts.get(k, 0) + 1
            if step // cfg.log_interval > (step - n) // cfg.log_interval or step >= total:
                iteration += 1
                losses = {k: v / counts[k] for k, v in acc.items()}
                acc, counts = {}, {}
                if not logger.log(step, iteration, losses, snapshot, last=step >= total):
                    break
    return TrainResult(agent, logger.history)
