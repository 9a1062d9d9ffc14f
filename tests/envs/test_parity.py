"""Step-for-step parity with gymnasium's reference implementations (float64, atol 1e-6).

For each system, 1,000 random actions are applied to our env and to gymnasium's unwrapped env
from the same start; gymnasium's ``unwrapped.state`` is set to ours at every reset (after a
termination or the time limit). ``MountainCarContinuous-v0`` rounds its state to float32 after
every step, so there the state is also handed over before each step (which still checks every
step's next state, reward and termination against the reference). Continuous actions are drawn
on a 1/1024 grid: gymnasium multiplies the float32 action by Python floats in float32 (NumPy 2
promotion), which would otherwise add a rounding error of ~1e-7 per step to the reference.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffctl.envs import make

gym = pytest.importorskip("gymnasium")

CASES = [
    # (our name, gymnasium id, hand over the state before every step)
    ("pendulum", "Pendulum-v1", False),
    ("cartpole", "CartPole-v1", False),
    ("acrobot", "Acrobot-v1", False),
    ("mountaincar-continuous", "MountainCarContinuous-v0", True),
]


@pytest.mark.parametrize(("name", "gym_id", "sync_every_step"), CASES)
def test_parity_with_gymnasium(name: str, gym_id: str, sync_every_step: bool) -> None:
    env = make(name, dtype=torch.float64)
    ref = gym.make(gym_id).unwrapped
    ref.reset(seed=0)
    ref.action_space.seed(0)
    gen = torch.Generator().manual_seed(0)
    steps, episodes, terminations = 1000, 0, 0

    def start() -> torch.Tensor:
        x0 = env.initial_state(1, gen)[0]
        ref.reset()
        ref.state = x0.numpy().copy()
        return x0

    x = start()
    t = 0
    for _ in range(steps):
        a = ref.action_space.sample()
        if not env.spec.discrete:
            # on a 1/1024 grid, so that gymnasium's float32 arithmetic on the action is exact
            a = np.round(a * 1024) / 1024
        if env.spec.discrete:
            u = torch.tensor(int(a))
        else:
            u = torch.as_tensor(a, dtype=torch.float64)
        if sync_every_step:
            ref.state = x.numpy().copy()
        obs_ref, r_ref, term_ref, _, _ = ref.step(a)
        x1 = env.dynamics(x, u)
        r = env.reward(x, u, x1)
        term = bool(env.terminated(x1))
        np.testing.assert_allclose(np.asarray(ref.state, np.float64), x1.numpy(), atol=1e-6)
        np.testing.assert_allclose(obs_ref, env.observe(x1).numpy(), rtol=1e-6, atol=1e-6)
        assert abs(float(r_ref) - float(r)) < 1e-6
        assert term == term_ref
        t += 1
        terminations += term
        if term or t >= env.spec.max_steps:
            x, t, episodes = start(), 0, episodes + 1
        else:
            x = x1
    assert episodes >= 1  # the reset path was exercised

    if name == "cartpole":
        assert terminations > 10  # random cart-pole episodes end by termination


EDGE_CASES = [
    # states near the kinks: the wall, the goal, the velocity limits, the angle wrap
    ("mountaincar-continuous", "MountainCarContinuous-v0", [-1.19, -0.07], [-1.0]),
    ("mountaincar-continuous", "MountainCarContinuous-v0", [0.44, 0.06], [1.0]),
    ("mountaincar-continuous", "MountainCarContinuous-v0", [0.2, 0.069], [1.0]),
    ("acrobot", "Acrobot-v1", [3.1, -3.1, 12.0, 27.0], 2),
    ("acrobot", "Acrobot-v1", [-3.1, 3.1, -12.0, -27.0], 0),
    ("acrobot", "Acrobot-v1", [2.5, 1.2, 1.0, 0.0], 2),
    ("pendulum", "Pendulum-v1", [3.1, 7.9], [2.0]),
    ("cartpole", "CartPole-v1", [2.39, 1.0, 0.2, 1.0], 1),
]


@pytest.mark.parametrize(("name", "gym_id", "x0", "action"), EDGE_CASES)
def test_parity_near_kinks(name: str, gym_id: str, x0: list, action) -> None:
    env = make(name, dtype=torch.float64)
    ref = gym.make(gym_id).unwrapped
    ref.reset(seed=0)
    x = torch.tensor(x0, dtype=torch.float64)
    a = np.asarray(action, np.float32) if isinstance(action, list) else action
    u = torch.as_tensor(a, dtype=torch.float64) if isinstance(action, list) else torch.tensor(a)
    for _ in range(5):
        ref.state = x.numpy().copy()
        _, r_ref, term_ref, _, _ = ref.step(a)
        x1 = env.dynamics(x, u)
        np.testing.assert_allclose(np.asarray(ref.state, np.float64), x1.numpy(), atol=1e-6)
        assert abs(float(r_ref) - float(env.reward(x, u, x1))) < 1e-6
        assert bool(env.terminated(x1)) == term_ref
        if term_ref:  # gymnasium's steps after a termination are undefined
            break
        x = x1


@pytest.mark.parametrize(("name", "gym_id"), [c[:2] for c in CASES])
def test_start_distribution_matches_gymnasium(name: str, gym_id: str) -> None:
    """Same support and moments as gymnasium's ``reset`` (uniform boxes)."""
    env = make(name, dtype=torch.float64)
    ref = gym.make(gym_id).unwrapped
    n = 4000
    ours = env.initial_state(n, torch.Generator().manual_seed(0)).numpy()
    theirs = []
    for i in range(n):
        ref.reset(seed=i)
        theirs.append(np.asarray(ref.state, np.float64))
    theirs = np.stack(theirs)
    width = np.maximum(theirs.max(0) - theirs.min(0), 1e-12)
    np.testing.assert_allclose(ours.min(0), theirs.min(0), atol=0.01 * width.max())
    np.testing.assert_allclose(ours.max(0), theirs.max(0), atol=0.01 * width.max())
    np.testing.assert_allclose(ours.mean(0), theirs.mean(0), atol=0.05 * width.max())
    np.testing.assert_allclose(ours.std(0), theirs.std(0), atol=0.05 * width.max())
