"""The lecture notes' worked examples (seeds), reproduced exactly."""

from __future__ import annotations

import pytest
import torch

from diffctl.agents.networks import CategoricalActor
from diffctl.agents.ppo import clipped_surrogate, clipped_value_loss
from diffctl.agents.reinforce import score_function_loss

EPS = 0.2


# Seeds, "EXERCISE: check all 6 possible cases" of min(rho A, clip(rho, 1-eps, 1+eps) A), and
# the table "Advantage sign / bad ratio case / gradient" (eps = 0.2): for A >= 0 the gradient
# vanishes above 1.2 and is unchanged below 0.8; for A < 0 it vanishes below 0.8 and is
# unchanged above 1.2; inside [0.8, 1.2] the objective is rho * A.
@pytest.mark.parametrize(
    ("adv", "rho", "value", "grad"),
    [
        (2.0, 0.5, 1.0, 2.0),  # A > 0, rho < 1-eps: unclipped rho*A is the min, gradient A
        (2.0, 1.1, 2.2, 2.0),  # A > 0, inside: rho*A
        (2.0, 1.5, 2.4, 0.0),  # A > 0, rho > 1+eps: clipped at (1+eps)A, gradient 0
        (-2.0, 0.5, -1.6, 0.0),  # A < 0, rho < 1-eps: clipped at (1-eps)A, gradient 0
        (-2.0, 0.9, -1.8, -2.0),  # A < 0, inside: rho*A
        (-2.0, 1.5, -3.0, -2.0),  # A < 0, rho > 1+eps: unclipped rho*A, gradient A
    ],
)
def test_ppo_clipping_six_cases(adv: float, rho: float, value: float, grad: float) -> None:
    ratio = torch.tensor([rho], dtype=torch.float64, requires_grad=True)
    a = torch.tensor([adv], dtype=torch.float64)
    obj = clipped_surrogate(ratio, a, EPS)
    obj.sum().backward()
    assert obj.item() == pytest.approx(value, abs=1e-12)
    assert ratio.grad.item() == pytest.approx(grad, abs=1e-12)
    # a lower (pessimistic) bound of the unclipped objective in every case
    assert obj.item() <= rho * adv + 1e-12


def test_ppo_clipping_batched_matches_cases() -> None:
    rho = torch.tensor([0.5, 1.1, 1.5, 0.5, 0.9, 1.5], dtype=torch.float64, requires_grad=True)
    adv = torch.tensor([2.0, 2.0, 2.0, -2.0, -2.0, -2.0], dtype=torch.float64)
    clipped_surrogate(rho, adv, EPS).sum().backward()
    assert rho.grad.tolist() == [2.0, 2.0, 0.0, 0.0, -2.0, -2.0]


def test_clipped_value_loss_seed_formula() -> None:
    # max((V - y)^2, (V_old + clip(V - V_old, -eps, eps) - y)^2) / 2
    v = torch.tensor([1.0, 0.0], requires_grad=True)
    v_old = torch.tensor([0.0, 0.0])
    y = torch.tensor([2.0, 1.0])
    loss = clipped_value_loss(v, v_old, y, EPS)
    # first: unclipped (1-2)^2 = 1, clipped (0.2-2)^2 = 3.24 -> 3.24 (no gradient);
    # second: both (0-1)^2 = 1 -> 1
    assert loss.item() == pytest.approx(0.5 * (3.24 + 1.0) / 2)
    loss.backward()
    assert v.grad.tolist() == pytest.approx([0.0, 0.5 * 2 * (0.0 - 1.0) / 2])


def test_score_function_exam_problem() -> None:
    # pi(u=1|x) = sigma(theta x + 1), theta = -1, x = 1, u = 1, A(u=1, x=1) = 4:
    # d log pi / d theta * A = (1 - sigma(theta + 1)) * 4 = 2
    theta = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    x = torch.tensor([1.0], dtype=torch.float64)
    logp = torch.log(torch.sigmoid(theta * x + 1))
    loss = score_function_loss(logp, torch.tensor([4.0], dtype=torch.float64))
    loss.backward()
    assert -theta.grad.item() == pytest.approx(2.0, abs=1e-12)


def test_score_function_exam_problem_through_categorical_actor() -> None:
    # the same policy as a two-action softmax over a linear layer: logits [theta x + 1, 0]
    # give pi(action 0) = sigma(theta x + 1); the gradient on theta is again 2
    actor = CategoricalActor(1, 2, hidden=()).double()
    layer = actor.logits[0]
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[-1.0], [0.0]]))
        layer.bias.copy_(torch.tensor([1.0, 0.0]))
    logp, _ = actor.log_prob_entropy(torch.tensor([[1.0]], dtype=torch.float64), torch.tensor([0]))
    assert logp.exp().item() == pytest.approx(0.5)
    score_function_loss(logp, torch.tensor([4.0], dtype=torch.float64)).backward()
    assert -layer.weight.grad[0, 0].item() == pytest.approx(2.0, abs=1e-12)
