"""``RewardModel``: a learned reward ``r(x, u, x_next)`` that plugs in wherever a reward callable
goes (planners, agents, ``FiniteMDP`` features), with atomic, validated save / load.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from diffctl.agents.networks import mlp
from diffctl.data import atomic_write, content_digest
from diffctl.envs.base import angle_normalize

__all__ = ["RewardConfig", "RewardModel", "load_reward"]

_KINDS = ("linear", "mlp", "quadratic")
_FORMAT = "diffctl.reward/1"


@dataclass(frozen=True)
class RewardConfig:
    """Architecture of a ``RewardModel``.

    Attributes:
        state_dim: size of ``x`` (a state, an observation, or a feature vector).
        act_dim: size of ``u`` (0 for state-only rewards or discrete actions).
        num_actions: number of discrete actions (one-hot encoded when ``use_action``), else 0.
        use_action: the reward depends on ``u``.
        use_next_state: the reward depends on ``x_next`` (AIRL's shaped reward does not; a
            state-only reward uses neither).
        kind: ``"linear"`` (``w . phi``), ``"mlp"`` or ``"quadratic"`` (``-0.5 sum_i q_i
            (phi_i - g_i)^2 - 0.5 sum_j p_j u_j^2`` with ``q, p >= 0`` learnable; Amos et al. 2018).
        hidden: hidden sizes of the MLP.
        activation: ``"tanh"``, ``"relu"`` or ``"elu"``.
        env: registry name whose ``observe`` maps states to the network input (e.g. pendulum's
            ``[cos, sin, thdot]``); ``None`` feeds ``x`` directly.
        angle_dims: components of ``x`` that are angles, wrapped to ``[-pi, pi)`` before use
            (ignored with ``env``).
    """

    state_dim: int
    act_dim: int = 0
    num_actions: int = 0
    use_action: bool = False
    use_next_state: bool = False
    kind: str = "mlp"
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    env: str | None = None
    angle_dims: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("state_dim", "act_dim", "num_actions"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name}: expected a non-negative int, got {v!r}")
        if self.state_dim < 1:
            raise ValueError(f"state_dim: expected a positive int, got {self.state_dim}")
        if self.kind not in _KINDS:
            raise ValueError(f"kind: expected one of {_KINDS}, got {self.kind!r}")
        if self.use_action and self.act_dim == 0 and self.num_actions == 0:
            raise ValueError("use_action: needs act_dim > 0 or num_actions > 0")
        if self.act_dim and self.num_actions:
            raise ValueError("num_actions: give act_dim (continuous) or num_actions, not both")
        if self.kind == "quadratic" and self.use_next_state:
            raise ValueError("use_next_state: the quadratic reward is a stage cost of (x, u)")
        if self.kind == "quadratic" and self.num_actions:
            raise ValueError("num_actions: the quadratic reward needs continuous actions")
        if any(not 0 <= d < self.state_dim for d in self.angle_dims):
            raise ValueError(
                f"angle_dims: expected indices in [0, {self.state_dim}), got {self.angle_dims!r}"
            )
        if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden):
            raise ValueError(f"hidden: expected positive ints, got {self.hidden!r}")


class RewardModel(nn.Module):
    """A learned reward ``r(x, u, x_next) -> [...]`` for batches ``x [..., nx]``.

    ``u`` is ``[..., nu]`` (or int64 ``[...]`` for discrete actions) and ``x_next``
    ``[..., nx]``; arguments the reward does not use may be ``None``. The quadratic kind's
    parameters are ``goal`` ``[d]``, ``log_q`` ``[d]`` and ``log_p`` ``[nu]`` (``d`` = input size).
    """

    def __init__(self, config: RewardConfig) -> None:
        super().__init__()
        if not isinstance(config, RewardConfig):
            raise TypeError(f"config: expected a RewardConfig, got {type(config).__name__}")
        self.config = config
        self.meta: dict[str, Any] = {}
        self._obs_env = None
        in_x = config.state_dim
        if config.env is not None:
            from diffctl.envs import make

            self._obs_env = make(config.env)
            if self._obs_env.spec.state_dim != config.state_dim:
                raise ValueError(
                    f"state_dim: {config.state_dim} does not match env {config.env!r} "
                    f"(state_dim {self._obs_env.spec.state_dim})"
                )
            in_x = self._obs_env.spec.obs_dim
        self.input_dim = in_x
        a_dim = (config.act_dim or config.num_actions) if config.use_action else 0
        in_dim = in_x * (2 if config.use_next_state else 1) + a_dim
        if config.kind == "linear":
            self.net: nn.Module = nn.Linear(in_dim, 1, bias=False)
            nn.init.zeros_(self.net.weight)
        elif config.kind == "mlp":
            self.net = mlp(in_dim, config.hidden, 1, config.activation)
        else:
            self.net = nn.Identity()
            self.goal = nn.Parameter(torch.zeros(in_x))
            self.log_q = nn.Parameter(torch.zeros(in_x))
            self.log_p = nn.Parameter(torch.zeros(max(a_dim, 0)))

    # ------------------------------------------------------------------ evaluation
    def _phi(self, x: Tensor) -> Tensor:
        if self._obs_env is not None:
            return self._obs_env._observe(x)
        if self.config.angle_dims:
            dims = list(self.config.angle_dims)
            x = x.clone()
            x[..., dims] = angle_normalize(x[..., dims])
        return x

    def _check(self, x: Tensor, name: str, dim: int) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
        if x.dim() == 0 or x.shape[-1] != dim:
            raise ValueError(f"{name}: expected shape [..., {dim}], got {tuple(x.shape)}")

    def forward(self, x: Tensor, u: Tensor | None = None, x_next: Tensor | None = None) -> Tensor:
        """Reward ``[...]`` of the transitions ``(x, u, x_next)``."""
        cfg = self.config
        self._check(x, "x", cfg.state_dim)
        p = next(self.parameters())
        parts = [self._phi(x.to(p.dtype))]
        if cfg.use_next_state:
            if x_next is None:
                raise ValueError("x_next: this reward depends on the next state; got None")
            self._check(x_next, "x_next", cfg.state_dim)
            parts.append(self._phi(x_next.to(p.dtype)))
        if cfg.use_action:
            if u is None:
                raise ValueError("u: this reward depends on the action; got None")
            if cfg.num_actions:
                if u.dtype not in (torch.int64, torch.int32) or u.shape != x.shape[:-1]:
                    raise ValueError(
                        f"u: expected int64 action indices of shape "
                        f"{tuple(x.shape[:-1])}, got {u.dtype} {tuple(u.shape)}"
                    )
                parts.append(nn.functional.one_hot(u.long(), cfg.num_actions).to(p.dtype))
            else:
                self._check(u, "u", cfg.act_dim)
                parts.append(u.to(p.dtype))
        if cfg.kind == "quadratic":
            phi = parts[0]
            r = -0.5 * (self.log_q.exp() * (phi - self.goal) ** 2).sum(-1)
            if cfg.use_action:
                r = r - 0.5 * (self.log_p.exp() * parts[-1] ** 2).sum(-1)
            return r
        return self.net(torch.cat(parts, -1)).squeeze(-1)

    def cost(self, x: Tensor, u: Tensor | None = None, x_next: Tensor | None = None) -> Tensor:
        """``-reward``, for planners that minimise a cost."""
        return -self.forward(x, u, x_next)

    def stage_cost(self, dynamics: Any = None) -> Any:
        """A planner cost ``cost(x, u) -> [N]``: ``-r(x, u, dynamics(x, u))`` (``dynamics`` is
        needed only when the reward reads the next state)."""
        if self.config.use_next_state and dynamics is None:
            raise ValueError("dynamics: this reward reads x_next; pass the dynamics f(x, u)")

        def cost(x: Tensor, u: Tensor) -> Tensor:
            x_next = dynamics(x, u) if self.config.use_next_state else None
            return -self.forward(x, u if self.config.use_action else None, x_next)

        return cost

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> None:
        """Write config, weights and ``meta`` to ``path`` atomically (temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": _FORMAT,
            "config": asdict(self.config),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            "meta": dict(meta or {}),
        }
        payload["checksum"] = content_digest(payload)  # checked by load_reward
        atomic_write(path, lambda f: torch.save(payload, f))


