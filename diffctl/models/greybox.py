"""``GreyBoxModel``: system identification of a differentiable env's physical parameters.

The model is the env's own simulator with some ``env.params`` (masses, lengths, ...) replaced by
trainable values. ``fit`` adjusts them by gradient descent on the open-loop error of multi-step
rollouts through the simulator (``default_train_horizon`` steps), which, unlike a one-step fit,
averages measurement noise on the logged states instead of regressing on it. Each parameter is
kept positive by optimising its logarithm.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from diffctl.envs import Env, make

from .base import DynamicsModel

__all__ = ["GreyBoxModel"]


class GreyBoxModel(DynamicsModel):
    """The env's dynamics with trainable positive parameters ``params``.

    Args:
        env: a differentiable ``Env`` (continuous actions).
        params: names of ``env.params`` to identify (default: all of them).
        init: optional starting values (name -> float); defaults to the env's current values.

    ``forward(x, u)`` steps the env with the current estimates; ``estimates()`` returns them.
    """

    kind = "greybox"
    default_train_horizon = 10
    default_lr = 0.02

    def __init__(
        self,
        env: Env,
        params: Sequence[str] | None = None,
        *,
        init: Mapping[str, float] | None = None,
    ) -> None:
        if not isinstance(env, Env):
            raise TypeError(f"env: expected a diffctl Env, got {type(env).__name__}")
        if env.spec.discrete:
            raise ValueError(
                f"env: {env.spec.name} has discrete actions; use its continuous variant"
            )
        super().__init__(env.spec.state_dim, env.spec.act_dim)
        names = list(env.params) if params is None else list(params)
        if not names:
            raise ValueError("params: expected at least one parameter name")
        for n in names:
            if n not in env.params:
                raise ValueError(
                    f"params: {n!r} is not a parameter of {env.spec.name}; "
                    f"known: {sorted(env.params)}"
                )
        init = dict(init or {})
        for n in init:
            if n not in names:
                raise ValueError(f"init: {n!r} is not among the identified params {names}")
        self.env = env
        self.param_names = names
        self.log_params = nn.ParameterDict()
        for n in names:
            v = torch.as_tensor(init.get(n, env.params[n].detach()), dtype=env.dtype).clone()
            if not bool((v > 0).all()):
                raise ValueError(f"init: {n} must be positive to be identified, got {v.tolist()}")
            self.log_params[n] = nn.Parameter(torch.log(v).to(env.device))

    def estimates(self) -> dict[str, Tensor]:
        """Current parameter values ``exp(log_param)`` (differentiable)."""
        return {n: torch.exp(p) for n, p in self.log_params.items()}

    def current_env(self) -> Env:
        """A copy of the env carrying the current estimates (no validation: hot path)."""
        env = copy.copy(self.env)
        env.params = {**self.env.params, **self.estimates()}
        return env

    def forward(self, x: Tensor, u: Tensor) -> Tensor:
        return self.current_env()._dynamics(x, u)

    def rollout(self, x0: Tensor, actions: Tensor) -> Tensor:
        env = self.current_env()
        xs = [x0]
        for t in range(actions.shape[0]):
            xs.append(env._dynamics(xs[-1], actions[t]))
        return torch.stack(xs)

    def _apply(self, fn: Any, recurse: bool = True) -> GreyBoxModel:
        # keep the wrapped env on the same device/dtype as the trainable parameters
        super()._apply(fn, recurse)
        p = next(iter(self.log_params.values()))
        if p.device != self.env.device or p.dtype != self.env.dtype:
            self.env = self.env.to(p.device, p.dtype)
        return self

    def init_kwargs(self) -> dict[str, Any]:
        return {
            "env": self.env.spec.name,
            "env_options": dict(self.env.spec.extra),
            "env_params": {k: v.detach().cpu().tolist() for k, v in self.env.params.items()},
            "params": list(self.param_names),
        }

    @classmethod
    def from_kwargs(
        cls,
        env: str,
        env_params: Mapping[str, Any],
        params: Sequence[str],
        env_options: Mapping[str, Any] | None = None,
    ) -> GreyBoxModel:
        """Rebuild from ``init_kwargs`` (checkpoints): ``make(env, **env_options)``, saved params.

        ``env_options`` are the env's ``spec.extra`` (constructor flags such as ``swing_up``).
        """
        return cls(make(env, **dict(env_options or {})).replace(**dict(env_params)), params)

    def extra_repr(self) -> str:
        vals = ", ".join(f"{n}={p.detach().exp().tolist()}" for n, p in self.log_params.items())
        return f"env={self.env.spec.name}, {vals}"
