"""How a planner's ranking of action sequences changes with bfloat16 products (``matmul_dtype``).

The model of a ``diffctl mbrl --checkpoint`` run (without one: a random-weight PETS ensemble of
the half-cheetah's size) scores the same random action sequences from states of the run's last
episode twice, with the members' matrix products in float32 and in bfloat16: each sequence's
predicted return under the task's reward, averaged over the elites (each elite rolls it out
once, as ``step_members`` does for the planners). Per start state it prints the rank correlation
of the two scores, and how far below the best float32 return (in standard deviations of the
float32 returns) the return of the sequence bfloat16 ranks first lies.

    python examples/bfloat16_ranking.py --checkpoint hc.ckpt  # the half-cheetah preset's model
"""

from __future__ import annotations

import argparse
import statistics

import torch
from diffctl.envs import make
from torch import Tensor

from diffctl.configs.models import PETS_PRESET
from diffctl.models import EnsembleDynamics
from diffctl.models.mbrl_checkpoint import load_loop_state


def predicted_returns(model: EnsembleDynamics, reward, x0: Tensor, us: Tensor, dtype) -> Tensor:
    """Mean over the elites of the predicted return ``[K]`` of sequences ``us [T, K, nu]`` from
    ``x0 [nx]``, the members' products in ``dtype`` (None: the model's)."""
    E, (K, nu) = model.num_elites, us.shape[1:]
    weights = model.elite_weights(dtype)
    x = x0.expand(E, K, x0.shape[-1])
    total = x0.new_zeros(E, K)
    for u in us:
        u = u.expand(E, K, nu)
        x_next = model.step_members(x, u, weights)
        total = total + reward(x.flatten(0, 1), u.flatten(0, 1), x_next.flatten(0, 1)).view(E, K)
        x = x_next
    return total.mean(0)


def rank_correlation(a: Tensor, b: Tensor) -> float:
    """Spearman's rank correlation of ``a [K]`` and ``b [K]`` (no ties in continuous scores)."""
    ra, rb = (v.argsort().argsort().to(torch.float64) for v in (a, b))
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", help="a diffctl mbrl --checkpoint file (its env and model)")
    p.add_argument("--env", default="mujoco:HalfCheetah-v5", help="without --checkpoint")
    p.add_argument("--samples", type=int, default=400, help="action sequences per start state")
    p.add_argument("--horizon", type=int, default=PETS_PRESET["horizon"])
    p.add_argument("--every", type=int, default=50, help="start states: every n-th of the episode")
    p.add_argument("--quick", action="store_true", help="a tiny smoke-test budget")
    a = p.parse_args()
    if a.quick:
        a.samples, a.horizon, a.every = 40, 5, 400
    torch.manual_seed(0)
    if a.checkpoint:
        state = load_loop_state(a.checkpoint)
        env, model = make(state.env), state.model
        starts = state.episodes[-1].states[:: a.every, 0]
    else:
        env = make(a.env)
        nx, nu = env.spec.state_dim, env.spec.act_dim
        model = EnsembleDynamics(
            nx, nu, num_members=PETS_PRESET["num_members"], hidden=PETS_PRESET["hidden"]
        )
        starts = 0.1 * torch.randn(1000 // a.every, nx)
    model.eval().requires_grad_(False)
    lo, hi = env.spec.action_bounds(starts.device, starts.dtype)
    K, T, nu = a.samples, a.horizon, env.spec.act_dim
    rhos, regrets = [], []
    for x0 in starts:
        # half white uniform sequences, half smooth ones (clipped random walks)
        us = lo + (hi - lo) * torch.rand(T, K, nu, dtype=starts.dtype)
        walk = (0.3 * torch.randn(T, K - K // 2, nu, dtype=starts.dtype)).cumsum(0)
        us[:, K // 2 :] = torch.minimum(torch.maximum(walk, lo), hi)
        with torch.no_grad():
            full = predicted_returns(model, env.reward, x0, us, None)
            low = predicted_returns(model, env.reward, x0, us, torch.bfloat16)
        rhos.append(rank_correlation(full, low))
        regrets.append(float((full.max() - full[low.argmax()]) / full.std()))
    same = sum(r == 0 for r in regrets)
    print(
        f"{len(starts)} start states x {K} sequences x {T} steps: Spearman median "
        f"{statistics.median(rhos):.4f} (min {min(rhos):.4f}); bfloat16's best is float32's best "
        f"from {same}; elsewhere it falls short by {max(regrets):.3f} std at most"
    )


if __name__ == "__main__":
    main()
