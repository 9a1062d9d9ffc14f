"""The loop shared by the off-policy actor-critics (DDPG, TD3, SAC), and their small helpers.

Per vector-env step: act (uniformly random actions for the first ``learning_starts`` env
steps, then ``agent.act(obs, deterministic=False)``), store ``(o, a, r, o', terminated)`` in a
device-resident ``ReplayBuffer`` (``o'`` is the observation reached before any auto-reset, so
targets bootstrap through time-limit truncations), then take ``updates_per_step`` gradient steps
with the algorithm's ``update``. One history record every ``log_interval`` env steps, holding
the mean of each scalar the updates returned since the previous record.

Each algorithm module supplies its config (with the fields read here: ``total_steps``,
``num_envs``, ``buffer_size``, ``batch_size``, ``learning_starts``, ``updates_per_step``,
``log_interval``), ``make_agent`` and ``make_learner``: the learner owns the optimisers
(``learner.optimizers``, saved in checkpoints) and takes gradient steps (``learner.update``).

The env steps run under ``torch.inference_mode`` where ``runner.loop_mode`` allows it; the
updates, which need autograd, run outside it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import get_ema_multi_avg_fn

from diffctl.agents.agent import Agent, TrainResult
from diffctl.agents.loop import Callback, TrainLoop
from diffctl.agents.runner import check_action_space, loop_mode, setup_runner
from diffctl.configs.agents import validate_off_policy_config
from diffctl.data import ReplayBuffer

__all__ = [
    "train_off_policy",
    "soft_update",
    "SoftUpdate",
    "validate_off_policy_config",
    "adam",
    "compiled",
    "frozen",
    "Learner",
]


class Learner(Protocol):
    """What ``train_off_policy`` needs from an algorithm (see the module docstring)."""

    optimizers: dict[str, torch.optim.Optimizer]

    def update(
        self, batch: dict[str, Tensor], generator: torch.Generator, n_update: int
    ) -> dict[str, Tensor]:
        """One gradient step on ``batch`` (``obs [B, obs_dim]``, ``actions [B, act_dim]``,
        ``rewards [B]``, ``next_obs [B, obs_dim]``, ``terminated`` bool ``[B]``), drawing its
        noise from ``generator``; ``n_update`` counts the updates before this one. Returns
        0-d tensors (losses, mean Q) for the history."""
        ...


def adam(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Adam:
    """``torch.optim.Adam`` with the fused kernel: one kernel per step (on the CPU, for twin
    2x64 critics, a third of the time of a ``foreach=True`` step)."""
    return torch.optim.Adam(params, lr=lr, fused=True)


def compiled(fn: Callable[..., Any], enabled: bool) -> Callable[..., Any]:
    """``torch.compile(fn)`` if ``enabled``, else ``fn`` itself (the eager reference).

    Compiled, a loss function's forward and backward each run as one inductor graph. The
    first call compiles; torch keeps the compiled code in its on-disk cache, so a later process
    with the same networks and batch shapes skips most of that."""
    return torch.compile(fn) if enabled else fn


class SoftUpdate:
    """Polyak averaging ``target <- tau * source + (1 - tau) * target`` (Lillicrap et al. 2016,
    Alg. 1) of the parameters of each ``(target, source)`` pair of same-shaped modules, on each
    call: the exponential moving average of decay ``1 - tau`` of ``torch.optim.swa_utils``,
    all parameters in one multi-tensor op (on these small networks a fifth of the time of a
    loop of ``lerp_``; the parameter lists are gathered once, which costs as much again)."""

    def __init__(self, pairs: Iterable[tuple[nn.Module, nn.Module]], tau: float) -> None:
        pairs = list(pairs)
        self.targets = [p for target, _ in pairs for p in target.parameters()]
        self.sources = [p for _, source in pairs for p in source.parameters()]
        self.ema = get_ema_multi_avg_fn(1.0 - tau)

    def __call__(self) -> None:
        self.ema(self.targets, self.sources, None)


def soft_update(pairs: Iterable[tuple[nn.Module, nn.Module]], tau: float) -> None:
    """One ``SoftUpdate(pairs, tau)`` step."""
    SoftUpdate(pairs, tau)()


@contextlib.contextmanager
def frozen(params: Sequence[nn.Parameter]) -> Iterator[None]:
    """Inside the block ``params`` take no gradient (``requires_grad`` false; restored on
    exit): a loss built there, such as the actor's through the critics, backpropagates to the
    other parameters only (Spinning Up's SAC freezes its Q-networks so). A list of parameters,
    not modules: ``Module.requires_grad_`` walks the module tree, ten times the cost here."""
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


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
    buffer = ReplayBuffer(cfg.buffer_size, spec.obs_dim, spec.act_dim, device=dev)
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    low, high = spec.action_bounds(dev)
    parts = {f"{name}_optimizer": opt for name, opt in learner.optimizers.items()}
    parts.update(generator=gen, buffer=buffer, runner=runner)
    loop = TrainLoop(
        agent,
        runner,
        parts,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        callback=callback,
    )
    initial = {"obs": runner.reset(seed=seed), "step": 0, "n_update": 0, "iteration": 0}
    state = loop.resume(resume, initial)
    obs, step, n_update, iteration = (state[k] for k in initial)
    n = runner.num_envs
    total = (cfg.total_steps // n) * n
    outs: list[dict[str, Tensor]] = []  # the updates' scalars since the last record
    checked: bool | None = None  # the exploration phase whose buffer writes were checked
    with loop_mode(runner, env):
        while step < total:
            if step < cfg.learning_starts:  # uniform random exploration
                u = torch.rand(n, spec.act_dim, generator=gen, device=dev)
                action = low + (high - low) * u
            else:
                action = agent.act(obs, deterministic=False, generator=gen)
            next_obs, reward, term, _trunc, info = runner.step(action)
            # the first step of each phase checks its arguments, the others are alike
            phase = step < cfg.learning_starts
            buffer.add(obs, action, reward, info["final_obs"], term, check=phase is not checked)
            checked = phase
            obs = next_obs
            step += n
            if step >= cfg.learning_starts and step >= cfg.batch_size:
                with torch.inference_mode(False):  # the updates differentiate
                    for _ in range(cfg.updates_per_step):
                        batch = buffer.sample(cfg.batch_size, gen)
                        outs.append(learner.update(batch, gen, n_update))
                        n_update += 1
            if step // cfg.log_interval > (step - n) // cfg.log_interval or step >= total:
                iteration += 1
                names = dict.fromkeys(k for out in outs for k in out)
                losses = {k: torch.stack([o[k] for o in outs if k in o]).mean() for k in names}
                outs = []
                state = {"obs": obs, "step": step, "n_update": n_update, "iteration": iteration}
                if not loop.log(step, iteration, losses, state=state, last=step >= total):
                    break
    return loop.result()
