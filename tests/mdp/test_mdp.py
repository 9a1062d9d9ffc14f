"""Finite-MDP tools: the lecture notes' worked examples, agreement between exact evaluation,
value / policy iteration and Monte-Carlo rollouts, and input validation."""

from __future__ import annotations

import pytest
import torch

from diffctl.mdp import (
    FiniteMDP,
    expected_return,
    gridworld,
    objectworld,
    policy_evaluation,
    policy_iteration,
    q_learning,
    sample_trajectories,
    soft_value_iteration,
    state_occupancy,
    value_iteration,
)

D = torch.float64


def notes_mdp_gamma08() -> tuple[FiniteMDP, torch.Tensor]:
    """Seed notes (RL definitions): x1, x2, x3, terminals T+ (reward +1) / T- (reward -1)."""
    x1, x2, x3, tp, tm = range(5)
    P = torch.zeros(5, 2, 5, dtype=D)
    R = torch.zeros(5, 2, 5, dtype=D)

    def edge(s, a, s2, p, r):
        P[s, a, s2] = p
        R[s, a, s2] = r

    edge(x1, 0, x2, 0.7, 1.0)
    edge(x1, 0, x3, 0.3, -1.0)
    edge(x1, 1, x3, 1.0, -1.0)
    edge(x2, 0, tm, 1.0, -1.0)
    edge(x2, 1, tp, 0.4, 1.0)
    edge(x2, 1, tm, 0.6, -1.0)
    edge(x3, 0, tp, 1.0, 1.0)
    edge(x3, 1, tm, 1.0, -1.0)
    for t in (tp, tm):
        P[t, :, t] = 1.0
    terminal = torch.tensor([False, False, False, True, True])
    pi = torch.tensor([[0.8, 0.2], [0.5, 0.5], [0.9, 0.1], [0.5, 0.5], [0.5, 0.5]], dtype=D)
    return FiniteMDP(P, R, 0.8, terminal), pi


def test_notes_example_gamma08_values() -> None:
    mdp, pi = notes_mdp_gamma08()
    v = policy_evaluation(mdp, pi)
    assert v.V[1].item() == pytest.approx(-0.6, abs=1e-12)
    assert v.V[2].item() == pytest.approx(0.8, abs=1e-12)
    assert v.Q[0].tolist() == pytest.approx([0.256, -0.36], abs=1e-12)
    assert v.V[0].item() == pytest.approx(0.1328, abs=1e-12)
    assert v.A[0].tolist() == pytest.approx([0.1232, -0.4928], abs=1e-12)
    assert v.V[3:].tolist() == [0.0, 0.0]


def test_notes_example_gamma08_optimal() -> None:
    mdp, _ = notes_mdp_gamma08()
    for res in (value_iteration(mdp), policy_iteration(mdp)):
        assert res.converged
        assert res.Q[1].tolist() == pytest.approx([-1.0, -0.2], abs=1e-9)
        assert res.Q[2].tolist() == pytest.approx([1.0, -1.0], abs=1e-9)
        assert res.Q[0].tolist() == pytest.approx([0.528, -0.2], abs=1e-9)
        assert res.V[:3].tolist() == pytest.approx([0.528, -0.2, 1.0], abs=1e-9)
        assert res.policy[:3].tolist() == [0, 1, 0]


def test_notes_example_two_actions_gamma1() -> None:
    """V = 0.8 (1 + 0.9 * 1 + 0.1 * (-1)) + 0.2 (-1) = 1.24, Q = (1.8, -1), A = (0.56, -2.24)."""
    x, x1, tp, tm = range(4)
    P = torch.zeros(4, 2, 4, dtype=D)
    R = torch.zeros(4, 2, 4, dtype=D)
    P[x, 0, x1], R[x, 0, x1] = 1.0, 1.0
    P[x, 1, tm], R[x, 1, tm] = 1.0, -1.0
    P[x1, 0, tp], R[x1, 0, tp] = 1.0, 1.0
    P[x1, 1, tm], R[x1, 1, tm] = 1.0, -1.0
    P[tp, :, tp] = 1.0
    P[tm, :, tm] = 1.0
    mdp = FiniteMDP(P, R, 1.0, torch.tensor([False, False, True, True]))
    pi = torch.tensor([[0.8, 0.2], [0.9, 0.1], [1.0, 0.0], [1.0, 0.0]], dtype=D)
    v = policy_evaluation(mdp, pi)
    assert v.Q[x].tolist() == pytest.approx([1.8, -1.0], abs=1e-12)
    assert v.V[x].item() == pytest.approx(1.24, abs=1e-12)
    assert v.A[x].tolist() == pytest.approx([0.56, -2.24], abs=1e-12)


