"""Solve time per control step of PETS-sized planners (half-cheetah: obs 17, act 6).

A PETS ensemble of the half-cheetah preset's size (``PETS_PRESET``: 5 members of 3 x 200,
predicting standardised state deltas; random weights: only the time matters here) plans with
CEM, iCEM and MPPI over the preset's 25-step horizon with trajectory sampling (TS-inf, the
preset's 5 particles per sequence); the flags change each size. Each solve reports its own time
(``PlanResult.solve_time``); the script prints the median and the best of a few warm-started
control steps, per planner, eager and (``--compile``) compiled, and the process CPU time per
step (with one thread, the time it would take on an idle core of a busy machine).

    python examples/pets_planning_time.py --threads 1            # the preset: 100 x 5, 5 particles
    python examples/pets_planning_time.py --threads 2 --compile  # + torch.compile
    python examples/pets_planning_time.py --samples 400 --elites 40 --particles 1  # one particle
    python examples/pets_planning_time.py --members 7 --model-elites 5  # PETS's 5 elites of 7
    python examples/pets_planning_time.py --propagation sample  # particles sample their Gaussian
    python examples/pets_planning_time.py --matmul-dtype bfloat16  # the products in bfloat16
    python examples/pets_planning_time.py --hidden 200 200 200 200 --horizon 30  # PETS's sizes
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from diffctl.configs.models import PETS_PRESET
from diffctl.control import CEM, ICEM, MPPI, CEMConfig, ICEMConfig, MPCPolicy, MPPIConfig
from diffctl.models import EnsembleDynamics


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    preset = PETS_PRESET  # the defaults: the half-cheetah preset's model and planner
    p.add_argument(
        "--samples", type=int, default=preset["num_samples"], help="population (iCEM: the first)"
    )
    p.add_argument("--elites", type=int, default=preset["num_elites"], help="elites (CEM, iCEM)")
    p.add_argument("--iterations", type=int, default=preset["plan_iterations"])
    p.add_argument("--horizon", type=int, default=preset["horizon"])
    p.add_argument("--members", type=int, default=preset["num_members"])
    p.add_argument("--hidden", type=int, nargs="+", default=list(preset["hidden"]))
    p.add_argument(
        "--model-elites", type=int, default=None, help="elite members (default: all; PETS: 5 of 7)"
    )
    p.add_argument(
        "--particles", type=int, default=preset["particles"], help="rollouts per sequence"
    )
    p.add_argument("--ts-mode", default="tsinf", choices=["tsinf", "ts1"])
    p.add_argument(
        "--propagation",
        default="mean",
        choices=["mean", "sample"],
        help="particles move to their member's mean or to a sample of its Gaussian",
    )
    p.add_argument(
        "--matmul-dtype",
        default=None,
        choices=["bfloat16", "float16"],
        help="the ensemble's matrix products in this dtype (default: float32)",
    )
    p.add_argument("--steps", type=int, default=8, help="timed control steps per planner")
    p.add_argument("--planners", default="cem,icem,mppi")
    p.add_argument("--compile", action="store_true", help="compile the rollout (torch.compile)")
    p.add_argument("--quick", action="store_true", help="a tiny smoke-test budget")
    a = p.parse_args()
    if a.quick:
        a.samples, a.iterations, a.horizon, a.steps = 20, 2, 5, 2
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    nx, nu = 17, 6
    elites = a.model_elites or a.members
    model = EnsembleDynamics(
        nx, nu, num_members=a.members, num_elites=elites, hidden=tuple(a.hidden)
    )
    model.eval().requires_grad_(False)

    def reward(x, u, x_next):  # half-cheetah's: forward velocity minus a control cost
        return x_next[:, 8] - 0.1 * (u * u).sum(-1)

    common = dict(
        horizon=a.horizon,
        num_samples=a.samples,
        iterations=a.iterations,
        particles=a.particles,
        ensemble_size=elites,
        ts_mode=a.ts_mode,
        propagation=a.propagation,
        matmul_dtype=a.matmul_dtype,
        compile=a.compile,
    )
    builders = {
        "cem": lambda: CEM(model, config=CEMConfig(num_elites=a.elites, **common), **kw),
        "icem": lambda: ICEM(model, config=ICEMConfig(num_elites=a.elites, **common), **kw),
        "mppi": lambda: MPPI(model, config=MPPIConfig(**common), **kw),
    }
    kw = dict(reward=reward, action_low=-1.0, action_high=1.0, nu=nu)
    print(
        f"obs {nx}, act {nu}, {a.members} members ({elites} elites) of {a.hidden}, "
        f"horizon {a.horizon}, "
        f"{a.samples} samples x {a.iterations} iterations, {a.particles} particle(s), "
        f"{a.ts_mode}, {a.propagation}, matmul {a.matmul_dtype or 'float32'}, "
        f"{a.threads} thread(s), compile={a.compile}"
    )
    for name in a.planners.split(","):
        policy = MPCPolicy(builders[name]())
        x = torch.randn(1, nx, generator=torch.Generator().manual_seed(0))
        policy.act(x)  # the first solve (compiles with --compile)
        first = policy.last_plan.solve_time
        times, cpu = [], []
        for _ in range(a.steps):
            c0 = time.process_time()
            u = policy.act(x)
            cpu.append(time.process_time() - c0)
            times.append(policy.last_plan.solve_time)
            x = model(x, u)
        print(
            f"{name:5s} {1e3 * statistics.median(times):7.1f} ms per control step "
            f"(best {1e3 * min(times):.1f}, CPU {1e3 * statistics.median(cpu):.1f}; "
            f"first solve {first:.2f} s)"
        )


if __name__ == "__main__":
    main()
