"""Behavioural cloning: the imitation baseline, ``min_theta sum ||pi_theta(x_i) - u_i||^2`` over
the expert's (observation, action) pairs (lecture notes; cross-entropy for discrete actions)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from diffctl.agents.networks import mlp
from diffctl.configs.irl import BCConfig
from diffctl.data import Trajectory

from .demos import check_demos

__all__ = ["BCConfig", "BCPolicy", "BCResult", "behavioural_cloning"]


class BCPolicy(nn.Module):
    """``policy(obs [B, obs_dim]) -> action``: clipped continuous actions ``[B, nu]`` or the
    most likely discrete action ``[B]`` (int64)."""

    def __init__(self, spec: Any, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.discrete = bool(spec.discrete)
        out = spec.num_actions if self.discrete else spec.act_dim
        self.net = mlp(spec.obs_dim, hidden, out, "tanh")
        if not self.discrete:
            low, high = spec.action_bounds()
            self.register_buffer("low", low)
            self.register_buffer("high", high)

    def forward(self, obs: Tensor) -> Tensor:
        """Raw outputs: actions (continuous) or logits (discrete)."""
        return self.net(obs)

    def __call__(self, obs: Tensor) -> Tensor:  # type: ignore[override]
        out = self.net(obs)
        if self.discrete:
            return out.argmax(-1)
        return torch.maximum(torch.minimum(out, self.high), self.low)


@dataclass
class BCResult:
    """The cloned policy and history (epoch, loss)."""

    policy: BCPolicy
    history: list[dict[str, Any]] = field(default_factory=list)


def behavioural_cloning(demos: Trajectory, spec: Any, config: BCConfig = BCConfig()) -> BCResult:
    """Fit a policy to the demos' (obs, action) pairs; ``spec`` is the env's ``EnvSpec``."""
    check_demos(demos, spec)
    flat = demos.flatten()
    obs, act = flat["obs"], flat["actions"]
    with torch.random.fork_rng(devices=[]):  # seeded init, caller's RNG untouched
        torch.manual_seed(config.seed)
        policy = BCPolicy(spec, config.hidden).to(device=obs.device, dtype=obs.dtype)
    opt = torch.optim.Adam(policy.parameters(), lr=config.lr)
    g = torch.Generator(device=obs.device).manual_seed(config.seed)
    n = obs.shape[0]
    history: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for epoch in range(config.epochs):
        perm = torch.randperm(n, generator=g, device=obs.device)
        total = torch.zeros((), device=obs.device, dtype=obs.dtype)
        for i in range(0, n, config.batch_size):
            idx = perm[i : i + config.batch_size]
            out = policy.forward(obs[idx])
            if spec.discrete:
                loss = nn.functional.cross_entropy(out, act[idx].long())
            else:
                loss = ((out - act[idx]) ** 2).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total = total + loss.detach() * idx.numel()
        history.append(
            {"epoch": epoch + 1, "loss": float(total / n), "time": time.perf_counter() - t0}
        )
    return BCResult(policy=policy, history=history)
