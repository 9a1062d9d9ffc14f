"""Gradient-based shooting: optimise an open-loop action sequence through the rollout.

``Shooting`` minimises ``J(u_0..u_{T-1}) = sum_t cost(x_t, u_t) + terminal(x_T)`` (or
``-sum_t r(x_t, u_t, x_{t+1})``) over the actions by backpropagating through the dynamics,
with Adam (Kingma & Ba 2015), plain gradient descent or L-BFGS (Nocedal 1980). Control bounds
are kept by projection (``clamp``) or by a ``tanh`` reparametrisation.

With ``unrolled=True`` the optimiser's iterations are themselves recorded by autograd
(``create_graph=True``), so the returned plan is differentiable w.r.t. the start state and any
parameter captured by the dynamics or the cost: backpropagation through an optimiser, the
loop ``x = x - grad(f, x)`` of the lecture notes.

``RolloutObjective`` (dynamics + cost or reward) is shared with the sampling planners.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from diffctl.configs.control import ShootingConfig

from .base import PlanResult, timed
from .cost import Cost, as_cost

__all__ = ["RolloutObjective", "ShootingConfig", "Shooting", "action_bounds"]


def _check_x0(x0: Any, nx: int | None = None, device: torch.device | None = None) -> Tensor:
    """Validate start states; ``[nx]`` becomes a batch of one. ``nx``: expected state size;
    ``device``: the dynamics' device, when it has one."""
    if not isinstance(x0, Tensor):
        raise TypeError(f"x0: expected a torch.Tensor, got {type(x0).__name__}")
    if not x0.is_floating_point():
        raise TypeError(f"x0: expected a floating dtype, got {x0.dtype}")
    if x0.dim() == 1:
        x0 = x0.unsqueeze(0)
    if x0.dim() != 2:
        raise ValueError(f"x0: expected shape [B, nx] or [nx], got {list(x0.shape)}")
    if nx is not None and x0.shape[-1] != nx:
        raise ValueError(
            f"x0: expected shape [B, {nx}] (the dynamics' state), got {list(x0.shape)}"
        )
    if device is not None and x0.device != device:
        raise ValueError(f"x0: tensor is on {x0.device}, the dynamics is on {device}")
    if not torch.isfinite(x0.detach()).all():
        raise ValueError("x0: contains NaN or inf")
    return x0


def _initial_actions(
    warm_start: Any,
    T: int,
    B: int,
    nu: int,
    lo: Tensor | None,
    hi: Tensor | None,
    device: torch.device,
    dtype: torch.dtype,
) -> Tensor:
    """The first guess ``[T, B, nu]``: the validated ``warm_start`` (detached), or the middle of
    the bounds (zeros when unbounded)."""
    if warm_start is None:
        u = torch.zeros(T, B, nu, device=device, dtype=dtype)
        return u if lo is None else u + 0.5 * (lo + hi)
    if not isinstance(warm_start, Tensor) or tuple(warm_start.shape) != (T, B, nu):
        raise ValueError(
            f"warm_start: expected shape {[T, B, nu]}, got "
            f"{list(getattr(warm_start, 'shape', [])) or type(warm_start).__name__}"
        )
    if not torch.isfinite(warm_start.detach()).all():
        raise ValueError("warm_start: contains NaN or inf")
    return warm_start.detach().to(dtype)


def action_bounds(
    action_low: Tensor | float | tuple[float, ...] | None,
    action_high: Tensor | float | tuple[float, ...] | None,
    nu: int | None,
    dynamics: Any = None,
) -> tuple[Tensor | None, Tensor | None]:
    """Validate a control box; returns ``(low, high)`` tensors ``[nu]`` or ``(None, None)``.

    Without bounds, an ``Env`` given as ``dynamics`` lends its ``spec`` action bounds.
    """
    spec = getattr(dynamics, "spec", None)
    if action_low is None and action_high is None and getattr(spec, "act_dim", 0) > 0:
        action_low, action_high = spec.action_low, spec.action_high
    if action_low is None and action_high is None:
        return None, None
    if action_low is None or action_high is None:
        raise ValueError("action_low/action_high: give both bounds or neither")
    lo = torch.as_tensor(action_low, dtype=torch.float64)
    hi = torch.as_tensor(action_high, dtype=torch.float64)
    if (lo.dim() == 0 or hi.dim() == 0) and nu is None:
        raise ValueError("nu: scalar action bounds need nu (the number of controls)")
    lo = lo.expand(nu) if lo.dim() == 0 else lo
    hi = hi.expand(nu) if hi.dim() == 0 else hi
    if lo.dim() != 1 or hi.shape != lo.shape:
        raise ValueError(
            f"action_low/action_high: expected two [nu] vectors, got {list(lo.shape)} and "
            f"{list(hi.shape)}"
        )
    if nu is not None and lo.shape[0] != nu:
        raise ValueError(f"action_low: expected {nu} entries (nu), got {lo.shape[0]}")
    if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        raise ValueError("action_low/action_high: contain NaN or inf (use None for no bound)")
    if (lo > hi).any():
        raise ValueError("action_low: must be <= action_high componentwise")
    return lo, hi


