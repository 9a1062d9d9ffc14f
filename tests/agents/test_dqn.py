"""DQN and its Rainbow switches against hand-computed numbers (targets, n-step returns, the
dueling head, the schedules), resume, the command line and learning cart-pole."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from diffctl.envs import make
from torch import nn

from diffctl.agents import dqn, evaluate, load
from diffctl.agents import train as train_by_name
from diffctl.agents.dqn import DQNConfig
from diffctl.cli import main
from diffctl.data import n_step_returns, n_step_targets

SPEC = make("cartpole").spec
TINY = DQNConfig(
    total_steps=192,
    num_envs=2,
    buffer_size=100,
    batch_size=16,
    learning_starts=32,
    train_frequency=8,
    gradient_steps=2,
    target_update_interval=16,
    hidden=(16, 16),
    n_step=1,
    log_interval=32,
)


class _Table(nn.Module):
    """``Q(s, .) = table[s]`` for one-hot states ``s``."""

    def __init__(self, table: list[list[float]]) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.tensor(table, dtype=torch.float64))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs @ self.table


def _learner_with_tables(double: bool, loss: str = "mse") -> dqn.DQNLearner:
    cfg = DQNConfig(double=double, loss=loss, hidden=(4,))
    learner = dqn.make_learner(dqn.make_agent(SPEC, cfg, 0).double(), cfg)
    learner.q = _Table([[3.0, 1.0], [0.0, 4.0], [9.0, 9.0]])  # online
    learner.q_target = _Table([[1.0, 5.0], [2.0, 0.0], [7.0, 7.0]])
    return learner


def _one_hot(states: list[int]) -> torch.Tensor:
    return torch.eye(3, dtype=torch.float64)[states]


@pytest.mark.parametrize(
    ("double", "expected"), [(False, [3.5, 2.0, 1.0]), (True, [1.5, 1.0, 1.0])]
)
def test_dqn_and_double_dqn_targets_by_hand(double: bool, expected: list[float]) -> None:
    learner = _learner_with_tables(double)
    r = torch.ones(3, dtype=torch.float64)
    o2 = _one_hot([0, 1, 2])
    discount = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)  # the last one terminated
    # DQN: y = r + d max_a Q'(s', a): s'=0 -> 1 + .5 * 5, s'=1 -> 1 + .5 * 2, terminal -> 1
    # double: y = r + d Q'(s', argmax_a Q(s', a)): argmax Q(0) = 0 -> Q'(0, 0) = 1,
    # argmax Q(1) = 1 -> Q'(1, 1) = 0
    y = learner.target(r, o2, discount)
    torch.testing.assert_close(y, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("loss", ["mse", "huber"])
def test_loss_is_the_weighted_td_error(loss: str) -> None:
    learner = _learner_with_tables(double=False, loss=loss)
    o, a = _one_hot([0, 1, 0]), torch.tensor([0, 1, 1])
    r = torch.ones(3, dtype=torch.float64)
    o2 = _one_hot([0, 1, 2])
    discount = torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)
    w = torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64)
    value, td_abs, q_mean = learner.loss(o, a, r, o2, discount, w)
    # Q(s, a) = 3, 4, 1 against y = 3.5, 2, 1: errors -0.5, 2, 0
    torch.testing.assert_close(td_abs, torch.tensor([0.5, 2.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(q_mean, torch.tensor(8.0 / 3, dtype=torch.float64))
    per = [0.25, 4.0, 0.0] if loss == "mse" else [0.5 * 0.25, 2.0 - 0.5, 0.0]  # Huber, delta 1
    expected = sum(wi * li for wi, li in zip([1.0, 0.5, 0.25], per)) / 3
    torch.testing.assert_close(value, torch.tensor(expected, dtype=torch.float64))


def test_n_step_targets_by_hand_with_a_termination_and_a_truncation() -> None:
    g = 0.5
    # env 0: terminates after step 1; env 1: truncated (time limit) after step 2
    r = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 4.0], [4.0, 8.0], [5.0, 16.0]])
    term = torch.zeros(5, 2, dtype=torch.bool)
    trunc = torch.zeros(5, 2, dtype=torch.bool)
    term[1, 0] = True
    trunc[2, 1] = True
    v = torch.tensor([[10.0, 20.0], [99.0, 30.0], [40.0, 50.0], [60.0, 70.0], [80.0, 90.0]])
    y = n_step_targets(r, v, term, trunc, g, 3)
    expected = torch.tensor(
        [
            # env 0, t=0: r0 + g r1, terminal; t=1: r1, terminal; t=2: r2 + g r3 + g^2 r4 +
            # g^3 V(s5); t=3: r3 + g r4 + g^2 V(s5) (the window ends); t=4: r4 + g V(s5)
            [1 + g * 2, 2, 3 + g * 4 + g**2 * 5 + g**3 * 80, 4 + g * 5 + g**2 * 80, 5 + g * 80],
            # env 1, t=0: r0 + g r1 + g^2 r2 + g^3 V(s3) (truncated after step 2: the state it
            # reached, next_values[2]); t=1: r1 + g r2 + g^2 V; t=2: r2 + g V;
            # t=3: r3 + g r4 + g^2 V(s5); t=4: r4 + g V(s5)
            [
                1 + g * 2 + g**2 * 4 + g**3 * 50,
                2 + g * 4 + g**2 * 50,
                4 + g * 50,
                8 + g * 16 + g**2 * 90,
                16 + g * 90,
            ],
        ]
    ).T
    torch.testing.assert_close(y, expected)
    returns, discounts, last = n_step_returns(r, term, trunc, g, 3)
    assert last[:, 0].tolist() == [1, 1, 4, 4, 4] and last[:, 1].tolist() == [2, 2, 2, 4, 4]
    assert discounts[:2, 0].tolist() == [0.0, 0.0]  # terminated: no bootstrap
    assert discounts[:, 1].tolist() == [g**3, g**2, g, g**2, g]
    # n = 1: the one-step target
    y1 = n_step_targets(r, v, term, trunc, g, 1)
    torch.testing.assert_close(y1, r + g * torch.where(term, 0.0, v))
    # the NaN value of a terminal state never enters
    v_nan = v.clone()
    v_nan[1, 0] = float("nan")
    assert n_step_targets(r, v_nan, term, trunc, g, 3).isfinite().all()
    with pytest.raises(ValueError, match="n: expected a positive int"):
        n_step_returns(r, term, trunc, g, 0)


def test_n_step_window_emits_the_transition_n_minus_1_steps_back() -> None:
    g, n, T, N = 0.9, 3, 12, 2
    gen = torch.Generator().manual_seed(0)
    obs = torch.randn(T + 1, N, 4, generator=gen)
    final = torch.randn(T, N, 4, generator=gen)
    r = torch.randn(T, N, generator=gen)
    term = torch.rand(T, N, generator=gen) < 0.2
    trunc = (torch.rand(T, N, generator=gen) < 0.2) & ~term
    a = torch.randint(2, (T, N), generator=gen)
    window = dqn.NStepWindow(n, g)
    out = [window.push(obs[t], a[t], r[t], final[t], term[t], trunc[t]) for t in range(T)]
    assert out[: n - 1] == [None] * (n - 1)
    for t in range(T - n + 1):  # emitted at step t + n - 1: the transition of step t
        o, act, R, o2, te, d = out[t + n - 1]
        ret, disc, last = n_step_returns(r[t : t + n], term[t : t + n], trunc[t : t + n], g, n)
        torch.testing.assert_close(R, ret[0])
        torch.testing.assert_close(d, disc[0])
        env = torch.arange(N)
        torch.testing.assert_close(o2, final[t + last[0], env])
        assert torch.equal(te, term[t + last[0], env])
        assert torch.equal(o, obs[t]) and torch.equal(act, a[t])


def test_dueling_head_is_v_plus_a_minus_mean_a() -> None:
    net = dqn.QNetwork(4, 3, (16, 8), dueling=True)
    obs = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    h = net.trunk(obs)
    v, adv = net.value(h), net.advantage(h)
    assert v.shape == (5, 1) and adv.shape == (5, 3)
    torch.testing.assert_close(net(obs), v + adv - adv.mean(-1, keepdim=True))
    # the advantages average to zero, so the mean over actions of Q is V
    torch.testing.assert_close(net(obs).mean(-1), v.squeeze(-1))


def test_act_is_argmax_q_and_exploration_is_epsilon_greedy() -> None:
    agent = dqn.make_agent(SPEC, DQNConfig(hidden=(8,), end_epsilon=0.25), seed=0)
    obs = torch.randn(4000, SPEC.obs_dim, generator=torch.Generator().manual_seed(1))
    greedy = agent.actor(obs).argmax(-1)
    assert torch.equal(agent.act(obs, deterministic=True), greedy)
    a = agent.act(obs, deterministic=False, generator=torch.Generator().manual_seed(2))
    # random with probability 0.25 (half of those the greedy one): 12.5% differ
    assert 0.1 < (a != greedy).double().mean() < 0.15
    a, logp = agent.actor.sample(obs[:2], torch.Generator().manual_seed(0))
    p = torch.where(a == greedy[:2], 0.875, 0.125)
    torch.testing.assert_close(logp, p.log())


def test_epsilon_schedule() -> None:
    cfg = DQNConfig(total_steps=1000, learning_starts=100, exploration_fraction=0.5)
    cfg = dataclasses.replace(cfg, start_epsilon=1.0, end_epsilon=0.1)
    assert dqn.epsilon_at(cfg, 50) == 1.0  # random warm-up
    assert dqn.epsilon_at(cfg, 250) == pytest.approx(1.0 - 0.9 * 250 / 500)
    assert dqn.epsilon_at(cfg, 500) == pytest.approx(0.1)
    assert dqn.epsilon_at(cfg, 900) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("n_step", {"n_step": 0}),
        ("loss", {"loss": "l1"}),
        ("tau", {"tau": 0.0}),
        ("alpha", {"alpha": 1.5}),
        ("exploration_fraction", {"exploration_fraction": 0.0}),
        ("buffer_size", {"buffer_size": 2, "num_envs": 4}),
    ],
)
def test_bad_config_names_the_field(field: str, kwargs: dict) -> None:
    with pytest.raises(ValueError, match=field):
        DQNConfig(**kwargs)


def test_continuous_env_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="dqn needs discrete actions.*'pendulum'"):
        train_by_name("dqn", "pendulum", TINY)


VARIANTS = {
    "plain": TINY,
    "rainbow-lite": dataclasses.replace(
        TINY, double=True, dueling=True, n_step=3, prioritized=True, tau=0.5
    ),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_resume_reproduces_uninterrupted_run(variant: str, tmp_path) -> None:
    cfg = VARIANTS[variant]
    full = train_by_name("dqn", "cartpole", cfg, seed=1)
    assert [r["step"] for r in full.history] == [32, 64, 96, 128, 160, 192]
    assert "loss" in full.history[-1] and "epsilon" in full.history[-1]
    ckpt = tmp_path / "ckpt.pt"
    partial = train_by_name(
        "dqn", "cartpole", cfg, seed=1, checkpoint=ckpt, callback=lambda rec: rec["step"] < 96
    )
    assert len(partial.history) == 3
    resumed = train_by_name("dqn", "cartpole", cfg, seed=1, resume=ckpt)
    assert len(resumed.history) == len(full.history)
    for a, b in zip(full.history, resumed.history):
        assert {k: v for k, v in a.items() if k != "wall_time"} == pytest.approx(
            {k: v for k, v in b.items() if k != "wall_time"}, nan_ok=True, rel=0, abs=0
        )
    sa, sb = full.agent.state_dict(), resumed.agent.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        if isinstance(sa[k], torch.Tensor):
            assert torch.equal(sa[k], sb[k]), k
    loaded = load(ckpt)
    assert loaded.algo == "dqn" and loaded.config == cfg


def test_prioritized_run_updates_the_priorities() -> None:
    cfg = dataclasses.replace(TINY, prioritized=True)
    seen = {}
    original = dqn.ReplayMemory.update_priorities

    def spy(self, indices, td_abs):
        seen["memory"] = self
        original(self, indices, td_abs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dqn.ReplayMemory, "update_priorities", spy)
        train_by_name("dqn", "cartpole", cfg, seed=0)
    per = seen["memory"].buffer
    leaves = per.tree.values()[: len(per)]
    assert leaves.unique().numel() > 10  # priorities moved off the initial maximum
    assert per.max_priority > 1.0 or (leaves < 1.0).any()


def test_cli_train_then_eval(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    argv = ["train", "dqn", "--env", "cartpole", "--total-steps", "192", "--num-envs", "2"]
    argv += ["--learning-starts", "32", "--batch-size", "16", "--train-frequency", "8"]
    argv += ["--gradient-steps", "2", "--log-interval", "64", "--hidden", "16", "16"]
    argv += ["--n-step", "2", "--prioritized", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    history = json.loads((out / "history.json").read_text())
    assert [r["step"] for r in history] == [64, 128, 192]
    agent = load(out / "model.pt")
    assert agent.config.n_step == 2 and agent.config.prioritized
    capsys.readouterr()
    assert main(["eval", str(out / "model.pt"), "--episodes", "2"]) == 0
    assert "mean return" in capsys.readouterr().out
    assert main(["train", "dqn", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--double" in text and "--n-step" in text and "--target-update-interval" in text


@pytest.mark.slow
def test_compiled_update_matches_eager() -> None:
    cfg = DQNConfig(hidden=(16, 16), double=True, dueling=True)
    agents, learners = [], []
    for compile_ in (False, True):
        c = dataclasses.replace(cfg, compile=compile_)
        agents.append(dqn.make_agent(SPEC, c, seed=0))
        learners.append(dqn.make_learner(agents[-1], c))
    gen = torch.Generator().manual_seed(0)
    B = 32
    for _ in range(4):
        batch = {
            "obs": torch.randn(B, 4, generator=gen),
            "actions": torch.randint(2, (B,), generator=gen),
            "rewards": torch.randn(B, generator=gen),
            "next_obs": torch.randn(B, 4, generator=gen),
            "discounts": torch.where(torch.rand(B, generator=gen) < 0.3, 0.0, 0.99),
            "weights": torch.rand(B, generator=gen),
        }
        (eager, td_eager), (compiled, td_compiled) = (lr.update(batch) for lr in learners)
        for k in eager:
            torch.testing.assert_close(compiled[k], eager[k], rtol=1e-4, atol=1e-5, msg=k)
        torch.testing.assert_close(td_compiled, td_eager, rtol=1e-4, atol=1e-5)
    compiled_state = agents[1].state_dict()
    for k, v in agents[0].state_dict().items():
        torch.testing.assert_close(compiled_state[k], v, rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.slow
def test_cartpole_reaches_475_within_50k_steps() -> None:
    cfg = dqn.PRESETS["cartpole"]
    # DQN with 3-step returns: no double Q, dueling head or prioritised replay
    assert cfg.total_steps <= 50_000 and not (cfg.double or cfg.dueling or cfg.prioritized)
    result = train_by_name("dqn", "cartpole", seed=0)
    assert result.history[-1]["step"] <= 50_000
    assert evaluate(result.agent, "cartpole", episodes=20, seed=123)["mean_return"] >= 475
