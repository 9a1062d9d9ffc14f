"""Batched vector-Jacobian products with a fallback for functions that torch cannot vmap.

``torch.autograd.grad(..., is_grads_batched=True)`` runs every backward formula under torch's
legacy vmap. Some differentiable functions do not support that: a ``torch.autograd.Function``
whose backward leaves torch (the Brax bridge calls JAX through DLPack, and ``detach`` has no
batching rule). ``batched_grad`` then computes the same products one grad output at a time.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["batched_grad"]


def batched_grad(
    output: Tensor,
    inputs: tuple[Tensor, ...],
    grad_outputs: Tensor,
    create_graph: bool = False,
) -> tuple[Tensor | None, ...]:
    """``grad(output, inputs, grad_outputs[i])`` for every ``i``, stacked on a new dim 0.

    Tries one vmapped call; when the graph holds a function without a batching rule it loops
    over the ``grad_outputs.shape[0]`` products instead (same values, more backward calls).
    Unused inputs give ``None``.
    """
    try:
        return torch.autograd.grad(
            output,
            inputs,
            grad_outputs,
            is_grads_batched=True,
            retain_graph=True,
            create_graph=create_graph,
            allow_unused=True,
        )
    except RuntimeError as e:
        if "atching rule" not in str(e) and "vmap" not in str(e):
            raise
    rows = [
        torch.autograd.grad(
            output, inputs, go, retain_graph=True, create_graph=create_graph, allow_unused=True
        )
        for go in grad_outputs.unbind(0)
    ]
    return tuple(
        None if r[0] is None else torch.stack(r) for r in (list(col) for col in zip(*rows))
    )