class RolloutObjective:
    """Cost of action sequences under a dynamics model.

    Args:
        dynamics: ``f(x [N, nx], u [N, nu]) -> [N, nx]`` (an ``Env``, a learned model, any
            callable with independent rows); with ``member`` given to ``rollout``, it is called
            as ``f(x, u, member)`` where ``member [N]`` (int64) picks each row's ensemble member.
        cost: a ``diffctl.control.cost.Cost`` or a callable ``cost(x [N, nx], u [N, nu]) -> [N]``.
        reward: alternatively ``r(x [N, nx], u [N, nu], x_next [N, nx]) -> [N]``; the cost is
            ``-sum_t r``. Exactly one of ``cost`` and ``reward``.
        terminal_cost: optional ``c_T(x_T [N, nx]) -> [N]`` added to the reward-based cost (a
            ``Cost`` carries its own terminal term).
        terminated: optional ``d(x [N, nx]) -> bool [N]`` (e.g. an env's ``terminated``) with
            ``reward=``: a reward counts only until the first predicted state that ends the
            episode (that step's reward included), as PETS's code treats termination
            functions; the terminal cost only for rollouts that never ended.

    Envs are called through their unchecked ``_dynamics`` / ``_reward`` / ``_terminated`` in
    the hot loop.
    """

    def __init__(
        self,
        dynamics: Callable[..., Tensor],
        cost: Cost | Callable[[Tensor, Tensor], Tensor] | None = None,
        reward: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None,
        terminal_cost: Callable[[Tensor], Tensor] | None = None,
        terminated: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if not callable(dynamics):
            raise TypeError(f"dynamics: expected a callable f(x, u), got {type(dynamics).__name__}")
        if (cost is None) == (reward is None):
            raise ValueError("cost/reward: give exactly one of cost and reward")
        if reward is not None and not callable(reward):
            raise TypeError(f"reward: expected a callable r(x, u, x_next), got {type(reward)}")
        if terminal_cost is not None and not callable(terminal_cost):
            raise TypeError(f"terminal_cost: expected a callable, got {type(terminal_cost)}")
        if terminal_cost is not None and cost is not None:
            raise ValueError("terminal_cost: only with reward=; a Cost has its own terminal term")
        if terminated is not None and not callable(terminated):
            raise TypeError(f"terminated: expected a callable d(x), got {type(terminated)}")
        if terminated is not None and cost is not None:
            raise ValueError("terminated: only with reward=, not with a cost")
        self.dynamics = dynamics
        self._f = getattr(dynamics, "_dynamics", dynamics)
        spec = getattr(dynamics, "spec", None)
        #: state size when the dynamics declares one (an ``Env``'s spec, a learned model's
        #: ``state_dim``), else ``None``
        self.state_dim: int | None = getattr(spec, "state_dim", None)
        if self.state_dim is None and isinstance(getattr(dynamics, "state_dim", None), int):
            self.state_dim = dynamics.state_dim
        device = getattr(dynamics, "device", None)
        if not isinstance(device, torch.device) and isinstance(dynamics, torch.nn.Module):
            device = next(iter([*dynamics.parameters(), *dynamics.buffers()]), None)
            device = None if device is None else device.device
        #: the dynamics' device when it declares one (an ``Env``, a module's weights), else
        #: ``None``
        self.device: torch.device | None = device if isinstance(device, torch.device) else None
        self.cost = None if cost is None else as_cost(cost)
        self.reward = reward
        # an Env's bound ``reward`` -> its unchecked ``_reward``
        owner = getattr(reward, "__self__", None)
        env_reward = getattr(reward, "__name__", "") == "reward" and hasattr(owner, "_reward")
        self._r = owner._reward if env_reward else reward
        self.terminal_cost = terminal_cost
        owner = getattr(terminated, "__self__", None)
        env_done = getattr(terminated, "__name__", "") == "terminated"
        self.terminated = terminated
        self._done = owner._terminated if env_done and hasattr(owner, "_terminated") else terminated

    def rollout(self, x0: Tensor, us: Tensor, member: Tensor | None = None) -> Tensor:
        """States ``[T + 1, N, nx]`` from ``x0 [N, nx]`` under actions ``us [T, N, nu]``."""
        xs = [x0]
        for t in range(us.shape[0]):
            if member is None:
                xs.append(self._f(xs[-1], us[t]))
            else:
                xs.append(self._f(xs[-1], us[t], member))
        return torch.stack(xs)

    def total_cost(self, xs: Tensor, us: Tensor) -> Tensor:
        """Total cost ``[N]`` of states ``[T + 1, N, nx]`` and actions ``[T, N, nu]``."""
        if self.cost is not None:
            return self.cost.total(xs, us)
        T, N, nx = xs[:-1].shape
        r = self._r(
            xs[:-1].reshape(T * N, nx), us.reshape(T * N, us.shape[-1]), xs[1:].reshape(T * N, nx)
        ).reshape(T, N)
        alive_end = None
        if self._done is not None:  # rewards up to and including the first terminal state
            done = self._done(xs[1:].reshape(T * N, nx)).reshape(T, N).to(r.dtype)
            alive = torch.cumprod(1 - done, 0)  # alive after step t
            r = r * torch.cat([torch.ones_like(alive[:1]), alive[:-1]])
            alive_end = alive[-1]
        c = -r.sum(0)
        if self.terminal_cost is not None:
            tc = self.terminal_cost(xs[-1])
            c = c + (tc if alive_end is None else tc * alive_end)
        return c

    def __call__(
        self, x0: Tensor, us: Tensor, member: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(cost [N], states [T + 1, N, nx])`` of actions ``us [T, N, nu]`` from ``x0``."""
        xs = self.rollout(x0, us, member)
        return self.total_cost(xs, us), xs


class Shooting:
    """Gradient shooting planner (implements the ``Planner`` protocol).

    Args:
        dynamics, cost, reward, terminal_cost: see ``RolloutObjective``.
        action_low, action_high: control box ``[nu]`` (floats broadcast), or ``None`` (an
            ``Env`` as ``dynamics`` then lends its action bounds).
        config: ``ShootingConfig``.
        nu: number of controls (needed only when there are no bounds and no warm start).
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
        config: ShootingConfig | None = None,
        nu: int | None = None,
    ) -> None:
        self.config = config or ShootingConfig()
        self.objective = RolloutObjective(dynamics, cost, reward, terminal_cost)
        self.low, self.high = action_bounds(action_low, action_high, nu, dynamics)
        self.nu = nu if nu is not None else (None if self.low is None else self.low.shape[0])
        if self.nu is None:
            raise ValueError("nu: give nu (or action bounds) so the plan's size is known")
        if (
            self.config.optimizer == "lbfgs"
            and self.low is not None
            and (self.config.bounds != "tanh")
        ):
            raise ValueError("bounds: L-BFGS with action bounds needs bounds='tanh'")

    @property
    def horizon(self) -> int:
        return self.config.horizon

    # ------------------------------------------------------------------ parametrisation
    def _to_u(self, z: Tensor, lo: Tensor | None, hi: Tensor | None) -> Tensor:
        if lo is None or self.config.bounds == "clamp":
            return z
        return 0.5 * (hi + lo) + 0.5 * (hi - lo) * torch.tanh(z)

    def _to_z(self, u: Tensor, lo: Tensor | None, hi: Tensor | None) -> Tensor:
        if lo is None:
            return u
        if self.config.bounds == "clamp":
            return torch.minimum(torch.maximum(u, lo), hi)
        half = (0.5 * (hi - lo)).clamp_min(1e-12)
        s = ((u - 0.5 * (hi + lo)) / half).clamp(-1 + 1e-6, 1 - 1e-6)
        return torch.atanh(s)

    def _pgrad_norm(self, z: Tensor, g: Tensor, lo: Tensor | None, hi: Tensor | None) -> Tensor:
        """Infinity norm per example ``[B]`` of the (projected) gradient ``g [T, B, nu]``."""
        if lo is not None and self.config.bounds == "clamp":
            g = z - torch.minimum(torch.maximum(z - g, lo), hi)
        return g.abs().amax(dim=(0, 2))

    # ------------------------------------------------------------------ plan
    @timed
    def plan(self, x0: Tensor, warm_start: Tensor | None = None) -> PlanResult:
        """Optimise actions ``[T, B, nu]`` from start states ``x0 [B, nx]``.

        ``warm_start`` ``[T, B, nu]`` is the initial guess (default: the middle of the box,
        or zeros). Returns a ``PlanResult``; ``converged [B]`` says which examples met ``tol``.
        """
        cfg = self.config
        x0 = _check_x0(x0, self.objective.state_dim, self.objective.device)
        B = x0.shape[0]
        T, nu = cfg.horizon, self.nu
        dev, dt = x0.device, x0.dtype
        lo = None if self.low is None else self.low.to(dev, dt)
        hi = None if self.high is None else self.high.to(dev, dt)
        u_init = _initial_actions(warm_start, T, B, nu, lo, hi, dev, dt)
        z0 = self._to_z(u_init, lo, hi)
        if cfg.optimizer == "lbfgs":
            z, gnorm, iters = self._lbfgs(x0.detach(), z0, lo, hi)
        else:
            z, gnorm, iters = self._first_order(x0 if cfg.unrolled else x0.detach(), z0, lo, hi)
        grad_ctx = torch.enable_grad() if cfg.unrolled else torch.no_grad()
        with grad_ctx:
            u = self._to_u(z, lo, hi)
            cost, xs = self.objective(x0 if cfg.unrolled else x0.detach(), u)
        return PlanResult(
            actions=u,
            states=xs,
            cost=cost,
            converged=gnorm <= cfg.tol,
            iterations=iters,
            info={"grad_norm": gnorm},
        )

    def _loss_grad(
        self, x0: Tensor, z: Tensor, lo: Tensor | None, hi: Tensor | None, create_graph: bool
    ) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            if not z.requires_grad:
                z = z.requires_grad_(True)
            cost, _ = self.objective(x0, self._to_u(z, lo, hi))
            (g,) = torch.autograd.grad(cost.sum(), z, create_graph=create_graph)
        return cost, g

    def _first_order(
        self, x0: Tensor, z: Tensor, lo: Tensor | None, hi: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        cfg = self.config
        B = x0.shape[0]
        project = lo is not None and cfg.bounds == "clamp"
        active = torch.ones(B, dtype=torch.bool, device=x0.device)
        iters = torch.zeros(B, dtype=torch.int64, device=x0.device)
        m = torch.zeros_like(z)
        v = torch.zeros_like(z)
        b1, b2, eps = 0.9, 0.999, 1e-8  # Adam defaults (Kingma & Ba 2015, Alg. 1)
        z = z if cfg.unrolled else z.detach()
        gnorm = torch.full((B,), float("inf"), device=x0.device, dtype=x0.dtype)
        for k in range(1, cfg.iterations + 1):
            zk = z if cfg.unrolled else z.detach()
            _, g = self._loss_grad(x0, zk, lo, hi, create_graph=cfg.unrolled)
            gnorm = self._pgrad_norm(z.detach(), g.detach(), lo, hi)
            active = active & (gnorm > cfg.tol)
            if cfg.optimizer == "adam":
                m = b1 * m + (1 - b1) * g
                v = b2 * v + (1 - b2) * g * g
                mhat, vhat = m / (1 - b1**k), v / (1 - b2**k)
                # sqrt(vhat + eps^2) instead of sqrt(vhat) + eps: smooth at 0 for unrolling
                step = cfg.lr * mhat / torch.sqrt(vhat + eps * eps)
            else:
                step = cfg.lr * g
            step = step * active.to(z.dtype)[None, :, None]
            z = z - step
            if project:
                z = torch.minimum(torch.maximum(z, lo), hi)
            iters = iters + active.to(torch.int64)
            if k % cfg.check_every == 0 and not bool(active.any()):
                break
        _, g = self._loss_grad(x0.detach(), z.detach(), lo, hi, create_graph=False)
        gnorm = self._pgrad_norm(z.detach(), g, lo, hi)
        return z, gnorm, iters

    def _lbfgs(
        self, x0: Tensor, z0: Tensor, lo: Tensor | None, hi: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        cfg = self.config
        z = z0.detach().clone().requires_grad_(True)
        opt = torch.optim.LBFGS(
            [z],
            lr=cfg.lr,
            max_iter=cfg.iterations,
            max_eval=2 * cfg.iterations,
            history_size=cfg.history_size,
            tolerance_grad=cfg.tol,
            tolerance_change=0.0,
            line_search_fn="strong_wolfe",
        )

        def closure() -> Tensor:
            opt.zero_grad()
            with torch.enable_grad():
                cost, _ = self.objective(x0, self._to_u(z, lo, hi))
                loss = cost.sum()
                loss.backward()
            return loss

        opt.step(closure)
        n_iter = opt.state[opt.param_groups[0]["params"][0]].get("n_iter", cfg.iterations)
        _, g = self._loss_grad(x0, z.detach(), lo, hi, create_graph=False)
        gnorm = self._pgrad_norm(z.detach(), g, lo, hi)
        iters = torch.full((x0.shape[0],), int(n_iter), dtype=torch.int64, device=x0.device)
        return z.detach(), gnorm, iters
