"""Imitation through differentiable MPC (Amos et al. 2018, Section 5.2): learn the parameters of
the planning cost (and optionally physical parameters of the dynamics) so that the MPC's first
action matches the expert's, by back-propagating the imitation loss through the MPC solver
(implicit differentiation at its fixed point, ``diffctl.control.MPC``)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from diffctl.configs.irl import MPCImitationConfig
from diffctl.control import MPC, FunctionCost, MPCConfig, MPCPolicy
from diffctl.data import Trajectory

from .demos import check_demos
from .reward import RewardConfig, RewardModel

__all__ = ["MPCImitationConfig", "MPCImitationResult", "mpc_imitation", "imitation_mpc"]


@dataclass
class MPCImitationResult:
    """Learned cost (as a quadratic ``RewardModel``, cost = -reward), the env with the learned
    dynamics parameters, the learned parameters, and history (iteration, loss)."""

    reward: RewardModel
    env: Any
    params: dict[str, Tensor]
    history: list[dict[str, Any]] = field(default_factory=list)

    def policy(self, horizon: int | None = None, mpc_iters: int = 20) -> MPCPolicy:
        """A receding-horizon ``MPCPolicy`` that plans with the learned cost and dynamics."""
        return imitation_mpc(self.env, self.reward, horizon or 10, mpc_iters)


def imitation_mpc(env: Any, reward: RewardModel, horizon: int, mpc_iters: int) -> MPCPolicy:
    """``MPCPolicy`` minimising ``-reward(x, u)`` under ``env``'s dynamics."""
    mpc = MPC(
        env,
        FunctionCost(lambda x, u: -reward(x, u)),
        MPCConfig(horizon=horizon, max_iter=mpc_iters),
    )
    return MPCPolicy(mpc)


def mpc_imitation(
    env: Any,
    demos: Trajectory,
    config: MPCImitationConfig = MPCImitationConfig(),
    reward_model: RewardModel | None = None,
    *,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> MPCImitationResult:
    """Fit the cost (and ``config.learn_dynamics`` parameters) of an MPC to expert actions.

    Loss: ``mean_i ||u_MPC(x_i; theta)[0] - u_i||^2`` over demo states ``x_i`` (``demos.states``)
    and expert actions ``u_i``. Default cost: quadratic in the state (or observation) and the
    action with learnable goal and diagonal weights (``RewardConfig(kind="quadratic")``).
    """
    spec = env.spec
    check_demos(demos, spec)
    if spec.discrete:
        raise ValueError("env: MPC imitation needs continuous actions")
    if demos.states is None:
        raise ValueError("demos: MPC imitation needs the true states (Trajectory.states)")
    dtype = env.dtype
    X = demos.states.reshape(-1, spec.state_dim).to(dtype)
    U = demos.actions.reshape(-1, spec.act_dim).to(dtype)
    if reward_model is None:
        reward_model = RewardModel(
            RewardConfig(
                state_dim=spec.state_dim,
                act_dim=spec.act_dim,
                use_action=True,
                kind="quadratic",
                env=spec.name if config.use_observation else None,
                angle_dims=config.angle_dims,
            )
        )
        reward_model.to(dtype=dtype, device=env.device)
        with torch.no_grad():
            reward_model.log_p.fill_(math.log(config.action_weight_init))
    params: dict[str, Tensor] = {}
    for name in config.learn_dynamics:
        if name not in env.params:
            raise ValueError(
                f"learn_dynamics: {name!r} is not a parameter of {spec.name!r}; "
                f"known: {sorted(env.params)}"
            )
        params[name] = env.params[name].detach().clone().requires_grad_(True)
    theta = [*reward_model.parameters(), *params.values()]
    lbfgs = config.optimizer == "lbfgs"
    if lbfgs:
        opt: torch.optim.Optimizer = torch.optim.LBFGS(
            theta, lr=config.lr, max_iter=config.lbfgs_evals, line_search_fn="strong_wolfe"
        )
    else:
        opt = torch.optim.Adam(theta, lr=config.lr)
    g = torch.Generator(device=X.device).manual_seed(config.seed)
    n = X.shape[0]
    bs = n if (config.batch_size == 0 or lbfgs) else min(config.batch_size, n)
    mpc_cfg = MPCConfig(horizon=config.horizon, max_iter=config.mpc_iters)
    cost = FunctionCost(lambda x, u: -reward_model(x, u))

    def imitation_loss(idx: Tensor) -> Tensor:
        env_t = env.replace(**params) if params else env
        plan = MPC(env_t, cost, mpc_cfg).plan(X[idx])
        return ((plan.actions[0] - U[idx]) ** 2).sum(-1).mean()

    history: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for it in range(config.iterations):
        idx = (
            torch.randperm(n, generator=g, device=X.device)[:bs]
            if bs < n
            else torch.arange(n, device=X.device)
        )

        def closure(idx: Tensor = idx) -> Tensor:
            opt.zero_grad()
            loss = imitation_loss(idx)
            loss.backward()
            return loss

        loss = opt.step(closure)
        if not torch.isfinite(loss):  # one sync per iteration, needed to stop on divergence
            raise FloatingPointError(
                f"mpc_imitation: the loss became {float(loss)} at iteration {it + 1}; lower lr"
            )
        rec = {"iteration": it + 1, "loss": float(loss.detach()), "time": time.perf_counter() - t0}
        rec.update({f"param_{k}": v.detach().tolist() for k, v in params.items()})
        history.append(rec)
        if callback is not None:  # once per iteration (progress)
            callback(rec)
    final = imitation_loss(torch.arange(n, device=X.device)).detach()
    history.append(
        {
            "iteration": config.iterations,
            "final": True,
            "loss": float(final),
            "time": time.perf_counter() - t0,
        }
    )
    final_params = {k: v.detach() for k, v in params.items()}
    env_out = env.replace(**final_params) if final_params else env
    return MPCImitationResult(
        reward=reward_model, env=env_out, params=final_params, history=history
    )
