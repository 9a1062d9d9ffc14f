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

Ensembles (trajectory sampling, PETS Sec. 4.2): with ``ensemble_size = E > 0`` every sampled
sequence is rolled out by ``particles`` particles and scored by their mean cost; each particle is
propagated by one member, fixed for the whole horizon (``ts_mode = "tsinf"``) or re-drawn at
every step (``"ts1"``). Members are assigned in balanced blocks: the ``N`` particles are put in
a random order over ``E * M`` slots (``M = ceil(N / E)``, a few duplicated particles fill the
last block) and slot ``s`` belongs to member ``s // M``; TS-inf draws one order per rollout,
TS-1 one per step. The dynamics is called either
- as ``f(x [N, nx], u [N, nu], member [N])`` with ``member`` (int64 in ``[0, E)``) the member
  of each particle (any callable), or
- when it has ``step_members`` and ``num_elites == E`` (``diffctl.models.EnsembleDynamics``):
  as ``f.step_members(x [E, M, nx], u [E, M, nu]) -> [E, M, nx]``, slice ``m`` through member
  ``m`` only, with the particles gathered into their slots and scattered back. Both give the
  same numbers; the second does ``1/E`` of the work of evaluating every member on every row.
  A dynamics that also has ``elite_weights()`` is called as ``f.step_members(x, u, weights=w)``
  with ``w = f.elite_weights()`` taken once per rollout (an ensemble with fewer elites than
  members gathers the elites' weights once, not at every step). With ``matmul_dtype`` (e.g.
  ``"bfloat16"``) it is ``f.elite_weights(dtype)``: the weights cast once per rollout, and the
  members' matrix products run in that dtype (so it needs ``elite_weights``).
A particle moves to its member's mean prediction (``propagation = "mean"``) or, with
``propagation = "sample"`` (PETS's probabilistic propagation, as in its code and mbrl-lib's), to
a sample ``mu + sigma * eps`` of its member's Gaussian, through
``f.step_members(x, u, noise=eps)`` with ``eps [E, M, nx]`` standard normal noise drawn per step
and slot from the planner's generator (so it needs ``step_members``).
With ``ensemble_size = 0`` the dynamics is called as ``f(x, u)`` (particles > 1 then only helps
a dynamics that samples internally).