def test_notes_q_iteration_example() -> None:
    """tau_1: (x, u=1, +1, x'), (x', u=1, +1, x''), gamma = 0.9: Q(x, 1) goes 0 -> 1 -> 1.9."""
    transitions = [(0, 0, 1.0, 1), (1, 0, 1.0, 2)]
    res = q_learning(transitions, 5, 2, 0.9, lr=1.0, sweeps=10, tol=1e-12)
    first = torch.zeros(5, 2, dtype=D)
    first[0, 0] = first[1, 0] = 1.0
    assert torch.equal(res.tables[0], first)
    second = first.clone()
    second[0, 0] = 1.9
    assert torch.allclose(res.tables[1], second, atol=1e-15)
    assert res.converged and len(res.history) == 3
    assert torch.allclose(res.Q, second, atol=1e-15)


def random_mdp(S: int, A: int, gamma: float, seed: int) -> FiniteMDP:
    g = torch.Generator().manual_seed(seed)
    P = torch.rand(S, A, S, generator=g, dtype=D) ** 3
    P = P / P.sum(-1, keepdim=True)
    R = torch.randn(S, A, S, generator=g, dtype=D)
    return FiniteMDP(P, R, gamma)


def random_policy(S: int, A: int, seed: int, batch: tuple[int, ...] = ()) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(2 * torch.randn(*batch, S, A, generator=g, dtype=D), -1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_evaluation_matches_iteration(seed: int) -> None:
    mdp = random_mdp(12, 3, 0.9, seed)
    pi = random_policy(12, 3, seed + 10)
    v = policy_evaluation(mdp, pi)
    # iterate the Bellman expectation operator to its fixed point
    V = torch.zeros(12, dtype=D)
    for _ in range(600):
        Q = mdp.reward_sa + mdp.gamma * torch.einsum("sat,t->sa", mdp.P, V)
        V = (pi * Q).sum(-1)
    assert torch.allclose(v.V, V, atol=1e-10)
    assert torch.allclose((pi * v.A).sum(-1), torch.zeros(12, dtype=D), atol=1e-12)
    # optimal: value iteration, policy iteration and exact evaluation of the greedy policy agree
    vi = value_iteration(mdp)
    pi_res = policy_iteration(mdp)
    assert vi.converged and pi_res.converged
    assert torch.allclose(vi.V, pi_res.V, atol=1e-8)
    assert torch.equal(vi.policy, pi_res.policy)
    assert torch.allclose(policy_evaluation(mdp, vi.policy).V, vi.V, atol=1e-8)
    assert (vi.V >= v.V - 1e-10).all()


def test_batched_evaluation_matches_loop() -> None:
    mdp = random_mdp(7, 4, 0.95, 3)
    pis = random_policy(7, 4, 4, batch=(2, 3))
    vb = policy_evaluation(mdp, pis)
    assert vb.V.shape == (2, 3, 7) and vb.Q.shape == (2, 3, 7, 4)
    for i in range(2):
        for j in range(3):
            v = policy_evaluation(mdp, pis[i, j])
            assert torch.allclose(vb.Q[i, j], v.Q, atol=1e-12)


def test_exact_evaluation_matches_monte_carlo() -> None:
    mdp = random_mdp(6, 2, 0.8, 5)
    pi = random_policy(6, 2, 6)
    v = policy_evaluation(mdp, pi)
    g = torch.Generator().manual_seed(0)
    n, T = 20_000, 80
    samples = sample_trajectories(mdp, pi, T, n, generator=g)
    disc = mdp.gamma ** torch.arange(T, dtype=D)
    returns = (samples.rewards * disc[:, None]).sum(0)
    s0 = samples.states[0]
    for s in range(6):
        r = returns[s0 == s]
        se = r.std() / r.numel() ** 0.5
        assert abs(r.mean() - v.V[s]) < 4 * se + 1e-6
    occ = state_occupancy(mdp, pi)
    mc_occ = torch.stack(
        [((samples.states[:T] == s).to(D) * disc[:, None]).sum(0).mean() for s in range(6)]
    )
    assert torch.allclose(occ, mc_occ, atol=0.05)
    assert occ.sum().item() == pytest.approx(1 / (1 - mdp.gamma), rel=1e-10)
    assert torch.allclose(state_occupancy(mdp, pi, horizon=200), occ, atol=1e-12)
    assert expected_return(mdp, pi).item() == pytest.approx(
        float((occ * (pi * mdp.reward_sa).sum(-1)).sum())
    )


def test_policy_evaluation_gradcheck() -> None:
    mdp = random_mdp(4, 2, 0.9, 7)
    logits = torch.randn(4, 2, dtype=D, requires_grad=True)
    torch.autograd.gradcheck(lambda z: policy_evaluation(mdp, torch.softmax(z, -1)).V, (logits,))


def test_soft_value_iteration() -> None:
    mdp = random_mdp(8, 3, 0.9, 8)
    soft = soft_value_iteration(mdp)
    assert soft.converged
    # soft Bellman fixed point and the policy's exact (entropy-free) value is below soft V
    Q = mdp.reward_sa + mdp.gamma * torch.einsum("sat,t->sa", mdp.P, soft.V)
    assert torch.allclose(torch.logsumexp(Q, -1), soft.V, atol=1e-9)
    assert torch.allclose(soft.policy.sum(-1), torch.ones(8, dtype=D))
    # temperature -> 0 recovers the hard optimum
    cold = soft_value_iteration(mdp, temperature=1e-4)
    assert torch.allclose(cold.V, value_iteration(mdp).V, atol=1e-2)
    # finite horizon: the first-step values approach the infinite-horizon ones
    fh = soft_value_iteration(mdp, horizon=300)
    assert fh.policy.shape == (300, 8, 3)
    assert torch.allclose(fh.V[0], soft.V, atol=1e-8)


def test_gridworld_and_objectworld() -> None:
    mdp = gridworld(8, slip=0.2)
    assert mdp.num_states == 64 and mdp.num_actions == 4 and mdp.features.shape == (64, 64)
    # from a middle cell, "up" moves up with prob 0.8 + 0.2/4 = 0.85
    s = 3 * 8 + 3
    assert mdp.P[s, 0, 2 * 8 + 3].item() == pytest.approx(0.85)
    vi = value_iteration(mdp)
    # optimal moves head towards the bottom-right goal: down or right everywhere but the goal
    assert set(vi.policy[:-1].tolist()) <= {1, 2}
    ow = objectworld(10, seed=1)
    assert ow.num_actions == 5 and ow.features.shape == (100, 4)
    assert set(ow.reward_sa[:, 0].unique().tolist()) <= {-1.0, 0.0, 1.0}
    owd = objectworld(10, seed=1, discrete_features=True)
    assert owd.features.shape == (100, 40)


def test_bad_inputs_name_the_argument() -> None:
    P = torch.full((3, 2, 3), 1 / 3, dtype=D)
    R = torch.zeros(3, 2, dtype=D)
    with pytest.raises(ValueError, match="P: rows must sum to 1"):
        FiniteMDP(P * 1.1, R, 0.9)
    with pytest.raises(ValueError, match="P: expected shape"):
        FiniteMDP(P[:, :, :2], R, 0.9)
    with pytest.raises(ValueError, match="P: transition probabilities must be non-negative"):
        Pn = P.clone()
        Pn[0, 0] = torch.tensor([1.5, -0.5, 0.0])
        FiniteMDP(Pn, R, 0.9)
    for gamma in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="gamma"):
            FiniteMDP(P, R, gamma)
    with pytest.raises(ValueError, match="R: expected shape"):
        FiniteMDP(P, torch.zeros(3, 3), 0.9)
    with pytest.raises(ValueError, match="terminal"):
        FiniteMDP(P, R, 0.9, terminal=torch.tensor([True, False]))
    mdp = FiniteMDP(P, R, 0.9)
    with pytest.raises(ValueError, match="policy: rows must be probability"):
        policy_evaluation(mdp, torch.ones(3, 2, dtype=D))
    with pytest.raises(ValueError, match="policy: expected shape"):
        policy_evaluation(mdp, torch.ones(3, 3, dtype=D) / 3)
    with pytest.raises(ValueError, match="gamma: I - gamma"):
        policy_evaluation(FiniteMDP(P, R, 1.0), torch.full((3, 2), 0.5, dtype=D))
    with pytest.raises(ValueError, match="transitions: empty"):
        q_learning([], 3, 2, 0.9)
    with pytest.raises(ValueError, match=r"transitions\[0\]: action index"):
        q_learning([(0, 5, 1.0, 1)], 3, 2, 0.9)
    with pytest.raises(ValueError, match="slip"):
        gridworld(8, slip=1.5)
