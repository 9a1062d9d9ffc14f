"""The ``Agent``: every network an algorithm trains, with the env's spec and the config.

An ``Agent`` is an ``nn.Module`` holding every network an algorithm trains (``actor`` plus
critics / target networks in ``nets``) and, optionally, the observation normaliser, together
with the env's ``spec`` and the algorithm's frozen config. ``agent.act(obs, deterministic=...)``
is the policy. ``agent.save(path)`` / ``diffctl.agents.load(path)`` write and read it
atomically (``diffctl.agents.checkpoint``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from diffctl.envs import EnvSpec

__all__ = ["ALGORITHMS", "Agent", "TrainResult", "seeded_init"]

# algorithm name -> module under diffctl.agents (exposing CONFIG and make_agent(spec, config))
ALGORITHMS: dict[str, str] = {
    "reinforce": "reinforce",
    "a2c": "a2c",
    "ppo": "ppo",
    "ddpg": "ddpg",
    "td3": "td3",
    "sac": "sac",
    "dqn": "dqn",
    "apg": "apg",
    "trpo": "trpo",
    "npg": "npg",
    "es": "es",
    "ars": "ars",
}


class Agent(nn.Module):
    """A trained (or training) policy with the networks that produced it.

    Args:
        algo: algorithm name (a key of ``ALGORITHMS``).
        spec: the env's ``EnvSpec``.
        config: the algorithm's frozen config dataclass.
        actor: policy network with ``mode(obs)`` and, if stochastic, ``sample(obs, generator)``.
        nets: other trained networks (critics, target networks), saved alongside.
        obs_normalizer: a ``RunningNormalizer`` applied to observations before the networks.
        exploration_noise: std (in units of half the action range) of the Gaussian noise a
            deterministic actor adds when ``act(deterministic=False)`` (DDPG / TD3).
    """

    def __init__(
        self,
        algo: str,
        spec: EnvSpec,
        config: Any,
        actor: nn.Module,
        nets: Mapping[str, nn.Module] | None = None,
        obs_normalizer: Any | None = None,
        exploration_noise: float = 0.0,
    ) -> None:
        super().__init__()
        self.algo = algo
        self.spec = spec
        self.config = config
        self.actor = actor
        self.nets = nn.ModuleDict(dict(nets or {}))
        self.obs_normalizer = obs_normalizer
        self.exploration_noise = float(exploration_noise)
        if not spec.discrete:
            low, high = spec.action_bounds()
            self.register_buffer("action_low", low)
            self.register_buffer("action_high", high)

    # the normaliser is not necessarily an nn.Module: keep its state in the agent's state_dict
    def get_extra_state(self) -> Any:
        return None if self.obs_normalizer is None else self.obs_normalizer.state_dict()

    def set_extra_state(self, state: Any) -> None:
        if (state is None) != (self.obs_normalizer is None):
            raise ValueError("agent: checkpoint and agent disagree on observation normalisation")
        if state is not None:
            self.obs_normalizer.load_state_dict(state)

    def to(self, *args: Any, **kwargs: Any) -> Agent:
        """``nn.Module.to``, also moving the observation normaliser to the new device."""
        super().to(*args, **kwargs)
        if self.obs_normalizer is not None:
            self.obs_normalizer.to(self.device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.actor.parameters()).device

    def normalize_obs(self, obs: Tensor) -> Tensor:
        """Observations as the networks see them (normalised when the agent normalises)."""
        return obs if self.obs_normalizer is None else self.obs_normalizer.normalize(obs)

    def clip_action(self, action: Tensor) -> Tensor:
        """Clip a continuous action to the env's box (discrete actions pass through)."""
        if self.spec.discrete:
            return action
        return action.clamp(self.action_low, self.action_high)

    @torch.no_grad()
    def act(
        self,
        obs: Tensor,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Action for ``obs [B, obs_dim]`` (or ``[obs_dim]``): ``[B, act_dim]`` or int64 ``[B]``.

        ``deterministic=True`` takes the policy's mode (mean / argmax); otherwise samples with
        ``generator`` (the global RNG when ``None``). Continuous actions are clipped to the box.
        """
        if not isinstance(obs, Tensor):
            raise TypeError(f"obs: expected a torch.Tensor, got {type(obs).__name__}")
        if obs.shape[-1:] != (self.spec.obs_dim,) or obs.dim() not in (1, 2):
            raise ValueError(
                f"obs: expected shape [B, {self.spec.obs_dim}] or [{self.spec.obs_dim}], "
                f"got {tuple(obs.shape)}"
            )
        single = obs.dim() == 1
        o = self.normalize_obs((obs[None] if single else obs).to(self.action_dtype))
        if deterministic:
            a = self.actor.mode(o)
        elif hasattr(self.actor, "sample"):
            a, _ = self.actor.sample(o, generator)
        else:
            a = self.actor.mode(o)
            noise = torch.randn(a.shape, generator=generator, device=a.device, dtype=a.dtype)
            a = a + self.exploration_noise * (self.action_high - self.action_low) / 2 * noise
        a = self.clip_action(a)
        return a[0] if single else a

    @property
    def action_dtype(self) -> torch.dtype:
        return next(self.actor.parameters()).dtype

    def save(self, path: str | os.PathLike) -> None:
        """Write the agent (networks, normaliser, spec, config) atomically to ``path``."""
        from .checkpoint import save_checkpoint

        save_checkpoint(path, self)

    def extra_repr(self) -> str:
        return f"algo={self.algo!r}, env={self.spec.name!r}"


@dataclass
class TrainResult:
    """What ``train`` returns: the ``agent`` and one history record per iteration
    (``step``, ``iteration``, ``wall_time``, ``mean_return`` of the episodes finished in that
    iteration (NaN if none), ``episodes``, and the algorithm's losses)."""

    agent: Agent
    history: list[dict[str, Any]] = field(default_factory=list)


def seeded_init(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """Build networks with the global RNG seeded by ``seed``, leaving the caller's RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()
