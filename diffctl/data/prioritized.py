"""Prioritised experience replay (Schaul et al. 2016, "Prioritized Experience Replay") on a
device-resident sum tree.

``SumTree`` keeps non-negative leaf values and their sums up a binary tree, all in one tensor
on the buffer's device (heap layout: node ``i`` has children ``2i`` and ``2i + 1``, the root is
node 1, the leaves are nodes ``L .. 2L - 1`` with ``L`` the capacity rounded up to a power of
two). A batch of updates rewrites its leaves and then each level of their ancestors (one
gather and one scatter per level); a batch of draws descends the levels with every draw at
once (a prefix-sum search). Nothing loops over the samples and nothing reads a value back to
the host: the only Python loop is over the ``log2 L`` levels.

``PrioritizedReplayBuffer`` composes a ``ReplayBuffer`` (which keeps the transitions) with a
``SumTree`` of the priorities ``p_i^alpha`` (proportional variant: ``p_i = |delta_i| + eps``):

- transitions are drawn with ``P(i) = p_i^alpha / sum_k p_k^alpha`` (Schaul et al. eq. 1),
  stratified: ``B`` equal segments of the total, one draw in each (Appendix B.2.1);
- each draw comes with the importance-sampling weight ``w_i = (N P(i))^-beta`` divided by the
  batch's largest (Sec. 3.4 and Algorithm 1, line 10), ``N`` the number stored; the caller
  anneals ``beta`` from ``beta0`` to 1 over training;
- new transitions enter with the largest priority seen so far (Algorithm 1, line 6), kept as a
  0-d tensor on the device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from diffctl.envs import as_device

from .buffer import ReplayBuffer

__all__ = ["SumTree", "PrioritizedReplayBuffer"]


class SumTree:
    """A binary sum tree over ``capacity`` non-negative leaf values, stored on ``device``.

    Args:
        capacity: number of leaves.
        device: where the tree lives (CPU by default).
        dtype: floating dtype of the sums (float64 by default: the prefix sums of a large
            buffer keep their precision).
    """

    def __init__(
        self,
        capacity: int,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity: expected a positive int, got {capacity!r}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
        self.capacity = capacity
        self.device = as_device(device)
        self.depth = max(1, math.ceil(math.log2(capacity)))  # levels below the root
        self.num_leaves = 2**self.depth
        # node 0 unused, node 1 the root, nodes num_leaves .. 2 num_leaves - 1 the leaves
        self.nodes = torch.zeros(2 * self.num_leaves, dtype=dtype, device=self.device)

    @property
    def total(self) -> Tensor:
        """The sum of the leaves (a 0-d tensor on the device)."""
        return self.nodes[1]

    def values(self, indices: Tensor | None = None) -> Tensor:
        """The leaf values at ``indices`` (all ``capacity`` of them by default)."""
        leaves = self.nodes[self.num_leaves : self.num_leaves + self.capacity]
        return leaves if indices is None else leaves.index_select(0, indices)

    def update(self, indices: Tensor, values: Tensor) -> None:
        """Set the leaves ``indices`` (int64 ``[K]``) to ``values [K]`` (>= 0) and recompute
        their ancestors, one level at a time. A repeated index must come with equal values
        (which of its writes is kept is not specified otherwise)."""
        if not isinstance(indices, Tensor) or indices.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"indices: expected an int64 tensor, got {_describe(indices)}")
        if not isinstance(values, Tensor) or not values.is_floating_point():
            raise TypeError(f"values: expected a floating tensor, got {_describe(values)}")
        if indices.dim() != 1 or values.shape != indices.shape:
            raise ValueError(
                f"values: expected shape {tuple(indices.shape)} (as indices [K]), got "
                f"{tuple(values.shape)}"
            )
        node = indices.to(device=self.device, dtype=torch.int64) + self.num_leaves
        self.nodes.index_put_((node,), values.to(self.nodes.dtype))
        for _ in range(self.depth):  # each parent = the sum of its two children
            node = node // 2
            children = self.nodes[2 * node] + self.nodes[2 * node + 1]
            self.nodes.index_put_((node,), children)

    def find(self, prefix: Tensor) -> Tensor:
        """For each ``prefix [B]`` in ``[0, total)``, the leaf ``i`` whose interval
        ``[sum_{j<i} v_j, sum_{j<=i} v_j)`` holds it (int64 ``[B]``), by descending the tree
        level by level with the whole batch: go right where the prefix is past the left
        child's sum, subtracting that sum. A leaf of value 0 is never returned while the total
        is positive (a prefix pushed past the total by rounding ends on the last positive leaf)."""
        u = prefix.to(self.nodes.dtype)
        node = torch.ones(u.shape, dtype=torch.int64, device=self.device)
        for _ in range(self.depth):
            left_child = 2 * node
            left, right = self.nodes[left_child], self.nodes[left_child + 1]
            go_right = ((u >= left) | (left <= 0)) & (right > 0)
            u = torch.where(go_right, u - left, u)
            node = left_child + go_right.to(torch.int64)
        return (node - self.num_leaves).clamp_(max=self.capacity - 1)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Tensor:
        """``batch_size`` leaves drawn with probability proportional to their values,
        stratified (Schaul et al. 2016, Appendix B.2.1): the total is cut into ``batch_size``
        equal segments and one uniform prefix is drawn in each. Returns int64 ``[batch_size]``
        in increasing segment order."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        dtype = self.nodes.dtype
        u = torch.rand(batch_size, generator=generator, device=self.device, dtype=dtype)
        segment = self.total / batch_size
        offsets = torch.arange(batch_size, device=self.device, dtype=dtype)
        return self.find((offsets + u) * segment)

    def state_dict(self) -> dict[str, Any]:
        return {"nodes": self.nodes.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        nodes = state.get("nodes") if isinstance(state, Mapping) else None
        if not isinstance(nodes, Tensor) or nodes.shape != self.nodes.shape:
            raise ValueError(
                f"state['nodes']: expected a tensor of shape {tuple(self.nodes.shape)}, got "
                f"{_describe(nodes)}"
            )
        self.nodes.copy_(nodes)


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"{x.dtype} {tuple(x.shape)}"
    return type(x).__name__


class PrioritizedReplayBuffer:
    """A ``ReplayBuffer`` whose draws follow the transitions' priorities (see the module
    docstring).

    Args:
        capacity, obs_dim, act_dim, device, discrete, dtype: as ``ReplayBuffer``.
        alpha: priority exponent (0: uniform draws; Schaul et al.'s proportional variant uses
            0.6).
        eps: added to ``|delta|`` so that no priority is 0.

    ``add`` returns nothing; ``sample(batch_size, generator, beta)`` returns the batch of
    ``ReplayBuffer.sample`` plus ``indices`` (int64 ``[B]``, for ``update_priorities``) and
    ``weights`` (``[B]``); ``update_priorities(indices, td_errors)`` sets
    ``p_i = |delta_i| + eps``.
    """

    def __init__(
        self,
        capacity: int,
        obs_dim: int,
        act_dim: int,
        device: str | torch.device | None = None,
        discrete: bool = False,
        *,
        alpha: float = 0.6,
        eps: float = 1e-6,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha >= 0:
            raise ValueError(f"alpha: expected a float >= 0, got {alpha!r}")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
            raise ValueError(f"eps: expected a float > 0, got {eps!r}")
        self.buffer = ReplayBuffer(capacity, obs_dim, act_dim, device, discrete, dtype=dtype)
        self.capacity, self.device = capacity, self.buffer.device
        self.alpha, self.eps = float(alpha), float(eps)
        self.tree = SumTree(capacity, self.device)
        # the largest priority p (not p^alpha) seen so far; new transitions get it
        self.max_priority = torch.ones((), dtype=self.tree.nodes.dtype, device=self.device)
        self._ptr = 0  # the ring position of the next write (as the ReplayBuffer's)

    def __len__(self) -> int:
        return len(self.buffer)

    @property
    def storage(self) -> dict[str, Tensor]:
        return self.buffer.storage

    def add(
        self,
        obs: Tensor,
        action: Tensor,
        reward: Tensor,
        next_obs: Tensor,
        terminated: Tensor,
        *,
        check: bool = True,
    ) -> Tensor:
        """``ReplayBuffer.add`` of a batch of ``N`` transitions, each at the largest priority
        so far (Algorithm 1, line 6). Returns the ring positions written (int64 ``[N']``,
        ``N' = min(N, capacity)``)."""
        self.buffer.add(obs, action, reward, next_obs, terminated, check=check)
        n = min(obs.shape[0] if obs.dim() == 2 else 1, self.capacity)  # as the buffer wrote
        idx = (self._ptr + torch.arange(n, device=self.device)) % self.capacity
        self._ptr = (self._ptr + n) % self.capacity
        self.tree.update(idx, (self.max_priority**self.alpha).expand(n))
        return idx

    def probabilities(self, indices: Tensor) -> Tensor:
        """``P(i) = p_i^alpha / sum_k p_k^alpha`` of the transitions ``indices`` (eq. 1)."""
        return self.tree.values(indices) / self.tree.total

    def sample(
        self, batch_size: int, generator: torch.Generator | None = None, beta: float = 0.4
    ) -> dict[str, Tensor]:
        """``batch_size`` transitions drawn with ``P(i)`` (stratified), as ``ReplayBuffer``'s
        batch plus ``indices`` and the normalised importance weights ``weights`` ``=
        (N P(i))^-beta / max_j (N P(j))^-beta`` over the batch (Sec. 3.4, Algorithm 1)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        if len(self.buffer) == 0:
            raise ValueError("batch_size: cannot sample from an empty PrioritizedReplayBuffer")
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta <= 1:
            raise ValueError(f"beta: expected a float in [0, 1], got {beta!r}")
        if generator is not None and generator.device.type != self.device.type:
            raise ValueError(f"generator: is on {generator.device}, the buffer is on {self.device}")
        idx = self.tree.sample(batch_size, generator)
        # (N P(i))^-beta / max_j (N P(j))^-beta = (P(i) / min_j P(j))^-beta
        probs = self.probabilities(idx)
        weights = (probs / probs.min()) ** -beta
        batch = {k: v.index_select(0, idx) for k, v in self.buffer.storage.items()}
        dtype = self.buffer.dtype
        return {**batch, "indices": idx, "weights": weights.to(dtype)}

    def update_priorities(self, indices: Tensor, td_errors: Tensor) -> None:
        """Set ``p_i = |delta_i| + eps`` of the transitions ``indices`` (``td_errors [K]``, the
        TD errors of their last draw; proportional variant, Sec. 3.3) and raise the running
        maximum priority."""
        p = td_errors.detach().abs().to(self.tree.nodes.dtype) + self.eps
        self.tree.update(indices, p**self.alpha)
        self.max_priority = torch.maximum(self.max_priority, p.max())

    def state_dict(self) -> dict[str, Any]:
        return {
            "buffer": self.buffer.state_dict(),
            "tree": self.tree.state_dict(),
            "max_priority": self.max_priority.clone(),
            "ptr": self._ptr,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``state_dict()`` output, checking its keys (and, through the parts, shapes)."""
        if not isinstance(state, Mapping):
            raise TypeError(f"state: expected a mapping, got {type(state).__name__}")
        for key in ("buffer", "tree", "max_priority", "ptr"):
            if key not in state:
                raise ValueError(f"state: missing key {key!r}")
        ptr = state["ptr"]
        if isinstance(ptr, bool) or not isinstance(ptr, int) or not 0 <= ptr < self.capacity:
            raise ValueError(f"state['ptr']: expected an int in [0, {self.capacity}), got {ptr!r}")
        self.buffer.load_state_dict(state["buffer"])
        self.tree.load_state_dict(state["tree"])
        self.max_priority = torch.as_tensor(
            state["max_priority"], dtype=self.tree.nodes.dtype, device=self.device
        ).clone()
        self._ptr = ptr

    def __repr__(self) -> str:
        return (
            f"PrioritizedReplayBuffer(len={len(self)}, capacity={self.capacity}, "
            f"alpha={self.alpha}, device={self.device})"
        )
