"""The maths of the natural policy gradient and of TRPO, as pure functions.

Notation of Schulman et al. 2015 ("Trust Region Policy Optimization", TRPO; Appendix C,
"Efficiently solving the trust-region constrained optimization problem") and of Kakade 2001
("A Natural Policy Gradient"): ``theta`` are the policy's parameters (flattened: ``[P]``),
``g = grad L(theta_old)`` the gradient of the surrogate
``L(theta) = mean(pi_theta(a|s) / pi_old(a|s) A)``, and ``F`` the Fisher information matrix of
the policy, averaged over the batch's states. ``F`` is the Hessian of the mean KL divergence
``mean_s KL(pi_old(.|s) || pi_theta(.|s))`` at ``theta = theta_old`` (its gradient there is
zero), so ``0.5 d^T F d`` is the second-order model of the KL of a step ``d``.

The natural gradient is ``s = F^{-1} g``. ``F`` is never formed: ``fisher_vector_product``
computes ``F v`` by differentiating the KL twice (Pearlmutter's trick: the gradient of
``(grad KL)^T v``), and ``conjugate_gradient`` solves ``F s = g`` with those products only.
``trust_region_step`` scales ``s`` to the edge of the trust region, ``0.5 d^T F d = delta``, i.e.
``d = sqrt(2 delta / s^T F s) s`` (TRPO's full step; the normalised NPG step of Rajeswaran et
al. 2017), and ``line_search`` backtracks along ``d`` until the exact KL is within ``delta``
and the surrogate improves (TRPO Appendix C).

Everything stays on the tensors' device: the conjugate-gradient stopping test and the choice
of the step fraction are tensor operations (masks), never a host read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from diffctl.agents.networks import CategoricalActor

__all__ = [
    "policy_distribution",
    "kl_divergence",
    "flat_grad",
    "set_flat_params",
    "fisher_vector_product",
    "conjugate_gradient",
    "trust_region_step",
    "line_search",
]


# --------------------------------------------------------------------------- the policy's KL
def policy_distribution(actor: nn.Module, obs: Tensor) -> tuple[Tensor, ...]:
    """The parameters of ``pi(.|obs)`` for ``obs [B, obs_dim]``: ``(log_probs [B, K],)`` of a
    ``CategoricalActor``, ``(mean [B, act_dim], log_std [B, act_dim])`` of a ``GaussianActor``.
    Detach and clone them to hold ``pi_old`` fixed (a Gaussian's ``log_std`` is a view of
    the parameter)."""
    if isinstance(actor, CategoricalActor):
        return (torch.log_softmax(actor.logits(obs), -1),)
    return actor.distribution(obs)


def kl_divergence(actor: nn.Module, obs: Tensor, old: Sequence[Tensor]) -> Tensor:
    """``KL(pi_old(.|s) || pi_theta(.|s)) [B]`` for ``obs [B, obs_dim]``, where ``old`` is
    ``policy_distribution`` of ``pi_old`` on the same ``obs`` and ``theta`` the actor's current
    parameters: ``sum_a p_old (log p_old - log p)`` (categorical), the closed form between
    diagonal Gaussians otherwise."""
    if isinstance(actor, CategoricalActor):
        (old_logp,) = old
        logp = torch.log_softmax(actor.logits(obs), -1)
        return (old_logp.exp() * (old_logp - logp)).sum(-1)
    return actor.kl(obs, *old)


# --------------------------------------------------------------------------- F v and F^{-1} g
def flat_grad(output: Tensor, params: Sequence[Tensor], **kwargs: bool) -> Tensor:
    """``d output / d params`` flattened into one vector ``[P]`` (``torch.autograd.grad``'s
    ``create_graph`` / ``retain_graph`` pass through)."""
    grads = torch.autograd.grad(output, params, **kwargs)
    return torch.cat([g.reshape(-1) for g in grads])


def set_flat_params(params: Sequence[Tensor], theta: Tensor) -> None:
    """Copy the flat vector ``theta [P]`` into ``params`` in place (the inverse of
    ``torch.nn.utils.parameters_to_vector``; unlike ``vector_to_parameters`` it keeps each
    parameter's own storage)."""
    with torch.no_grad():
        for p, value in zip(params, theta.split([p.numel() for p in params])):
            p.copy_(value.view_as(p))


def fisher_vector_product(
    kl: Tensor, params: Sequence[Tensor], damping: float = 0.0
) -> Callable[[Tensor], Tensor]:
    """``v [P] -> (F + damping I) v [P]``, with ``F`` the Hessian of the scalar ``kl`` (the mean
    KL between the detached old policy and the policy of ``params``, evaluated at the old
    parameters) with respect to ``params`` (TRPO Appendix C: "we compute the Hessian-vector
    product ... by differentiating twice").

    The gradient ``grad kl`` is computed once with its graph; each product is then the
    gradient of ``(grad kl)^T v`` (a second ``torch.autograd.grad``, keeping the graph for the
    next product). ``damping`` (``lambda``) adds ``lambda v``: it keeps the solve well posed
    where ``F`` is singular or poorly estimated from one batch."""
    grad_kl = flat_grad(kl, params, create_graph=True)

    def fvp(v: Tensor) -> Tensor:
        return flat_grad(grad_kl @ v, params, retain_graph=True) + damping * v

    return fvp


def conjugate_gradient(
    Avp: Callable[[Tensor], Tensor], b: Tensor, iters: int = 10, tol: float = 1e-10
) -> Tensor:
    """``x [P] ~= A^{-1} b`` for a symmetric positive-definite ``A`` known through products
    ``Avp(v) = A v`` only (Hestenes & Stiefel 1952; Nocedal & Wright, Algorithm 5.2), starting
    from ``x = 0``, for ``iters`` iterations.

    Once the residual ``r^T r`` falls below ``tol`` the iterate stops moving (a mask on the
    update, so the loop runs all ``iters`` without reading the residual on the host)."""
    x = torch.zeros_like(b)
    r = b.clone()  # residual b - A x
    p = b.clone()  # search direction
    rdotr = r @ r
    for _ in range(iters):
        active = rdotr > tol
        Ap = Avp(p)
        pAp = p @ Ap
        alpha = torch.where(active, rdotr / torch.where(active, pAp, 1.0), 0.0)
        x = x + alpha * p
        r = r - alpha * Ap
        new_rdotr = r @ r
        beta = torch.where(active, new_rdotr / torch.where(active, rdotr, 1.0), 0.0)
        p = torch.where(active, r + beta * p, p)
        rdotr = torch.where(active, new_rdotr, rdotr)
    return x


def trust_region_step(s: Tensor, Fs: Tensor, delta: float) -> Tensor:
    """The full step ``d = sqrt(2 delta / s^T F s) s [P]`` along the search direction
    ``s ~= F^{-1} g [P]`` (``Fs = F s [P]``): the largest multiple of ``s`` whose quadratic KL
    model ``0.5 d^T F d`` equals ``delta`` (TRPO Appendix C, ``beta = sqrt(2 delta / s^T A s)``;
    with ``delta`` as the step size, the normalised natural gradient step of Rajeswaran et al.
    2017, "Towards Generalization and Simplicity in Continuous Control", eq. 5)."""
    return torch.sqrt(2 * delta / (s @ Fs).clamp_min(1e-12)) * s


# --------------------------------------------------------------------------- line search
def line_search(
    evaluate: Callable[[Tensor], tuple[Tensor, Tensor]],
    theta: Tensor,
    full_step: Tensor,
    max_kl: float,
    fractions: Tensor,
) -> tuple[Tensor, Tensor]:
    """Backtracking line search of TRPO (Appendix C): the first fraction ``f`` of
    ``fractions [K]`` (decreasing, e.g. ``0.8 ** arange(10)``) whose parameters
    ``theta + f full_step`` have a mean KL ``<= max_kl`` from the old policy and a surrogate
    improvement ``> 0``; if none does, the old parameters ``theta`` (fraction 0).

    ``evaluate(theta') -> (improvement [], kl [])`` evaluates candidate parameters ``[P]``. All
    ``K`` candidates are evaluated and the first acceptable one is picked with tensor ops (no
    host read per try). Returns ``(new theta [P], fraction [])``."""
    ok = []
    for frac in fractions:
        improvement, kl = evaluate(theta + frac * full_step)
        ok.append((kl <= max_kl) & (improvement > 0) & improvement.isfinite() & kl.isfinite())
    accepted = torch.stack(ok)
    # index of the first accepted fraction (argmax of a 0/1 vector is its first 1)
    first = accepted.to(torch.int64).argmax()
    fraction = torch.where(accepted.any(), fractions[first], 0.0)
    return theta + fraction * full_step, fraction
