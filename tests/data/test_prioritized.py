"""The sum tree and prioritised replay against their definitions (Schaul et al. 2016): totals,
prefix-sum search, stratified draws and their frequencies, P(i), importance weights,
priority updates and checkpoint round trips."""

from __future__ import annotations

import pytest
import torch

from diffctl.data import PrioritizedReplayBuffer, SumTree


def _tree(values: torch.Tensor) -> SumTree:
    tree = SumTree(values.shape[0])
    tree.update(torch.arange(values.shape[0]), values)
    return tree


def _check_sums(tree: SumTree) -> None:
    """Every internal node is the sum of its two children."""
    nodes = tree.nodes
    parents = torch.arange(1, tree.num_leaves)
    torch.testing.assert_close(nodes[parents], nodes[2 * parents] + nodes[2 * parents + 1])


@pytest.mark.parametrize("capacity", [1, 5, 8, 37])
def test_total_and_prefix_search_match_the_cumulative_sums(capacity: int) -> None:
    gen = torch.Generator().manual_seed(capacity)
    values = torch.rand(capacity, generator=gen, dtype=torch.float64)
    values[::3] = 0.0 if capacity > 1 else values[::3]  # empty leaves are never found
    tree = _tree(values)
    _check_sums(tree)
    torch.testing.assert_close(tree.total, values.sum())
    torch.testing.assert_close(tree.values(), values)
    # leaf i holds the prefixes [c_{i-1}, c_i): searchsorted(c, u, right=True)
    cum = values.cumsum(0)
    u = torch.rand(1000, generator=gen, dtype=torch.float64) * values.sum()
    expected = torch.searchsorted(cum, u, right=True)
    assert torch.equal(tree.find(u), expected)
    assert (values[tree.find(u)] > 0).all()
    # the ends: 0 finds the first positive leaf, the total (rounding) the last positive one
    positive = torch.nonzero(values > 0).squeeze(-1)
    ends = tree.find(torch.tensor([0.0, float(values.sum()), float(values.sum()) * 1.01]))
    assert ends.tolist() == [positive[0], positive[-1], positive[-1]]


def test_batched_update_rewrites_leaves_and_ancestors() -> None:
    tree = _tree(torch.ones(10, dtype=torch.float64))
    tree.update(torch.tensor([3, 9, 0]), torch.tensor([5.0, 0.0, 2.5]))
    expected = torch.ones(10, dtype=torch.float64)
    expected[[3, 9, 0]] = torch.tensor([5.0, 0.0, 2.5], dtype=torch.float64)
    torch.testing.assert_close(tree.values(), expected)
    torch.testing.assert_close(tree.total, expected.sum())
    _check_sums(tree)
    # a repeated index with equal values (a transition drawn twice) is fine
    tree.update(torch.tensor([4, 4]), torch.tensor([7.0, 7.0]))
    assert tree.values()[4] == 7.0
    _check_sums(tree)


