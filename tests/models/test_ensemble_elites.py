"""EnsembleDynamics at planning scale: elites chosen on held-out episodes, the planners' member
block call (``step_members``), normalised deltas, old state dicts."""

from __future__ import annotations

import pytest
import torch

from diffctl.models import EnsembleDynamics, FitConfig, fit

D = torch.float64


def _model(**kw):
    torch.manual_seed(0)
    return EnsembleDynamics(3, 2, hidden=(16, 16), **kw).double().eval()


def test_step_members_runs_each_block_through_its_elite():
    model = _model(num_members=4, num_elites=3)
    model.elite_idx.copy_(torch.tensor([3, 0, 2]))
    g = torch.Generator().manual_seed(0)
    x, u = torch.randn(3, 5, 3, generator=g, dtype=D), torch.randn(3, 5, 2, generator=g, dtype=D)
    y = model.step_members(x, u)
    assert y.shape == (3, 5, 3)
    for k in range(3):  # block k == elite k through the per-row member call
        ref = model(x[k], u[k], torch.full((5,), k))
        torch.testing.assert_close(y[k], ref, rtol=1e-12, atol=1e-12)
    # the ensemble mean averages the elites only
    mu, var = model.member_predictions(x[0], u[0])
    assert mu.shape == (3, 5, 3) and var.shape == (3, 5, 3)
    torch.testing.assert_close(model(x[0], u[0]), mu.mean(0))
    # member indices beyond the elites wrap around (a planner given num_members)
    wrapped = model(x[0], u[0], torch.full((5,), 4))
    torch.testing.assert_close(wrapped, model(x[0], u[0], torch.full((5,), 1)))


def test_network_predicts_normalised_deltas():
    model = _model(num_members=2)
    g = torch.Generator().manual_seed(1)
    x, u = torch.randn(500, 3, generator=g, dtype=D), torch.randn(500, 2, generator=g, dtype=D)
    x1 = x + torch.tensor([5.0, -3.0, 0.0], dtype=D) + 0.01 * torch.randn(500, 3, dtype=D)
    model.prepare(x, u, x1)
    torch.testing.assert_close(model.out_norm.mean, (x1 - x).mean(0))
    torch.testing.assert_close(model.out_norm.std, (x1 - x).std(0, unbiased=False))
    # a zero network output is the mean delta
    with torch.no_grad():
        for p in model.net.parameters():
            p.zero_()
    torch.testing.assert_close(model(x, u), x + (x1 - x).mean(0))


def test_select_elites_drops_a_bad_member():
    model = _model(num_members=4, num_elites=3)
    g = torch.Generator().manual_seed(2)
    x, u = torch.randn(400, 3, generator=g, dtype=D), torch.randn(400, 2, generator=g, dtype=D)
    x1 = x + 0.1 * u[:, :1]
    model.prepare(x, u, x1)
    with torch.no_grad():  # member 2 predicts far-off deltas
        model.net[-1].weight[2].mul_(100.0)
    err = model.select_elites(x, u, x1)
    assert err.shape == (4,) and err.argmax() == 2
    assert model.elite_idx.tolist() == err.argsort()[:3].tolist()  # best first
    assert 2 not in model.elite_idx.tolist()
    # the ensemble mean no longer sees member 2
    with torch.no_grad():
        model.net[-1].weight[2].mul_(1e6)
    assert torch.isfinite(model(x, u)).all() and (model(x, u) - x1).abs().max() < 10


def test_fit_chooses_elites_on_the_held_out_episodes(pendulum_logs):
    model = EnsembleDynamics(2, 1, num_members=4, num_elites=2, hidden=(32, 32), angle_dims=(0,))
    cfg = FitConfig(epochs=3, batch_size=256, val_fraction=0.2, patience=2, progress=False)
    result = fit(model, pendulum_logs, cfg)
    errs, elites = result.metrics["member_errors"], result.metrics["elites"]
    assert len(errs) == 4 and len(elites) == 2
    assert elites == sorted(range(4), key=lambda i: errs[i])[:2]
    assert model.elite_idx.tolist() == elites
    # the errors are those on the validation episodes, not on the training ones
    from diffctl.models.dataset import transitions_from
    from diffctl.models.training import train_val_split

    _, val = train_val_split(transitions_from(pendulum_logs, source="states"), cfg)
    torch.testing.assert_close(
        model.member_errors(val.x, val.u, val.x_next), torch.tensor(errs), rtol=1e-5, atol=0
    )


def test_state_dicts_without_elites_still_load():
    model = _model(num_members=3)
    state = {k: v for k, v in model.state_dict().items() if k != "elite_idx"}
    fresh = EnsembleDynamics(3, 2, num_members=3, hidden=(16, 16)).double()
    fresh.elite_idx.copy_(torch.tensor([2, 1, 0]))
    fresh.load_state_dict(state)
    assert fresh.elite_idx.tolist() == [0, 1, 2]
    assert fresh.init_kwargs()["num_elites"] == 3


@pytest.mark.parametrize("bad", [0, 4, 1.5, True])
def test_num_elites_is_validated(bad):
    with pytest.raises(ValueError, match="^num_elites: "):
        EnsembleDynamics(2, 1, num_members=3, num_elites=bad)
