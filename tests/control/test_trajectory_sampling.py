"""Trajectory sampling over ensembles (PETS TS-1 / TS-inf) in CEM, MPPI and iCEM: every particle
is propagated by the member it was assigned, in balanced member blocks, through either calling
convention (``f(x, u, member)`` or ``step_members``) with the same numbers, to the member's mean
or (``propagation="sample"``) to a sample of its Gaussian."""

from __future__ import annotations

import pytest
import torch

from diffctl.control import CEM, ICEM, MPPI, CEMConfig, ICEMConfig, MPPIConfig
from diffctl.models import EnsembleDynamics

D = torch.float64
E, T = 3, 4


class DigitEnsemble:
    """``x' = E x + member``: after ``T`` steps from 0 a particle's state spells the members that
    propagated it, in base ``E``. Offers both ensemble calling conventions (or only the first)."""

    def __init__(self, fast: bool) -> None:
        self.num_elites = E
        self.calls: list[str] = []
        if fast:
            self.step_members = self._step_members

    def __call__(self, x, u, member):
        self.calls.append("member")
        return E * x + member[:, None].to(x.dtype) + 0 * u[:, :1]

    def _step_members(self, x, u):
        self.calls.append("blocks")
        m = torch.arange(x.shape[0], dtype=x.dtype)[:, None, None]
        return E * x + m + 0 * u[..., :1]


