"""``diffctl bench convex``: our MPC against ``ConvexMPC`` (cvxpylayers + Clarabel).

The same batch of box-constrained linear-quadratic problems (default nx=4, nu=2, T=30,
``|u| <= 1``, batch 64, float64, a random system with start states far enough out that the
bounds are active) is solved by

- ours: ``MPC`` on ``LinearDynamics`` with a ``QuadCost``. With the default ``--solver auto``
  this runs the condensed solver (``diffctl.control.condensed``: the states eliminated, one
  dense box QP in the ``T nu`` controls solved exactly by an interior-point phase and
  primal-dual active-set iterations; backward by autograd through one solve over the final free
  set, i.e. implicit differentiation at the solution); ``--solver ddp`` runs the projected-
  Newton box-DDP instead (backward by implicit differentiation at its fixed point). The row's
  ``ours_solver`` says which one ran;
- peer: ``ConvexMPC``, the QP as a cvxpylayers layer solved by Clarabel through diffcp.

Both run forward and forward+backward (gradient of a fixed random linear function of the
actions with respect to ``x0`` and the dynamics matrix ``A``), in one process, the timed runs
alternating between the two. Reported: time
per call, the ratio peer/ours, the largest difference of the plans and of the gradients.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .common import BenchResult, set_threads, timeit

if TYPE_CHECKING:
    import torch

HELP = "box-LQR MPC (ours) vs ConvexMPC (cvxpylayers + Clarabel): speed and agreement"


def problem(nx: int, nu: int, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random controllable system, costs and start states (float64)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    d = torch.float64
    A = torch.eye(nx, dtype=d) + 0.1 * torch.randn(nx, nx, generator=g, dtype=d)
    B = torch.randn(nx, nu, generator=g, dtype=d)
    return {
        "A": A,
        "B": B,
        "Q": torch.eye(nx, dtype=d),
        "R": 0.1 * torch.eye(nu, dtype=d),
        "x0": 3.0 * torch.randn(batch, nx, generator=g, dtype=d),
        "w": torch.randn(1, batch, nu, generator=g, dtype=d),
    }


def solve_ours(
    p: dict[str, torch.Tensor], T: int, bound: float, grad: bool, solver: str = "auto"
) -> tuple[Any, ...]:
    import torch

    from diffctl.control import MPC, LinearDynamics, MPCConfig, QuadCost

    x0 = p["x0"].clone().requires_grad_(grad)
    A = p["A"].clone().requires_grad_(grad)
    dyn = LinearDynamics(torch.cat([A, p["B"]], 1))
    cost = QuadCost.tracking(p["Q"], p["R"], Q_final=p["Q"])
    cfg = MPCConfig(horizon=T, u_lower=-bound, u_upper=bound, solver=solver)
    with torch.set_grad_enabled(grad):
        res = MPC(dyn, cost, cfg).plan(x0)
        if not grad:
            return res.actions, res.converged
        gx, gA = torch.autograd.grad((res.actions * p["w"]).sum(), (x0, A))
    return res.actions.detach(), res.converged, gx, gA, res.info["solver"]


def solve_convex(layer: Any, p: dict[str, torch.Tensor], bound: float, grad: bool) -> tuple:
    import torch

    x0 = p["x0"].clone().requires_grad_(grad)
    A = p["A"].clone().requires_grad_(grad)
    with torch.set_grad_enabled(grad):
        res = layer(x0, A, p["B"], p["Q"], p["R"], u_low=-bound, u_high=bound)
        if not grad:
            return res.actions, res.converged
        gx, gA = torch.autograd.grad((res.actions * p["w"]).sum(), (x0, A))
    return res.actions.detach(), res.converged, gx, gA


def measure(
    p: dict[str, torch.Tensor], args: argparse.Namespace, layer: Any, have_ours: bool
) -> dict[str, Any]:
    """One row: times of both solvers on problem ``p`` and their disagreement. The timed runs
    alternate between the solvers (ours fwd, peer fwd, ours fwd+bwd, peer fwd+bwd, repeated),
    so that a change in machine load hits both; medians are reported."""
    T, bound = args.horizon, args.bound
    row: dict[str, Any] = {"batch": p["x0"].shape[0]}
    s = args.solver
    runs: dict[str, Any] = {}
    if have_ours:  # (the first, untimed call is the warm-up)
        u, conv, gx, gA, row["ours_solver"] = solve_ours(p, T, bound, True, s)
        row["ours_converged"] = float(conv.float().mean())
        runs["ours_fwd_s"] = lambda: solve_ours(p, T, bound, False, s)
    if layer is not None:
        uc, _, gxc, gAc = solve_convex(layer, p, bound, True)
        row["convex_max_|u|-bound"] = float(uc.abs().max() - bound)
        runs["convex_fwd_s"] = lambda: solve_convex(layer, p, bound, False)
    if have_ours:
        runs["ours_fwd_bwd_s"] = lambda: solve_ours(p, T, bound, True, s)
    if layer is not None:
        runs["convex_fwd_bwd_s"] = lambda: solve_convex(layer, p, bound, True)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeat):
        for k, fn in runs.items():
            times[k].append(timeit(fn, warmup=0, repeat=1))
    for k, ts in times.items():
        row[k] = sorted(ts)[len(ts) // 2]
    if have_ours and layer is not None:
        row["x_faster_fwd"] = row["convex_fwd_s"] / row["ours_fwd_s"]
        row["x_faster_fwd_bwd"] = row["convex_fwd_bwd_s"] / row["ours_fwd_bwd_s"]
        row["max_du"] = float((u - uc).abs().max())
        row["max_dgrad_x0"] = float((gx - gxc).abs().max())
        row["max_dgrad_A"] = float((gA - gAc).abs().max())
        row["active_frac"] = float(((u.abs() - bound).abs() < 1e-6).float().mean())
    order = ["batch", "ours_solver", "ours_fwd_s", "ours_fwd_bwd_s", "ours_converged"]
    order += ["convex_fwd_s", "convex_fwd_bwd_s", "convex_max_|u|-bound", "x_faster_fwd"]
    order += ["x_faster_fwd_bwd", "max_du", "max_dgrad_x0", "max_dgrad_A", "active_frac"]
    return {k: row[k] for k in order if k in row}


def run(argv: list[str]) -> BenchResult:
    ap = argparse.ArgumentParser(prog="diffctl bench convex", description=HELP)
    ap.add_argument("--nx", type=int, default=4)
    ap.add_argument("--nu", type=int, default=2)
    ap.add_argument("--horizon", type=int, default=30)
    ap.add_argument("--bound", type=float, default=1.0)
    ap.add_argument("--batch", type=int, nargs="+", default=[64])
    ap.add_argument("--repeat", type=int, default=3, help="timed runs (median reported)")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: these small batched ops lose to thread overhead; "
        "2 threads made our MPC 3-8x slower on a shared 2-core machine)",
    )
    ap.add_argument(
        "--diff-mode",
        default="dense",
        choices=["dense", "lsqr"],
        help="ConvexMPC's derivative solve (dense: its default, exact; lsqr: faster, ~1e-2 "
        "relative gradient error seen with active bounds)",
    )
    ap.add_argument(
        "--solver",
        default="auto",
        choices=["auto", "ddp", "condensed"],
        help="our MPC's solver (MPCConfig.solver; auto: condensed on this LQ problem)",
    )
    args = ap.parse_args(argv)
    threads = set_threads(args.threads)
    result = BenchResult("convex")
    result.notes.append(
        f"torch threads {threads}; diffcp n_jobs 1, mode {args.diff_mode}; float64; "
        f"nx={args.nx} nu={args.nu} "
        f"T={args.horizon} |u|<={args.bound}; backward = d(w . u)/d(x0, A); ours: MPC with "
        f"solver={args.solver!r} (ours_solver: the one that ran; 'condensed' = dense box QP "
        "in the T*nu controls, 'ddp' = box-DDP)"
    )
    try:
        from diffctl.control import ConvexMPC, ConvexMPCConfig

        layer = ConvexMPC(ConvexMPCConfig(horizon=args.horizon, diff_mode=args.diff_mode))
    except ImportError as e:
        layer = None
        result.notes.append(f"peer ConvexMPC unavailable (cvxpylayers/clarabel missing): {e}")
    try:
        from diffctl.control import MPC  # noqa: F401

        have_ours = True
    except ImportError as e:
        have_ours = False
        result.notes.append(f"our MPC unavailable: {e}")

    for B in args.batch:
        result.rows.append(measure(problem(args.nx, args.nu, B), args, layer, have_ours))
    result.notes.append("targets: x_faster_fwd_bwd >= 30 at batch 64; max_du <= 1e-4")
    return result
