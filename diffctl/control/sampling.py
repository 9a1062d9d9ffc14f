"""Sampling-based planners: CEM (as in PETS) and MPPI, batched over start states.

Both search open-loop action sequences by rolling out ``K`` sampled sequences per start state
through any dynamics callable in one batched call per time step (rows ``B * K * P``, ``P``
particles), and both implement the ``Planner`` protocol so ``MPCPolicy`` drives them in
receding horizon (warm start = the previous plan shifted by one step).

- ``CEM``: the cross-entropy method with the settings of PETS (Chua et al. 2018, "Deep RL in
  a Handful of Trials using Probabilistic Dynamics Models", App. A; its public code): population
  500, 50 elites, 5 iterations, smoothing ``alpha = 0.1``, initial variance ``(high-low)^2/16``,
  truncated-normal samples kept within two standard deviations and inside the bounds.
- ``MPPI``: model predictive path integral control (Williams et al. 2017, "Information
  Theoretic MPC for Model-Based Reinforcement Learning", Alg. 2): perturb the nominal sequence
  with Gaussian noise, weight each sample by ``exp(-S_k / lambda)`` (``S_k`` its cost plus the
  control-noise term ``lambda * u' Sigma^-1 eps``) and move the nominal sequence by the
  weighted noise.

Ensembles (trajectory sampling, PETS TS-infinity): with ``ensemble_size = E > 0`` the dynamics
is called as ``f(x [N, nx], u [N, nu], member [N])`` where ``member`` (int64 in ``[0, E)``)
assigns each particle one ensemble member for the whole horizon; each sampled sequence is
rolled out with ``particles`` particles and scored by their mean cost. With
``ensemble_size = 0`` the dynamics is called as ``f(x, u)`` (particles > 1 then only helps a
dynamics that samples internally).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .base import PlanResult
from .cost import Cost
from .shooting import RolloutObjective, _check_x0, _initial_actions, action_bounds

__all__ = ["CEMConfig", "CEM", "MPPIConfig", "MPPI"]


def _check_int(cfg: Any, name: str, minimum: int = 1) -> None:
    v = getattr(cfg, name)
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {v!r}")


@dataclass(frozen=True)
class CEMConfig:
    """Settings of ``CEM`` (defaults: PETS, Chua et al. 2018).

    Attributes:
        horizon: planning horizon ``T`` (PETS: 25 on cart-pole, 30 on half-cheetah).
        num_samples: population size per start state (PETS: 500).
        num_elites: elites refitting the distribution (PETS: 50).
        iterations: CEM iterations per plan (PETS: 5).
        alpha: smoothing of mean and variance, ``new = alpha * old + (1 - alpha) * elite``
            (PETS: 0.1).
        epsilon: an example has converged once its largest variance is below this (PETS: 1e-3);
            converged examples stop updating.
        init_std: initial standard deviation as a fraction of ``high - low`` (PETS: 1/4); used
            as absolute std when the planner has no bounds.
        bound_mode: ``"truncate"`` (PETS: shrink the variance so that two standard deviations
            stay inside the box; the distribution then cannot leave a bound its mean sits on) or
            ``"clip"`` (sample with the full variance and clip to the box, which suits
            bang-bang solutions such as the pendulum swing-up).
        particles: rollouts per sampled sequence, scored by their mean cost (PETS used 20 with
            an ensemble of 5; 1 suits deterministic dynamics).
        ensemble_size: 0, or ``E``: call ``dynamics(x, u, member)`` (see module docstring).
        seed: seed of the planner's generator when none is given.
    """

    horizon: int = 25
    num_samples: int = 500
    num_elites: int = 50
    iterations: int = 5
    alpha: float = 0.1
    epsilon: float = 1e-3
    init_std: float = 0.25
    bound_mode: str = "truncate"
    particles: int = 1
    ensemble_size: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.bound_mode not in ("truncate", "clip"):
            raise ValueError(f"bound_mode: expected 'truncate' or 'clip', got {self.bound_mode!r}")
        for name in ("horizon", "num_samples", "num_elites", "iterations", "particles"):
            _check_int(self, name)
        _check_int(self, "ensemble_size", 0)
        _check_int(self, "seed", 0)
        if self.num_elites > self.num_samples:
            raise ValueError(
                f"num_elites: must be <= num_samples ({self.num_samples}), got {self.num_elites}"
            )
        if not 0 <= self.alpha < 1:
            raise ValueError(f"alpha: expected a float in [0, 1), got {self.alpha!r}")
        if not self.epsilon >= 0:
            raise ValueError(f"epsilon: expected a float >= 0, got {self.epsilon!r}")
        if not self.init_std > 0:
            raise ValueError(f"init_std: expected a positive float, got {self.init_std!r}")


@dataclass(frozen=True)
class MPPIConfig:
    """Settings of ``MPPI`` (Williams et al. 2017, Alg. 2).

    The paper fixes the algorithm, not these numbers: the defaults are a common starting
    point, and ``temperature`` must suit the cost's scale (the pendulum swing-up test uses
    100 samples, horizon 20, ``temperature = 0.1``, ``noise_std = 0.5``).

    Attributes:
        horizon: planning horizon ``T``.
        num_samples: sampled sequences ``K`` per start state.
        temperature: ``lambda`` of the path-integral weights ``exp(-S / lambda)``.
        noise_std: standard deviation of the exploration noise, as a fraction of ``high - low``
            (absolute when there are no bounds).
        iterations: updates of the nominal sequence per plan (the paper: 1 per control step).
        control_cost: add the paper's ``lambda * u' Sigma^-1 eps`` term to each sample's cost.
        particles, ensemble_size, seed: as in ``CEMConfig``.
    """

    horizon: int = 30
    num_samples: int = 1000
    temperature: float = 1.0
    noise_std: float = 0.25
    iterations: int = 1
    control_cost: bool = True
    particles: int = 1
    ensemble_size: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("horizon", "num_samples", "iterations", "particles"):
            _check_int(self, name)
        _check_int(self, "ensemble_size", 0)
        _check_int(self, "seed", 0)
        if not self.temperature > 0:
            raise ValueError(f"temperature: expected a positive float, got {self.temperature!r}")
        if not self.noise_std > 0:
            raise ValueError(f"noise_std: expected a positive float, got {self.noise_std!r}")


class _SamplingPlanner:
    """Shared plumbing: objective, bounds, generator, batched scoring of sampled sequences."""

    config: Any

    def __init__(
        self,
        dynamics: Callable[..., Tensor],
        cost: Cost | Callable[[Tensor, Tensor], Tensor] | None,
        reward: Callable[[Tensor, Tensor, Tensor], Tensor] | None,
        terminal_cost: Callable[[Tensor], Tensor] | None,
        action_low: Tensor | float | tuple[float, ...] | None,
        action_high: Tensor | float | tuple[float, ...] | None,
        nu: int | None,
        generator: torch.Generator | None,
    ) -> None:
        self.objective = RolloutObjective(dynamics, cost, reward, terminal_cost)
        self.low, self.high = action_bounds(action_low, action_high, nu, dynamics)
        self.nu = nu if nu is not None else (None if self.low is None else self.low.shape[0])
        if self.nu is None:
            raise ValueError("nu: give nu (or action bounds) so the plan's size is known")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator: expected a torch.Generator, got {type(generator)}")
        self.generator = generator

    @property
    def horizon(self) -> int:
        return self.config.horizon

    def _setup(
        self, x0: Tensor, warm_start: Tensor | None
    ) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor, torch.Generator]:
        x0 = _check_x0(x0, self.objective.state_dim).detach()
        B, T, nu = x0.shape[0], self.horizon, self.nu
        dev, dt = x0.device, x0.dtype
        if self.generator is None or self.generator.device.type != dev.type:
            self.generator = torch.Generator(dev).manual_seed(self.config.seed)
        lo = None if self.low is None else self.low.to(dev, dt)
        hi = None if self.high is None else self.high.to(dev, dt)
        mean = _initial_actions(warm_start, T, B, nu, lo, hi, dev, dt).transpose(0, 1).contiguous()
        if lo is not None:  # a warm start may lie outside the bounds
            mean = torch.minimum(torch.maximum(mean, lo), hi)
        return x0, lo, hi, mean, self.generator

    def _score(self, x0: Tensor, seqs: Tensor, gen: torch.Generator) -> Tensor:
        """Mean cost over particles ``[B, K]`` of action sequences ``seqs [B, K, T, nu]``."""
        cfg = self.config
        B, K, T, nu = seqs.shape
        P = cfg.particles
        N = B * K * P
        xs0 = x0[:, None, None, :].expand(B, K, P, x0.shape[-1]).reshape(N, -1)
        us = seqs[:, :, None].expand(B, K, P, T, nu).reshape(N, T, nu).transpose(0, 1)
        member = None
        if cfg.ensemble_size > 0:  # TS-infinity: one member per particle for the whole horizon
            member = torch.randint(cfg.ensemble_size, (N,), generator=gen, device=x0.device)
        cost, _ = self.objective(xs0, us, member)
        cost = torch.nan_to_num(cost, nan=float("inf"))  # a diverging model never wins
        return cost.reshape(B, K, P).mean(-1)

    def _result(
        self,
        x0: Tensor,
        mean: Tensor,
        converged: Tensor,
        iters: Tensor,
        gen: torch.Generator,
        info: dict[str, Any],
    ) -> PlanResult:
        """Roll out the plan ``mean [B, T, nu]`` (first particle's states, mean cost)."""
        cfg = self.config
        B = x0.shape[0]
        actions = mean.transpose(0, 1).contiguous()
        cost = self._score(x0, mean[:, None], gen)[:, 0]
        member = None
        if cfg.ensemble_size > 0:
            member = torch.zeros(B, dtype=torch.int64, device=x0.device)
        states = self.objective.rollout(x0, actions, member)
        return PlanResult(
            actions=actions,
            states=states,
            cost=cost,
            converged=converged & torch.isfinite(cost),
            iterations=iters,
            info=info,
        )


def _truncated_normal(shape: tuple[int, ...], gen: torch.Generator, like: Tensor) -> Tensor:
    """Standard normal samples truncated to [-2, 2] by inverse-CDF sampling."""
    a = 0.5 * (1 + torch.erf(torch.tensor(-2.0 / 2**0.5, dtype=like.dtype)))
    u = torch.rand(shape, generator=gen, device=like.device, dtype=like.dtype)
    return torch.special.ndtri(a + (1 - 2 * a) * u)


class CEM(_SamplingPlanner):
    """Cross-entropy method planner (PETS variant; see module docstring).

    Args:
        dynamics: ``f(x [N, nx], u [N, nu]) -> [N, nx]`` (or ``f(x, u, member)`` with an
            ensemble), e.g. an ``Env`` or a learned model.
        cost: a ``Cost`` or ``cost(x, u) -> [N]``; or ``reward=r(x, u, x_next) -> [N]`` with an
            optional ``terminal_cost(x) -> [N]`` (exactly one of cost and reward).
        action_low, action_high: control box (``[nu]``; floats broadcast with ``nu``); default:
            the action bounds of an ``Env`` given as ``dynamics``.
        config: ``CEMConfig``.
        nu: number of controls (needed when there are no bounds).
        generator: random generator (default: one seeded with ``config.seed`` on x0's device).
    """

    def __init__(
        self,
        dynamics: Callable[..., Tensor],
        cost: Cost | Callable[[Tensor, Tensor], Tensor] | None = None,
        *,
        reward: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None,
        terminal_cost: Callable[[Tensor], Tensor] | None = None,
        action_low: Tensor | float | tuple[float, ...] | None = None,
        action_high: Tensor | float | tuple[float, ...] | None = None,
        config: CEMConfig | None = None,
        nu: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        self.config = config or CEMConfig()
        super().__init__(
            dynamics, cost, reward, terminal_cost, action_low, action_high, nu, generator
        )

    @torch.no_grad()
    def plan(self, x0: Tensor, warm_start: Tensor | None = None) -> PlanResult:
        """Plan actions ``[T, B, nu]`` for start states ``x0 [B, nx]``."""
        cfg = self.config
        x0, lo, hi, mean, gen = self._setup(x0, warm_start)
        B, T, nu = mean.shape
        K, E = cfg.num_samples, cfg.num_elites
        if lo is not None:
            var = ((cfg.init_std * (hi - lo)) ** 2).expand(B, T, nu).clone()
        else:
            var = torch.full_like(mean, cfg.init_std**2)
        iters = torch.zeros(B, dtype=torch.int64, device=x0.device)
        for _ in range(cfg.iterations):
            active = var.amax(dim=(1, 2)) > cfg.epsilon
            if lo is not None and cfg.bound_mode == "truncate":  # +-2 std inside the box (PETS)
                var_c = torch.minimum(
                    torch.minimum(((mean - lo) / 2) ** 2, ((hi - mean) / 2) ** 2), var
                )
            else:
                var_c = var
            noise = _truncated_normal((B, K, T, nu), gen, mean)
            samples = mean[:, None] + var_c.sqrt()[:, None] * noise
            if lo is not None:  # "clip" mode, and round-off at the bounds
                samples = torch.minimum(torch.maximum(samples, lo), hi)
            costs = self._score(x0, samples, gen)
            idx = costs.topk(E, dim=1, largest=False).indices  # [B, E]
            elites = samples.gather(1, idx[:, :, None, None].expand(B, E, T, nu))
            new_mean = cfg.alpha * mean + (1 - cfg.alpha) * elites.mean(1)
            new_var = cfg.alpha * var + (1 - cfg.alpha) * elites.var(1, unbiased=False)
            keep = active[:, None, None]
            mean = torch.where(keep, new_mean, mean)
            var = torch.where(keep, new_var, var)
            iters = iters + active.to(torch.int64)
        converged = var.amax(dim=(1, 2)) <= cfg.epsilon
        return self._result(
            x0, mean, converged, iters, gen, {"std_max": var.amax(dim=(1, 2)).sqrt()}
        )


class MPPI(_SamplingPlanner):
    """Model predictive path integral planner (Williams et al. 2017; see module docstring).

    Arguments as for ``CEM``, with an ``MPPIConfig``. ``converged`` is true wherever the plan's
    cost is finite: MPPI is a fixed-budget update with no convergence test of its own.
    """

    def __init__(
        self,
        dynamics: Callable[..., Tensor],
        cost: Cost | Callable[[Tensor, Tensor], Tensor] | None = None,
        *,
        reward: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None,
        terminal_cost: Callable[[Tensor], Tensor] | None = None,
        action_low: Tensor | float | tuple[float, ...] | None = None,
        action_high: Tensor | float | tuple[float, ...] | None = None,
        config: MPPIConfig | None = None,
        nu: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        self.config = config or MPPIConfig()
        super().__init__(
            dynamics, cost, reward, terminal_cost, action_low, action_high, nu, generator
        )

    @torch.no_grad()
    def plan(self, x0: Tensor, warm_start: Tensor | None = None) -> PlanResult:
        """Plan actions ``[T, B, nu]`` for start states ``x0 [B, nx]``."""
        cfg = self.config
        x0, lo, hi, mean, gen = self._setup(x0, warm_start)
        B, T, nu = mean.shape
        K, lam = cfg.num_samples, cfg.temperature
        std = cfg.noise_std * (hi - lo) if lo is not None else mean.new_full((nu,), cfg.noise_std)
        ess = mean.new_zeros(B)
        for _ in range(cfg.iterations):
            eps = torch.randn(B, K, T, nu, generator=gen, device=x0.device, dtype=x0.dtype) * std
            v = mean[:, None] + eps
            if lo is not None:  # the applied (clamped) perturbation
                v = torch.minimum(torch.maximum(v, lo), hi)
                eps = v - mean[:, None]
            S = self._score(x0, v, gen)  # [B, K]
            if cfg.control_cost:  # lambda * u' Sigma^-1 eps (Williams et al. 2017, Alg. 2)
                S = S + lam * (mean[:, None] * eps / std**2).sum(dim=(2, 3))
            S = S - S.amin(dim=1, keepdim=True)  # beta = min_k S_k, for numerical stability
            w = torch.softmax(-S / lam, dim=1)  # exp(-(S - beta) / lambda) / eta
            ess = 1.0 / (w**2).sum(1)
            mean = mean + (w[:, :, None, None] * eps).sum(1)
            if lo is not None:
                mean = torch.minimum(torch.maximum(mean, lo), hi)
        iters = torch.full((B,), cfg.iterations, dtype=torch.int64, device=x0.device)
        converged = torch.ones(B, dtype=torch.bool, device=x0.device)
        return self._result(x0, mean, converged, iters, gen, {"effective_samples": ess})