def _digits(xT: torch.Tensor) -> torch.Tensor:
    """Members ``[N, T]`` (step order) spelled by final states ``xT [N]``."""
    v = xT.round().long()
    return torch.stack([(v // E ** (T - 1 - t)) % E for t in range(T)], 1)


def _planner(kind, dyn, ts_mode, samples=10, particles=2):
    common = dict(
        horizon=T,
        num_samples=samples,
        particles=particles,
        ensemble_size=E,
        ts_mode=ts_mode,
        iterations=1,
    )
    kw = dict(cost=lambda x, u: x.sum(-1), nu=1, action_low=-1.0, action_high=1.0)
    if kind == "cem":
        return CEM(dyn, config=CEMConfig(num_elites=2, **common), **kw)
    if kind == "mppi":
        return MPPI(dyn, config=MPPIConfig(**common), **kw)
    return ICEM(dyn, config=ICEMConfig(num_elites=2, **common), **kw)


def _members(kind, ts_mode, fast, B=2, K=10, P=2, seed=0):
    dyn = DigitEnsemble(fast)
    planner = _planner(kind, dyn, ts_mode)
    seqs = torch.zeros(B, K, T, 1, dtype=D)
    cost, states = planner._particles(
        torch.zeros(B, 1, dtype=D), seqs, torch.Generator().manual_seed(seed)
    )
    assert states.shape == (T + 1, B * K * P, 1) and cost.shape == (B * K * P,)
    assert set(dyn.calls) == {"blocks" if fast else "member"} and len(dyn.calls) == T
    return _digits(states[-1, :, 0])


@pytest.mark.parametrize("kind", ["cem", "mppi", "icem"])
@pytest.mark.parametrize("fast", [False, True])
def test_ts_inf_keeps_each_particles_member(kind, fast):
    m = _members(kind, "tsinf", fast)  # [40 particles, T]
    assert (m == m[:, :1]).all()  # the same member at every step
    counts = torch.bincount(m[:, 0], minlength=E)
    assert counts.sum() == 40 and counts.max() - counts.min() <= E - 1  # balanced blocks
    assert (counts > 0).all()


@pytest.mark.parametrize("kind", ["cem", "mppi", "icem"])
@pytest.mark.parametrize("fast", [False, True])
def test_ts1_redraws_members_every_step(kind, fast):
    m = _members(kind, "ts1", fast)
    changed = (m[:, 1:] != m[:, :-1]).float().mean()
    assert 0.4 < changed < 0.9, changed  # about 1 - 1/E of the particles switch each step
    for t in range(T):  # balanced at every step
        counts = torch.bincount(m[:, t], minlength=E)
        assert counts.max() - counts.min() <= E - 1


@pytest.mark.parametrize("ts_mode", ["tsinf", "ts1"])
def test_both_calling_conventions_assign_the_same_members(ts_mode):
    """Same generator -> the same member for every particle at every step (fast or not)."""
    assert torch.equal(_members("cem", ts_mode, True), _members("cem", ts_mode, False))
    assert not torch.equal(_members("cem", ts_mode, True), _members("cem", ts_mode, True, seed=1))


@pytest.mark.parametrize("ts_mode", ["tsinf", "ts1"])
@pytest.mark.parametrize("num_members", [3, 4])
def test_ensemble_model_fast_path_equals_per_row_members(ts_mode, num_members):
    """``EnsembleDynamics.step_members`` (one member per block) and ``forward(x, u, member)``
    (every elite on every row, then a gather) roll the particles out identically."""
    torch.manual_seed(0)
    model = EnsembleDynamics(4, 2, num_members=num_members, num_elites=3, hidden=(16, 16))
    model = model.double().eval()
    model.elite_idx.copy_(torch.tensor([2, 0, 1]))  # elites not in member order
    x0 = torch.randn(2, 4, dtype=D)
    seqs = torch.rand(2, 7, T, 2, dtype=D) * 2 - 1  # 2 x 7 x 2 = 28 particles: padded blocks

    def reward(x, u, x1):
        return x1.sum(-1)

    cfg = CEMConfig(
        horizon=T, num_samples=7, num_elites=2, particles=2, ensemble_size=3, ts_mode=ts_mode
    )
    fast = CEM(model, reward=reward, nu=2, config=cfg)
    slow = CEM(lambda x, u, m: model(x, u, m), reward=reward, nu=2, config=cfg)
    assert fast._members_step() is not None and slow._members_step() is None
    a = fast._particles(x0, seqs, torch.Generator().manual_seed(3))
    b = slow._particles(x0, seqs, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a[1], b[1], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a[0], b[0], rtol=1e-12, atol=1e-12)
    # and each particle's trajectory is that of its own (fixed, for TS-inf) elite
    if ts_mode == "tsinf":
        xs = a[1]
        us = seqs[:, :, None].expand(2, 7, 2, T, 2).reshape(28, T, 2).transpose(0, 1)
        owners = torch.zeros(28, dtype=torch.int64)
        for k in range(3):
            pred = model(xs[:-1], us, torch.full((T, 28), k))
            owners += (pred - xs[1:]).abs().amax(dim=(0, 2)) < 1e-12
        assert (owners == 1).all()  # exactly one elite explains every particle


def test_ensemble_size_must_match_for_the_fast_path():
    model = EnsembleDynamics(2, 1, num_members=4, hidden=(8,)).double()
    cfg = CEMConfig(horizon=3, num_samples=6, num_elites=2, ensemble_size=2, particles=2)
    planner = CEM(model, cost=lambda x, u: x.sum(-1), nu=1, config=cfg)
    assert planner._members_step() is None  # 2 != 4 elites: the per-row member call
    cost = planner._score(
        torch.zeros(1, 2, dtype=D),
        torch.zeros(1, 6, 3, 1, dtype=D),
        torch.Generator().manual_seed(0),
    )
    assert cost.shape == (1, 6) and torch.isfinite(cost).all()


@pytest.mark.parametrize("ts_mode", ["tsinf", "ts1"])
def test_elite_weights_are_gathered_once_per_rollout(ts_mode, monkeypatch):
    """With fewer elites than members the planner takes ``elite_weights()`` once per rollout and
    passes them to every ``step_members`` call (no gather of the weights at every step)."""
    torch.manual_seed(0)
    model = EnsembleDynamics(4, 2, num_members=5, num_elites=3, hidden=(16, 16)).double().eval()
    model.elite_idx.copy_(torch.tensor([4, 0, 2]))
    gathered, steps = [], []
    elite_weights, step_members = model.elite_weights, model.step_members

    def counted_weights():
        gathered.append(1)
        return elite_weights()

    def checked_step(x, u, weights=None):
        steps.append(weights is not None)
        return step_members(x, u, weights)

    monkeypatch.setattr(model, "elite_weights", counted_weights)
    monkeypatch.setattr(model, "step_members", checked_step)
    cfg = ICEMConfig(
        horizon=T, num_samples=8, num_elites=2, iterations=2, particles=2, ensemble_size=3
    )
    planner = ICEM(model, reward=lambda x, u, x1: x1.sum(-1), nu=2, config=cfg)
    planner.plan(torch.randn(2, 4, dtype=D))
    rollouts = cfg.iterations + 1  # the iterations and the plan's own rollout
    assert len(gathered) == rollouts and len(steps) == rollouts * T and all(steps)
    # the gathered weights give the numbers of a call that gathers them itself
    x, u = torch.randn(3, 5, 4, dtype=D), torch.randn(3, 5, 2, dtype=D)
    torch.testing.assert_close(step_members(x, u, elite_weights()), step_members(x, u))


@pytest.mark.parametrize("ts_mode", ["tsinf", "ts1"])
@pytest.mark.parametrize("kind", ["cem", "mppi", "icem"])
def test_sampled_propagation_draws_each_particles_member_gaussian(ts_mode, kind):
    """``propagation="sample"``: every step of every particle is ``mu_k + sqrt(var_k) eps`` of
    its own member ``k`` (PETS's probabilistic propagation), with the slot's noise ``eps`` drawn
    from the planner's generator right after the member assignment."""
    torch.manual_seed(0)
    model = EnsembleDynamics(4, 2, num_members=4, num_elites=3, hidden=(16, 16)).double().eval()
    model.elite_idx.copy_(torch.tensor([3, 0, 1]))
    with torch.no_grad():  # log-variances well inside their soft bounds: visible noise
        model.max_logvar.fill_(1.0)
    kw = dict(reward=lambda x, u, x1: x1.sum(-1), nu=2)
    common = dict(horizon=T, num_samples=7, particles=2, ensemble_size=3, ts_mode=ts_mode)
    cfg = {"cem": CEMConfig, "mppi": MPPIConfig, "icem": ICEMConfig}[kind]
    extra = {} if kind == "mppi" else {"num_elites": 2}
    planner = {"cem": CEM, "mppi": MPPI, "icem": ICEM}[kind](
        model, config=cfg(propagation="sample", **common, **extra), **kw
    )
    x0 = torch.randn(2, 4, dtype=D)
    seqs = torch.rand(2, 7, T, 2, dtype=D) * 2 - 1  # 28 particles in blocks of M = 10
    cost, xs = planner._particles(x0, seqs, torch.Generator().manual_seed(5))
    # the same draws, replayed: the assignment, then the noise of every step and slot
    gen = torch.Generator().manual_seed(5)
    src, dst = planner._assign(28, T, gen, x0.device)
    noise = torch.randn(T, src.shape[-1], 4, generator=gen, dtype=D)
    us = seqs[:, :, None].expand(2, 7, 2, T, 2).reshape(28, T, 2).transpose(0, 1)
    M = src.shape[-1] // 3
    for t in range(T):
        slot = dst[t if ts_mode == "ts1" else 0]
        mu, var = model.member_predictions(xs[t], us[t])  # [3, 28, 4]
        rows = torch.arange(28)
        own_mean = mu[slot // M, rows]
        expected = own_mean + var[slot // M, rows].sqrt() * noise[t, slot]
        torch.testing.assert_close(xs[t + 1], expected, rtol=1e-10, atol=1e-10)
        assert (xs[t + 1] - own_mean).abs().amax() > 0.1  # the noise is not negligible
    # the mean propagation of the same draws is the noise-free rollout
    mean_planner = CEM(model, config=CEMConfig(num_elites=2, **common), **kw)
    _, xm = mean_planner._particles(x0, seqs, torch.Generator().manual_seed(5))
    assert not torch.allclose(xm, xs)


def test_sampled_propagation_needs_an_ensemble_block_step():
    cfg = CEMConfig(horizon=T, ensemble_size=E, propagation="sample")
    with pytest.raises(ValueError, match="^propagation: "):
        CEM(DigitEnsemble(fast=False), cost=lambda x, u: x.sum(-1), nu=1, config=cfg)
    with pytest.raises(ValueError, match="^propagation: "):  # no trajectory sampling
        CEM(
            DigitEnsemble(fast=True),
            cost=lambda x, u: x.sum(-1),
            nu=1,
            config=CEMConfig(horizon=T, propagation="sample"),
        )
    CEM(DigitEnsemble(fast=True), cost=lambda x, u: x.sum(-1), nu=1, config=cfg)


@pytest.mark.parametrize(("ts_mode", "name"), [("tsinf", "bfloat16"), ("ts1", "float16")])
def test_matmul_dtype_runs_the_members_products_in_it(ts_mode, name, monkeypatch):
    """``matmul_dtype="bfloat16"`` (or ``"float16"``): every matrix product of the rollout takes
    inputs of that dtype (the elites' weights cast once per rollout), the states stay in their
    dtype, and the particles' states agree with the full-precision rollout to its precision."""
    low = getattr(torch, name)
    torch.manual_seed(0)
    model = EnsembleDynamics(4, 2, num_members=4, num_elites=3, hidden=(16, 16)).double().eval()
    model.elite_idx.copy_(torch.tensor([3, 0, 1]))
    weights = model.elite_weights(low)
    assert all(w.dtype == low and b.dtype == D for w, b in weights)
    kw = dict(reward=lambda x, u, x1: x1.sum(-1), nu=2)
    common = dict(horizon=T, num_samples=7, num_elites=2, particles=2, ensemble_size=3)
    x0 = torch.randn(2, 4, dtype=D)
    seqs = torch.rand(2, 7, T, 2, dtype=D) * 2 - 1

    def rollout(matmul_dtype):
        cfg = ICEMConfig(ts_mode=ts_mode, matmul_dtype=matmul_dtype, **common)
        planner = ICEM(model, config=cfg, **kw)
        return planner._particles(x0, seqs, torch.Generator().manual_seed(5))

    full_cost, full = rollout(None)
    bmm, dtypes = torch.bmm, []

    def spy(a, b):
        dtypes.append((a.dtype, b.dtype))
        return bmm(a, b)

    monkeypatch.setattr(torch, "bmm", spy)
    cost, xs = rollout(name)
    assert len(dtypes) == 3 * T and set(dtypes) == {(low, low)}
    assert xs.dtype == D and cost.dtype == D
    assert not torch.equal(xs, full)  # the products did run in the lower precision
    scale = (full[1:] - full[:-1]).abs().amax()  # the size of a step
    assert (xs - full).abs().amax() < 0.05 * scale
    assert (cost - full_cost).abs().amax() < 0.05 * full_cost.abs().amax()


def test_matmul_dtype_needs_an_ensemble_with_elite_weights():
    cfg = CEMConfig(horizon=T, ensemble_size=E, matmul_dtype="bfloat16")
    with pytest.raises(ValueError, match="^matmul_dtype: "):  # step_members, no elite_weights
        CEM(DigitEnsemble(fast=True), cost=lambda x, u: x.sum(-1), nu=1, config=cfg)
    with pytest.raises(ValueError, match="^matmul_dtype: "):  # no trajectory sampling
        CEM(
            EnsembleDynamics(2, 1, num_members=3, hidden=(8,)),
            cost=lambda x, u: x.sum(-1),
            nu=1,
            config=CEMConfig(horizon=T, matmul_dtype="bfloat16"),
        )
    model = EnsembleDynamics(2, 1, num_members=3, hidden=(8,))
    CEM(model, cost=lambda x, u: x.sum(-1), nu=1, config=cfg)
