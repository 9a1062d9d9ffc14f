"""System identification: recover a pendulum's mass and length from noisy logs.

The "robot" is our pendulum with parameters we pretend not to know (m = 1.3, l = 0.8). We log
10 trajectories of random torques with a little measurement noise, then fit a ``GreyBoxModel``
(the differentiable simulator with m and l as learnable, positive parameters) by gradient
descent through 10-step rollouts.

    python examples/system_identification.py           # about a minute on a CPU
    python examples/system_identification.py --quick   # the CI smoke test
"""

from __future__ import annotations

import argparse

import torch
from diffctl.envs import VecEnv, make

from diffctl.data import rollout
from diffctl.models import FitConfig, GreyBoxModel, fit


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few epochs only (smoke test)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)

    true = {"m": 1.3, "l": 0.8}
    robot = make("pendulum").replace(**true)
    venv = VecEnv(robot, num_envs=10, seed=0)
    g = torch.Generator().manual_seed(0)
    logs = rollout(venv, lambda obs: 4 * torch.rand(obs.shape[0], 1, generator=g) - 2, 200)
    # measurement noise, 0.2% of each state component's spread, on the measured sequence
    # (so next_states[t] stays states[t + 1], as in real logs)
    seq = torch.cat([logs.states, logs.next_states[-1:]])
    seq = seq + 0.002 * seq.flatten(0, 1).std(0) * torch.randn(seq.shape, generator=g)
    logs = logs.replace(states=seq[:-1], next_states=seq[1:])

    model = GreyBoxModel(make("pendulum"), ["m", "l"])  # starts from the defaults m = l = 1
    config = FitConfig(
        epochs=10 if args.quick else 200, lr=0.01, batch_size=2048, train_horizon=10,
        patience=0, progress=not args.quick,
    )  # fmt: skip
    result = fit(model, logs, config)
    estimates = {k: v.item() for k, v in model.estimates().items()}
    for k, v in estimates.items():
        print(f"{k}: estimated {v:.4f}, true {true[k]:.4f} ({100 * (v / true[k] - 1):+.2f}%)")
    print(
        f"{config.eval_horizon}-step open-loop normalised error: "
        f"{result.metrics['k_step_nrmse']:.4f}"
    )
    return estimates


if __name__ == "__main__":
    main()