Every ``PlanResult`` carries ``solve_time`` (seconds of host wall time of ``plan``; on a GPU the
solve ends with one synchronisation so that the number is the real one). With ``compile=True``
the rollout-and-score function (all ``T`` steps of all particles through the dynamics, the
ensemble's gathers and scatters, and the cost: the inner loop of every iteration) runs through
``torch.compile`` with dynamic shapes, so one compilation serves every population size. The
first solve pays the compilation (the unrolled horizon: about a minute for the half-cheetah
preset on a 2-core CPU, less from the inductor's disk cache); compiling one step instead
compiled in seconds but ran no faster than eager there. The eager path is the reference it is
tested against. The random numbers (samples, member assignments, noise) are drawn eagerly from the
planner's generator, so a seed fixes the plan; a solve has no host synchronisation before its
end.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import Tensor

from diffctl.configs.control import TS_MODES, CEMConfig, MPPIConfig

from .base import PlanResult
from .cost import Cost
from .shooting import RolloutObjective, _check_x0, _initial_actions, action_bounds

__all__ = ["CEMConfig", "CEM", "MPPIConfig", "MPPI", "TS_MODES"]


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
        terminated: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        self.objective = RolloutObjective(dynamics, cost, reward, terminal_cost, terminated)
        self.low, self.high = action_bounds(action_low, action_high, nu, dynamics)
        self.nu = nu if nu is not None else (None if self.low is None else self.low.shape[0])
        if self.nu is None:
            raise ValueError("nu: give nu (or action bounds) so the plan's size is known")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator: expected a torch.Generator, got {type(generator)}")
        self.generator = generator
        self._compiled: tuple[Any, Any] | None = None
        if self.config.propagation == "sample" and self._block_step() is None:
            raise ValueError(
                "propagation: 'sample' needs ensemble_size > 0 and a dynamics with "
                "step_members and num_elites == ensemble_size (an EnsembleDynamics)"
            )
        has_weights = callable(getattr(dynamics, "elite_weights", None))
        if self.config.matmul_dtype is not None and (self._block_step() is None or not has_weights):
            raise ValueError(
                "matmul_dtype: needs ensemble_size > 0 and a dynamics with step_members, "
                "elite_weights and num_elites == ensemble_size (an EnsembleDynamics)"
            )

    @property
    def horizon(self) -> int:
        return self.config.horizon

    def _block_step(self) -> Callable[..., Tensor] | None:
        """The dynamics' ``step_members`` when it fits ``ensemble_size`` (module docstring)."""
        E, dynamics = self.config.ensemble_size, self.objective.dynamics
        step = getattr(dynamics, "step_members", None)
        if not (E > 0 and callable(step) and getattr(dynamics, "num_elites", 0) == E):
            return None
        return step

    def _members_step(self) -> Callable[..., Tensor] | None:
        """``_block_step()`` given the dynamics' ``elite_weights()`` when it has them (gathered
        here: call once per rollout)."""
        step = self._block_step()
        elite_weights = getattr(self.objective.dynamics, "elite_weights", None)
        if step is None or not callable(elite_weights):
            return step
        dtype = self.config.matmul_dtype
        if dtype is None:
            return partial(step, weights=elite_weights())
        return partial(step, weights=elite_weights(getattr(torch, dtype)))

    def _setup(
        self, x0: Tensor, warm_start: Tensor | None
    ) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor, torch.Generator]:
        x0 = _check_x0(x0, self.objective.state_dim, self.objective.device).detach()
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

    @staticmethod
    def _empty(x0: Tensor, mean: Tensor) -> PlanResult:
        """The plan of an empty batch (``x0 [0, nx]``, ``mean [0, T, nu]``): empty results."""
        T = mean.shape[1]
        return PlanResult(
            actions=mean.transpose(0, 1),
            states=x0.expand(T + 1, 0, x0.shape[-1]),
            cost=x0.new_zeros(0),
            converged=torch.zeros(0, dtype=torch.bool, device=x0.device),
            iterations=torch.zeros(0, dtype=torch.int64, device=x0.device),
            solve_time=0.0,
        )

    # ------------------------------------------------------------------ particles
    def _assign(self, n: int, T: int, gen: torch.Generator, device: torch.device):
        """Balanced member blocks for ``n`` particles (module docstring).

        Returns ``src [S, E * M]`` (the particle in each slot; slot ``s`` is member ``s // M``)
        and ``dst [S, n]`` (each particle's slot), ``S = 1`` (TS-inf) or ``T`` (TS-1).
        """
        cfg = self.config
        E = cfg.ensemble_size
        M = -(-n // E)
        S = T if cfg.ts_mode == "ts1" else 1
        order = torch.rand(S, E * M, generator=gen, device=device).argsort(dim=-1)
        return order % n, order.argsort(dim=-1)[:, :n]

    def _step(
        self,
        x: Tensor,
        u: Tensor,
        src: Tensor,
        dst: Tensor,
        step: Callable[..., Tensor] | None,
        noise: Tensor | None = None,
    ) -> Tensor:
        """One step ``[N, nx]`` of the particles ``x [N, nx]`` under ``u [N, nu]``, each through
        its member (``src``/``dst``: one row of ``_assign``; ``step``: ``_members_step()``;
        ``noise [E * M, nx]``: the slots' standard normal noise, with ``propagation="sample"``)."""
        E = self.config.ensemble_size
        M = src.shape[-1] // E
        if step is None:
            return self.objective._f(x, u, torch.div(dst, M, rounding_mode="floor"))
        # gather the particles into member blocks, one member per block, and scatter back
        blocks = (x[src].reshape(E, M, x.shape[-1]), u[src].reshape(E, M, u.shape[-1]))
        y = step(*blocks) if noise is None else step(*blocks, noise=noise.reshape(E, M, -1))
        return y.reshape(E * M, x.shape[-1])[dst]

    def _rollout_cost(
        self,
        x0: Tensor,
        us: Tensor,
        src: Tensor | None = None,
        dst: Tensor | None = None,
        noise: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``(cost [N], states [T + 1, N, nx])`` of particles ``x0 [N, nx]`` under ``us [T, N,
        nu]``; with ``src``/``dst`` (``_assign``) through their ensemble members, and with
        ``noise [T, E * M, nx]`` (standard normal, per step and member slot) through samples of
        their Gaussians. Pure (no random numbers, no host synchronisation): what
        ``compile=True`` compiles."""
        if src is None or dst is None:
            return self.objective(x0, us)
        step = self._members_step()
        T = us.shape[0]
        if src.shape[0] == 1 and step is not None:
            # TS-inf through step_members: the particles keep their member blocks for the whole
            # horizon, so gather them into the blocks once and scatter the states back once
            E = self.config.ensemble_size
            xb = x0[src[0]].reshape(E, -1, x0.shape[-1])
            ub = us[:, src[0]].reshape(T, E, -1, us.shape[-1])
            xs = [xb]
            for t in range(T):
                if noise is None:
                    xs.append(step(xs[-1], ub[t]))
                else:
                    xs.append(step(xs[-1], ub[t], noise=noise[t].reshape(xb.shape)))
            states = torch.stack(xs).flatten(1, 2)[:, dst[0]]
        else:
            xs = [x0]
            for t in range(T):
                j = t if src.shape[0] > 1 else 0
                eps = None if noise is None else noise[t]
                xs.append(self._step(xs[-1], us[t], src[j], dst[j], step, eps))
            states = torch.stack(xs)
        return self.objective.total_cost(states, us), states

    def _rollout_fn(self, compiled: bool) -> Callable[..., tuple[Tensor, Tensor]]:
        """``_rollout_cost``, compiled once per planner (not per copy) when asked; dynamic
        shapes, so that one compilation serves every population and batch size."""
        if not (compiled and self.config.compile):
            return self._rollout_cost
        if self._compiled is None or self._compiled[0] is not self:
            self._compiled = (self, torch.compile(self._rollout_cost, dynamic=True))
        return self._compiled[1]

    def _particles(
        self, x0: Tensor, seqs: Tensor, gen: torch.Generator, compiled: bool = True
    ) -> tuple[Tensor, Tensor]:
        """Costs ``[N]`` and states ``[T + 1, N, nx]`` of the ``N = B * K * P`` particles
        (row ``(b, k, p)``) rolling out the action sequences ``seqs [B, K, T, nu]``."""
        B, K, T, nu = seqs.shape
        P = self.config.particles
        N = B * K * P
        xs0 = x0[:, None, None, :].expand(B, K, P, x0.shape[-1]).reshape(N, -1)
        us = seqs[:, :, None].expand(B, K, P, T, nu).reshape(N, T, nu).transpose(0, 1)
        ts: tuple[Tensor, ...] = ()  # trajectory sampling: src, dst (and noise)
        if self.config.ensemble_size > 0:
            ts = self._assign(N, T, gen, x0.device)
            if self.config.propagation == "sample":
                slots = (T, ts[0].shape[-1], x0.shape[-1])
                noise = torch.randn(slots, generator=gen, device=x0.device, dtype=x0.dtype)
                ts = (*ts, noise)
        cost, states = self._rollout_fn(compiled)(xs0, us, *ts)
        return torch.nan_to_num(cost, nan=math.inf), states  # a diverging model never wins

    def _score(
        self, x0: Tensor, seqs: Tensor, gen: torch.Generator, compiled: bool = True
    ) -> Tensor:
        """Mean cost over particles ``[B, K]`` of action sequences ``seqs [B, K, T, nu]``."""
        B, K = seqs.shape[:2]
        cost, _ = self._particles(x0, seqs, gen, compiled)
        return cost.reshape(B, K, self.config.particles).mean(-1)

    def _result(
        self,
        x0: Tensor,
        mean: Tensor,
        converged: Tensor,
        iters: Tensor,
        gen: torch.Generator,
        info: dict[str, Any],
        t0: float,
    ) -> PlanResult:
        """Roll out the plan ``mean [B, T, nu]`` once: the mean cost over its particles and the
        first particle's predicted states."""
        B, T = mean.shape[:2]
        P = self.config.particles
        actions = mean.transpose(0, 1).contiguous()
        cost, states = self._particles(x0, mean[:, None], gen, compiled=False)
        cost = cost.reshape(B, P).mean(-1)
        states = states.reshape(T + 1, B, P, -1)[:, :, 0]
        converged = converged & torch.isfinite(cost)
        if x0.device.type == "cuda":  # the one synchronisation of a solve, for its timing
            torch.cuda.synchronize(x0.device)
        return PlanResult(
            actions=actions,
            states=states,
            cost=cost,
            converged=converged,
            iterations=iters,
            info=info,
            solve_time=time.perf_counter() - t0,
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
            optional ``terminal_cost(x) -> [N]`` (exactly one of cost and reward) and an
            optional ``terminated(x) -> bool [N]``: rewards stop after a predicted state that
            ends the episode (``RolloutObjective``).
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
        terminated: Callable[[Tensor], Tensor] | None = None,
        action_low: Tensor | float | tuple[float, ...] | None = None,
        action_high: Tensor | float | tuple[float, ...] | None = None,
        config: CEMConfig | None = None,
        nu: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        self.config = config or CEMConfig()
        super().__init__(
            dynamics,
            cost,
            reward,
            terminal_cost,
            action_low,
            action_high,
            nu,
            generator,
            terminated,
        )

    @torch.no_grad()
    def plan(self, x0: Tensor, warm_start: Tensor | None = None) -> PlanResult:
        """Plan actions ``[T, B, nu]`` for start states ``x0 [B, nx]``."""
        t0 = time.perf_counter()
        cfg = self.config
        x0, lo, hi, mean, gen = self._setup(x0, warm_start)
        if x0.shape[0] == 0:
            return self._empty(x0, mean)
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
        info = {"std_max": var.amax(dim=(1, 2)).sqrt()}
        return self._result(x0, mean, converged, iters, gen, info, t0)


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
        terminated: Callable[[Tensor], Tensor] | None = None,
        action_low: Tensor | float | tuple[float, ...] | None = None,
        action_high: Tensor | float | tuple[float, ...] | None = None,
        config: MPPIConfig | None = None,
        nu: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        self.config = config or MPPIConfig()
        super().__init__(
            dynamics,
            cost,
            reward,
            terminal_cost,
            action_low,
            action_high,
            nu,
            generator,
            terminated,
        )

    @torch.no_grad()
    def plan(self, x0: Tensor, warm_start: Tensor | None = None) -> PlanResult:
        """Plan actions ``[T, B, nu]`` for start states ``x0 [B, nx]``."""
        t0 = time.perf_counter()
        cfg = self.config
        x0, lo, hi, mean, gen = self._setup(x0, warm_start)
        if x0.shape[0] == 0:
            return self._empty(x0, mean)
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
        return self._result(x0, mean, converged, iters, gen, {"effective_samples": ess}, t0)
