"""Logs -> learned model -> MPC: swing a pendulum up with a model fitted to random data.

1. Collect 10 episodes (2,000 transitions) with uniformly random torques and save them as a
   dataset, as a robot's logs would be.
2. Load the logs and fit a probabilistic ensemble (PETS) to them.
3. Plan with differentiable iLQR MPC on the ensemble's mean prediction, in closed loop on the
   real (true) pendulum, and report the return.

    python examples/fit_and_plan.py           # a few minutes on a CPU
    python examples/fit_and_plan.py --quick   # the CI smoke test
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
from diffctl.envs import VecEnv, make

from diffctl.control import MPC, FunctionCost, MPCConfig, MPCPolicy
from diffctl.data import load_dataset, rollout, save_dataset
from diffctl.models import EnsembleDynamics, FitConfig, fit


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets (smoke test)")
    parser.add_argument("--out", default=None, help="folder for the logs (default: a temp dir)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    env = make("pendulum")

    # 1. logs from a random policy
    g = torch.Generator().manual_seed(0)
    logs = rollout(
        VecEnv(env, 10, seed=0),
        lambda o: 4 * torch.rand(o.shape[0], 1, generator=g) - 2,
        env.spec.max_steps,
    )
    folder = args.out or tempfile.mkdtemp(prefix="diffctl-")
    path = os.path.join(folder, "logs.npz")
    save_dataset(path, logs, {"env": "pendulum"})
    data, meta = load_dataset(path)
    print(f"logged {data.rewards.numel()} transitions to {path}")

    # 2. fit an ensemble (theta is an angle: the model sees cos/sin of it)
    model = EnsembleDynamics(2, 1, angle_dims=(0,))
    fitted = fit(model, data, FitConfig(epochs=5 if args.quick else 100, progress=not args.quick))
    print(f"fitted: 50-step normalised error {fitted.metrics['k_step_nrmse']:.3f}")

    # 3. MPC on the model, acting on the true pendulum
    # The pendulum's reward reads only (x, u) (env.reward_uses_next_state is False), so the
    # stage cost needs no model prediction and its Hessian stays cheap.
    def cost(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return -env._reward(x, u, x)

    mpc = MPC(
        model,
        FunctionCost(cost),
        MPCConfig(horizon=30, max_iter=10, u_lower=-2.0, u_upper=2.0),
        nu=1,
    )
    episodes, steps = (2, 10) if args.quick else (5, env.spec.max_steps)
    venv = VecEnv(env, episodes, seed=1, max_steps=steps)
    venv.reset()
    policy = MPCPolicy(mpc)
    for _ in range(steps):
        policy.step(venv)
    returns = venv.episode_statistics()["last_returns"]
    print(
        f"MPC on the learned model: return {returns.mean():.1f} ± {returns.std():.1f} "
        f"({1000 * policy.solve_time_per_step():.0f} ms per solve)"
    )
    return float(returns.mean())


if __name__ == "__main__":
    main()
