"""``diffctl bench mpc``: our differentiable box-iLQR ``MPC`` against mpc.pytorch (``mpc``).

The problem is mpc.pytorch's own pendulum (``mpc.env_dx.pendulum.PendulumDx``: state
``[cos th, sin th, th_dot]``, quadratic cost with goal weights ``(1, 1, 0.1)``, control penalty
0.001), horizon ``T = 20``, ``|u| <= 2``, at most 50 iterations, both solvers given the same
``PendulumDx`` module as dynamics (Jacobians by autograd on both sides) and the same random start
states. Per batch size it reports the time of a forward solve and of forward + backward (the
gradient of ``sum(actions) + sum(cost)`` w.r.t. ``x0`` and the cost tensors), the mean cost
reached (both plans evaluated by the same rollout and cost), the fraction of starts where our
cost is within 1e-3 of the peer's or lower, and ratios. A closed-loop run swings the pendulum
up from random starts (receding horizon with shifted warm starts, true dynamics = the model),
counting a start as a success when ``|th| < 0.1`` and ``|th_dot| < 1`` at the end.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import TYPE_CHECKING, Any

from diffctl.bench.common import BenchResult, set_threads, timeit

if TYPE_CHECKING:
    import torch

    from diffctl.control import MPC

HELP = "differentiable iLQR MPC against mpc.pytorch on its pendulum (T=20, |u|<=2)"

T = 20
MAX_ITER = 50


def _problem(B: int, seed: int, device: torch.device, dtype: torch.dtype):
    import torch
    from mpc.env_dx.pendulum import PendulumDx

    dx = PendulumDx(simple=True)
    dx.params = dx.params.to(device=device, dtype=dtype)
    gen = torch.Generator().manual_seed(seed)
    th = (torch.rand(B, generator=gen, dtype=torch.float64) * 2 - 1) * math.pi
    thd = torch.rand(B, generator=gen, dtype=torch.float64) * 2 - 1
    x0 = torch.stack([th.cos(), th.sin(), thd], -1).to(device=device, dtype=dtype)
    w = dx.goal_weights.to(device=device, dtype=dtype)
    q = torch.cat([w, dx.ctrl_penalty * torch.ones(1, device=device, dtype=dtype)])
    p = torch.cat([-torch.sqrt(w) * dx.goal_state.to(device, dtype), q.new_zeros(1)])
    return dx, x0, torch.diag(q), p


def _peer(mpc_mod: Any, dx: Any, u_init: torch.Tensor | None = None, lqr_iter: int = MAX_ITER):
    return mpc_mod.MPC(
        3,
        1,
        T,
        u_init=u_init,
        u_lower=-2.0,
        u_upper=2.0,
        lqr_iter=lqr_iter,
        verbose=-1,
        exit_unconverged=False,
        detach_unconverged=False,
        linesearch_decay=dx.linesearch_decay,
        max_linesearch_iter=dx.max_linesearch_iter,
        grad_method=mpc_mod.GradMethods.AUTO_DIFF,
        eps=1e-2,
    )


def _ours(dx: Any, Q: torch.Tensor, p: torch.Tensor) -> MPC:
    from diffctl.control import MPC, MPCConfig, QuadCost

    cfg = MPCConfig(horizon=T, u_lower=-2.0, u_upper=2.0, max_iter=MAX_ITER, u_tol=1e-4)
    return MPC(dx, QuadCost(Q, p), cfg)


def _closed_loop(plan_fn, dx: Any, x0: torch.Tensor, steps: int) -> tuple[float, float]:
    """Success rate and mean solve time per control step of a receding-horizon loop."""
    import torch

    x, warm = x0, None
    t_plan = 0.0
    for _ in range(steps):
        t0 = time.perf_counter()
        u = plan_fn(x, warm)
        t_plan += time.perf_counter() - t0
        warm = torch.cat([u[1:], u[-1:]], 0)
        with torch.no_grad():
            x = dx(x, u[0])
    th = torch.atan2(x[:, 1], x[:, 0])
    ok = (th.abs() < 0.1) & (x[:, 2].abs() < 1.0)
    return ok.float().mean().item(), t_plan / steps


def _bench_batch(
    B: int, args: argparse.Namespace, mpc_mod: Any, device: torch.device, dtype: torch.dtype
) -> dict[str, Any]:
    """Forward and forward+backward timings and costs of both solvers at batch size ``B``."""
    import torch

    from diffctl.control import QuadCost

    sync = device if device.type == "cuda" else None
    dx, x0, Q, p = _problem(B, args.seed, device, dtype)
    ours = _ours(dx, Q, p)
    with torch.no_grad():
        plan = ours.plan(x0)
    t_fwd = timeit(lambda: ours.plan(x0), repeat=args.repeat, device=sync)

    def ours_fb() -> None:
        xg, Qg, pg = (t.clone().requires_grad_(True) for t in (x0, Q, p))
        r = _ours(dx, Qg, pg).plan(xg)
        (r.actions.sum() + r.cost.sum()).backward()

    t_fb = timeit(ours_fb, repeat=args.repeat, device=sync)
    row: dict[str, Any] = {
        "batch": B,
        "ours_fwd_s": t_fwd,
        "ours_fwd_bwd_s": t_fb,
        "ours_cost": plan.cost.mean().item(),
        "ours_converged": plan.converged.float().mean().item(),
        "ours_iters": plan.iterations.float().mean().item(),
    }
    if mpc_mod is None or B > args.peer_max_batch:
        return row
    Qe, pe = Q.expand(T, B, 4, 4), p.expand(T, B, 4)

    def peer_fwd() -> Any:
        return _peer(mpc_mod, dx)(x0, mpc_mod.QuadCost(Qe, pe), dx)

    def peer_fb() -> None:
        xg, Qg, pg = (t.clone().requires_grad_(True) for t in (x0, Q, p))
        peer_cost_fn = mpc_mod.QuadCost(Qg.expand(T, B, 4, 4), pg.expand(T, B, 4))
        _, u, c = _peer(mpc_mod, dx)(xg, peer_cost_fn, dx)
        (u.sum() + c.sum()).backward()

    u_peer = peer_fwd()[1].detach()
    with torch.no_grad():  # both plans scored by the same rollout and cost
        peer_cost = QuadCost(Q, p).total(ours._rollout(x0, u_peer), u_peer)
    p_fwd = timeit(peer_fwd, repeat=args.repeat, warmup=0, device=sync)
    p_fb = timeit(peer_fb, repeat=args.repeat, warmup=0, device=sync)
    row.update(
        {
            "peer_fwd_s": p_fwd,
            "peer_fwd_bwd_s": p_fb,
            "peer_cost": peer_cost.mean().item(),
            "ours<=peer+1e-3": (plan.cost <= peer_cost + 1e-3).float().mean().item(),
            "speedup_fwd": p_fwd / t_fwd,
            "speedup_fwd_bwd": p_fb / t_fb,
        }
    )
    return row


def _bench_closed_loop(
    args: argparse.Namespace, mpc_mod: Any, device: torch.device, dtype: torch.dtype
) -> dict[str, Any]:
    """Swing-up success rate and time per control step of both receding-horizon loops."""
    import torch

    dx, x0, Q, p = _problem(args.closed_loop_starts, args.seed + 1, device, dtype)
    ours = _ours(dx, Q, p)

    def ours_plan(x: torch.Tensor, warm: torch.Tensor | None) -> torch.Tensor:
        with torch.no_grad():
            return ours.plan(x, warm).actions

    succ, t_step = _closed_loop(ours_plan, dx, x0, args.closed_loop_steps)
    row: dict[str, Any] = {
        "closed_loop_starts": args.closed_loop_starts,
        "steps": args.closed_loop_steps,
        "ours_success": succ,
        "ours_s_per_step": t_step,
    }
    if mpc_mod is None:
        return row
    B = x0.shape[0]
    peer_cost = mpc_mod.QuadCost(Q.expand(T, B, 4, 4), p.expand(T, B, 4))

    def peer_plan(x: torch.Tensor, warm: torch.Tensor | None) -> torch.Tensor:
        return _peer(mpc_mod, dx, u_init=warm)(x, peer_cost, dx)[1].detach()

    psucc, pt = _closed_loop(peer_plan, dx, x0, args.closed_loop_steps)
    row.update({"peer_success": psucc, "peer_s_per_step": pt, "speedup_step": pt / t_step})
    return row


def run(argv: list[str]) -> BenchResult:
    ap = argparse.ArgumentParser(prog="diffctl bench mpc", description=HELP)
    ap.add_argument("--batches", default="1,64,1024", help="comma-separated batch sizes")
    ap.add_argument(
        "--peer-max-batch",
        type=int,
        default=1024,
        help="run the peer only up to this batch size (it is slow on CPU)",
    )
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--closed-loop-starts", type=int, default=64)
    ap.add_argument("--closed-loop-steps", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    import torch  # only now: --help and a usage error answer without it

    threads = set_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    res = BenchResult(name="mpc")
    res.notes.append(f"torch threads = {threads}, device = {device}, dtype = {args.dtype}")
    try:
        import mpc.mpc as mpc_mod  # the peer, mpc.pytorch (installed with --no-deps)
        import mpc.util as mpc_util
        from mpc.env_dx.pendulum import PendulumDx  # noqa: F401

        if not getattr(mpc_util.bdiag, "_diffctl_patched", False):
            # mpc.pytorch's bdiag indexes with a uint8 mask, which torch >= 2 rejects (its
            # backward pass crashes); torch.diag_embed computes the same batch of diagonals.
            def _bdiag(d: torch.Tensor) -> torch.Tensor:
                return torch.diag_embed(d)

            _bdiag._diffctl_patched = True  # type: ignore[attr-defined]
            mpc_util.bdiag = _bdiag
            # Its LQRStepFn.forward returns 6 tensors but backward accepts 4 gradients, which
            # torch >= 1.3 rejects; drop the extra (unused) gradients.
            orig_step = mpc_mod.LQRStep

            def _lqr_step(*a: Any, **k: Any) -> Any:
                apply = orig_step(*a, **k)
                cls = apply.__self__
                bwd = cls.backward
                cls.backward = staticmethod(lambda ctx, gx, gu, *_: bwd(ctx, gx, gu))
                return apply

            mpc_mod.LQRStep = _lqr_step
            res.notes.append(
                "patched two torch-compatibility bugs of mpc.pytorch so its backward runs: "
                "mpc.util.bdiag (uint8 mask index -> torch.diag_embed) and LQRStepFn.backward "
                "(6 forward outputs, 4 gradients accepted)"
            )
    except Exception as e:  # report any import failure of the peer in the notes
        mpc_mod = None
        res.notes.append(f"peer mpc.pytorch unavailable ({type(e).__name__}: {e}); ours only")
    batches = [int(b) for b in args.batches.split(",") if b]
    for B in batches:
        row = _bench_batch(B, args, mpc_mod, device, dtype)
        if mpc_mod is not None and B > args.peer_max_batch:
            res.notes.append(f"batch {B}: peer skipped (> --peer-max-batch {args.peer_max_batch})")
        res.rows.append(row)
    if args.closed_loop_starts > 0:
        res.rows.append(_bench_closed_loop(args, mpc_mod, device, dtype))
    return res