def test_stratified_sample_draws_one_leaf_per_segment() -> None:
    values = torch.tensor([1.0, 0.0, 3.0, 2.0, 2.0], dtype=torch.float64)
    tree = _tree(values)
    B = 4  # segments of width 2: [0, 2) -> leaf 0 or 2, [2, 4) -> leaf 2, ...
    gen = torch.Generator().manual_seed(0)
    cum = values.cumsum(0)
    for _ in range(50):
        idx = tree.sample(B, gen)
        assert idx.dtype == torch.int64 and idx.shape == (B,)
        for i, leaf in enumerate(idx.tolist()):
            lo, hi = i * 2.0, (i + 1) * 2.0  # the segment; the leaf's interval meets it
            assert cum[leaf] - values[leaf] < hi and cum[leaf] > lo
    # the draws replay the generator: the same numbers, the same leaves
    a = tree.sample(B, torch.Generator().manual_seed(3))
    u = torch.rand(B, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    prefixes = (torch.arange(B, dtype=torch.float64) + u) * values.sum() / B
    assert torch.equal(a, torch.searchsorted(cum, prefixes, right=True))


def test_sampling_frequencies_match_the_priorities() -> None:
    values = torch.tensor([0.5, 4.0, 0.0, 1.0, 2.5, 0.25, 1.75], dtype=torch.float64)
    tree = _tree(values)
    gen = torch.Generator().manual_seed(1)
    draws = torch.cat([tree.sample(32, gen) for _ in range(3000)])  # 96k draws
    counts = torch.bincount(draws, minlength=values.shape[0]).double()
    p = values / values.sum()
    expected = p * draws.shape[0]
    assert counts[2] == 0  # a zero priority is never drawn
    # stratification only lowers the variance below the multinomial's: 5 sigma of it
    sigma = (draws.shape[0] * p * (1 - p)).sqrt()
    assert ((counts - expected).abs() <= 5 * sigma + 1e-9).all(), (counts, expected)
    chi2 = ((counts - expected)[p > 0] ** 2 / expected[p > 0]).sum()
    assert chi2 < 22.5  # the 0.1% tail of chi-square with 6 degrees of freedom


def _per(capacity: int = 8, alpha: float = 0.6) -> PrioritizedReplayBuffer:
    return PrioritizedReplayBuffer(capacity, 3, 0, discrete=True, alpha=alpha, eps=1e-3)


def _add(per: PrioritizedReplayBuffer, n: int, start: float = 0.0) -> torch.Tensor:
    obs = torch.arange(n, dtype=torch.float32)[:, None].expand(n, 3) + start
    return per.add(obs, torch.arange(n) % 2, obs[:, 0], obs + 1, torch.zeros(n, dtype=torch.bool))


def test_per_probabilities_weights_and_priority_updates() -> None:
    alpha, beta = 0.6, 0.4
    per = _per(alpha=alpha)
    idx = _add(per, 5)
    assert idx.tolist() == [0, 1, 2, 3, 4]
    # new transitions enter at the largest priority so far (1 at the start): uniform P
    torch.testing.assert_close(per.probabilities(idx), torch.full((5,), 0.2, dtype=torch.float64))
    td = torch.tensor([0.5, -2.0, 0.0, 1.0, 3.0])
    per.update_priorities(idx, td)
    p = (td.abs().double() + 1e-3) ** alpha  # p_i^alpha, p_i = |delta_i| + eps
    torch.testing.assert_close(per.tree.values()[:5], p)
    torch.testing.assert_close(per.probabilities(idx), p / p.sum())  # eq. 1
    torch.testing.assert_close(per.max_priority, torch.tensor(3.0 + 1e-3, dtype=torch.float64))
    # a new transition gets max_i p_i
    (new,) = _add(per, 1, start=10.0).tolist()
    torch.testing.assert_close(per.tree.values()[new], torch.tensor(3.001**alpha).double())
    batch = per.sample(64, torch.Generator().manual_seed(0), beta=beta)
    assert set(batch) >= {"obs", "actions", "rewards", "next_obs", "terminated", "indices"}
    i = batch["indices"]
    torch.testing.assert_close(batch["obs"], per.storage["obs"][i])
    torch.testing.assert_close(batch["actions"], per.storage["actions"][i])
    # w_i = (N P(i))^-beta / max_j w_j over the batch (Sec. 3.4, Algorithm 1)
    P = per.probabilities(i)
    w = (len(per) * P) ** -beta
    torch.testing.assert_close(batch["weights"], (w / w.max()).float())
    assert batch["weights"].max() == 1.0
    assert not (i == 2).all()  # not only the smallest priority
    # beta = 0: no correction; alpha = 0: uniform draws
    assert (per.sample(8, torch.Generator().manual_seed(0), beta=0.0)["weights"] == 1).all()
    flat = _per(alpha=0.0)
    _add(flat, 4)
    flat.update_priorities(torch.arange(4), torch.tensor([0.1, 5.0, 2.0, 0.0]))
    torch.testing.assert_close(flat.probabilities(torch.arange(4)), torch.full((4,), 0.25).double())


def test_per_ring_wraps_like_the_replay_buffer() -> None:
    per = _per(capacity=4)
    _add(per, 3)
    idx = _add(per, 3, start=100.0)  # positions 3, 0, 1
    assert idx.tolist() == [3, 0, 1]
    assert len(per) == 4
    torch.testing.assert_close(per.storage["obs"][[3, 0, 1], 0], torch.tensor([100.0, 101, 102]))
    assert (per.tree.values() > 0).all()


def test_per_state_dict_round_trip_resumes_the_same_draws() -> None:
    per = _per()
    idx = _add(per, 6)
    per.update_priorities(idx, torch.linspace(0, 2, 6))
    state = per.state_dict()
    other = _per()
    other.load_state_dict(state)
    _add(per, 3, start=5.0)
    _add(other, 3, start=5.0)
    a = per.sample(16, torch.Generator().manual_seed(4), beta=0.7)
    b = other.sample(16, torch.Generator().manual_seed(4), beta=0.7)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    with pytest.raises(ValueError, match="missing key 'tree'"):
        other.load_state_dict({k: v for k, v in state.items() if k != "tree"})
    with pytest.raises(ValueError, match="nodes"):
        SumTree(3).load_state_dict({"nodes": torch.zeros(5)})


def test_bad_arguments_name_themselves() -> None:
    with pytest.raises(ValueError, match="capacity"):
        SumTree(0)
    with pytest.raises(ValueError, match="alpha"):
        PrioritizedReplayBuffer(4, 3, 0, discrete=True, alpha=-1.0)
    per = _per()
    with pytest.raises(ValueError, match="empty"):
        per.sample(4)
    _add(per, 2)
    with pytest.raises(ValueError, match="beta"):
        per.sample(4, beta=1.5)
    with pytest.raises(TypeError, match="indices"):
        per.tree.update(torch.tensor([0.5]), torch.tensor([1.0]))


def test_add_sample_and_update_never_sync_with_the_host() -> None:
    # on the meta device any read of a value (a host synchronisation) raises
    per = PrioritizedReplayBuffer(16, 3, 0, device="meta", discrete=True)
    n = 5
    obs = torch.zeros(n, 3, device="meta")
    idx = per.add(obs, torch.zeros(n, dtype=torch.int64, device="meta"), obs[:, 0], obs,
                  torch.zeros(n, dtype=torch.bool, device="meta"))  # fmt: skip
    batch = per.sample(8, beta=0.5)
    assert batch["weights"].device.type == "meta" and batch["indices"].shape == (8,)
    per.update_priorities(batch["indices"], torch.zeros(8, device="meta"))
    assert idx.device.type == "meta" and per.max_priority.device.type == "meta"