def load_reward(
    path: str | os.PathLike, *, device: str | torch.device | None = None
) -> RewardModel:
    """Load a ``RewardModel`` saved by ``RewardModel.save`` (or the ``diffctl irl`` command).

    The file's format tag, config fields, weight shapes and checksum are validated;
    ``model.meta`` holds the saved metadata (method, env, ...).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no reward file at {str(path)!r}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"path: {str(path)!r} is not a readable reward file ({e})") from e
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ValueError(f"path: {str(path)!r} is not a diffctl reward file (format tag missing)")
    for key in ("config", "state_dict", "meta"):
        if key not in payload:
            raise ValueError(f"path: reward file {str(path)!r} lacks the key {key!r}")
    cfg = dict(payload["config"])
    for key in ("hidden", "angle_dims"):
        if key in cfg and isinstance(cfg[key], Sequence):
            cfg[key] = tuple(cfg[key])
    try:
        config = RewardConfig(**cfg)
    except TypeError as e:
        raise ValueError(f"path: reward file {str(path)!r} has an invalid config ({e})") from e
    model = RewardModel(config)
    want = model.state_dict()
    got = payload["state_dict"]
    if set(want) != set(got):
        raise ValueError(
            f"path: reward file {str(path)!r} has weights {sorted(got)}, expected {sorted(want)}"
        )
    for k, v in want.items():
        if tuple(got[k].shape) != tuple(v.shape):
            raise ValueError(
                f"path: weight {k!r} has shape {tuple(got[k].shape)}, expected {tuple(v.shape)}"
            )
    if "checksum" in payload:  # files from before the checksum have none
        content = {k: v for k, v in payload.items() if k != "checksum"}
        if content_digest(content) != payload["checksum"]:
            raise ValueError(
                f"path: reward file {str(path)!r} fails its checksum: its content does not "
                "match the checksum saved with it (corrupt file)"
            )
    model.load_state_dict(got)
    model.meta = dict(payload["meta"])
    if device is not None:
        model.to(device)
    return model
