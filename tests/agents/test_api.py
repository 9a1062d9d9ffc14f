"""Configs, action-space checks, save/load, resume, evaluate, gymnasium runners."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch
from diffctl.envs import VecEnv, make

from diffctl.agents import ALGORITHMS, config_class, evaluate, load
from diffctl.agents import train as train_by_name
from diffctl.agents.a2c import A2CConfig
from diffctl.agents.apg import APGConfig
from diffctl.agents.ars import ARSConfig
from diffctl.agents.dqn import DQNConfig
from diffctl.agents.es import ESConfig
from diffctl.agents.ppo import PPOConfig
from diffctl.agents.reinforce import ReinforceConfig
from diffctl.agents.sac import SACConfig
from diffctl.agents.td3 import TD3Config

# tiny runs of every algorithm (a few iterations), used by several tests
TINY = {
    "reinforce": ("cartpole", ReinforceConfig(total_steps=256, num_envs=4, num_steps=32)),
    "a2c": ("cartpole", A2CConfig(total_steps=256, num_envs=4, num_steps=8)),
    "ppo": (
        "pendulum",
        PPOConfig(total_steps=256, num_envs=4, num_steps=16, num_minibatches=2, update_epochs=2),
    ),
    "ddpg": (
        "pendulum",
        dataclasses.replace(
            config_class("ddpg")(),
            total_steps=96,
            learning_starts=32,
            batch_size=16,
            log_interval=16,
            num_envs=2,
        ),
    ),
    "td3": (
        "pendulum",
        TD3Config(total_steps=96, learning_starts=32, batch_size=16, log_interval=16, num_envs=2),
    ),
    "sac": (
        "pendulum",
        SACConfig(total_steps=96, learning_starts=32, batch_size=16, log_interval=16, num_envs=2),
    ),
    "apg": ("pendulum", APGConfig(total_steps=256, num_envs=4, horizon=16)),
    "dqn": (
        "cartpole",
        DQNConfig(
            total_steps=96,
            num_envs=2,
            learning_starts=32,
            batch_size=16,
            train_frequency=8,
            gradient_steps=2,
            hidden=(16, 16),
            log_interval=16,
        ),  # fmt: skip
    ),
    "trpo": (
        "pendulum",
        config_class("trpo")(total_steps=256, num_envs=4, num_steps=16, vf_minibatches=2),
    ),
    "npg": (
        "cartpole",
        config_class("npg")(total_steps=256, num_envs=4, num_steps=16, vf_minibatches=2),
    ),
    "es": ("cartpole", ESConfig(total_steps=4 * 500 * 4, num_directions=2, episode_steps=0)),
    "ars": (
        "pendulum",
        ARSConfig(total_steps=4 * 4 * 20, num_directions=2, num_top=1, episode_steps=20),
    ),
}


@pytest.mark.parametrize(
    ("cls", "field", "kwargs"),
    [
        (PPOConfig, "learning_rate", {"learning_rate": -1e-3}),
        (PPOConfig, "num_minibatches", {"num_envs": 3, "num_steps": 5, "num_minibatches": 2}),
        (PPOConfig, "gamma", {"gamma": 1.5}),
        (PPOConfig, "target_kl", {"target_kl": 0.0}),
        (PPOConfig, "total_steps", {"total_steps": 10}),
        (ReinforceConfig, "num_envs", {"num_envs": 0}),
        (A2CConfig, "vf_coef", {"vf_coef": -1.0}),
        (SACConfig, "tau", {"tau": 0.0}),
        (SACConfig, "alpha", {"alpha": -0.1}),
        (TD3Config, "policy_frequency", {"policy_frequency": 0}),
        (TD3Config, "learning_starts", {"learning_starts": -1}),
        (APGConfig, "horizon", {"horizon": 0}),
        (APGConfig, "hidden", {"hidden": ()}),
        (ESConfig, "learning_rate", {"learning_rate": 0.0}),
        (ARSConfig, "noise", {"noise": -1.0}),
    ],
)
def test_bad_config_names_the_field(cls: type, field: str, kwargs: dict) -> None:
    with pytest.raises(ValueError, match=field):
        cls(**kwargs)


def test_presets_are_valid_and_frozen() -> None:
    for algo in ALGORITHMS:
        module = importlib.import_module(f"diffctl.agents.{ALGORITHMS[algo]}")
        for cfg in module.PRESETS.values():
            assert isinstance(cfg, module.CONFIG)
        with pytest.raises(dataclasses.FrozenInstanceError):
            module.CONFIG().total_steps = 1  # type: ignore[misc]


@pytest.mark.parametrize("algo", ["ddpg", "td3", "sac", "apg"])
def test_continuous_only_agents_refuse_discrete_env(algo: str) -> None:
    with pytest.raises(ValueError, match="needs continuous actions.*cartpole"):
        train_by_name(algo, "cartpole", TINY[algo][1])


def test_wrong_config_type_and_env_type() -> None:
    with pytest.raises(TypeError, match="config: expected a PPOConfig"):
        train_by_name("ppo", "pendulum", SACConfig())
    with pytest.raises(TypeError, match="env:"):
        train_by_name("ppo", 42, TINY["ppo"][1])
    with pytest.raises(ValueError, match="algo: unknown algorithm"):
        train_by_name("rainbow", "cartpole")
    with pytest.raises(ValueError, match="name: unknown environment"):
        train_by_name("ppo", "no-such-env", TINY["ppo"][1])


@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_tiny_run_history_act_save_load(algo: str, tmp_path) -> None:
    env_name, cfg = TINY[algo]
    result = train_by_name(algo, env_name, cfg, seed=3)
    assert result.history, "one record per iteration"
    rec = result.history[-1]
    for key in ("step", "iteration", "wall_time", "mean_return", "episodes"):
        assert key in rec
    assert rec["step"] <= cfg.total_steps
    agent = result.agent
    spec = make(env_name).spec
    obs = make(env_name).observe(make(env_name).initial_state(5, torch.Generator().manual_seed(0)))
    a = agent.act(obs, deterministic=True)
    if spec.discrete:
        assert a.dtype == torch.int64 and a.shape == (5,)
    else:
        assert a.shape == (5, spec.act_dim)
        low, high = spec.action_bounds()
        assert ((a >= low) & (a <= high)).all()
    assert agent.act(obs[0], deterministic=True).shape == a.shape[1:]
    # the loop may run under inference mode, but the agent it returns holds normal tensors: a
    # gradient through the normaliser and the networks works afterwards
    held = [*agent.parameters(), *agent.buffers()]
    if agent.obs_normalizer is not None:
        held += [agent.obs_normalizer.mean, agent.obs_normalizer.var]
    assert not any(t.is_inference() for t in held)
    o = obs.to(agent.action_dtype).requires_grad_()
    h = agent.normalize_obs(o)
    (grad,) = torch.autograd.grad(h.square().sum() + sum(p.sum() for p in agent.parameters()), o)
    assert grad.isfinite().all() and grad.abs().sum() > 0
    path = tmp_path / "agent.pt"
    agent.save(path)
    loaded = load(path)
    assert loaded.algo == algo and loaded.config == agent.config and loaded.spec == agent.spec
    torch.testing.assert_close(loaded.act(obs, deterministic=True), a)
    out = evaluate(loaded, env_name, episodes=3)
    assert len(out["returns"]) == 3
    assert out["mean_return"] == pytest.approx(sum(out["returns"]) / 3)


def test_loop_mode_is_inference_only_for_a_runner_built_here() -> None:
    from diffctl.agents.runner import loop_mode

    env = make("pendulum")
    runner = VecEnv(env, 2)
    with loop_mode(runner, "pendulum"):
        assert torch.is_inference_mode_enabled()
    for mode in (loop_mode(runner, runner), loop_mode(runner, env, needs_autograd=True)):
        with mode:  # a runner passed in, or a loop that differentiates
            assert not torch.is_inference_mode_enabled()


@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_resume_reproduces_uninterrupted_run(algo: str, tmp_path) -> None:
    env_name, cfg = TINY[algo]
    full = train_by_name(algo, env_name, cfg, seed=1)
    ckpt = tmp_path / "ckpt.pt"
    stop_at = max(1, len(full.history) // 2)
    partial = train_by_name(
        algo,
        env_name,
        cfg,
        seed=1,
        checkpoint=ckpt,
        callback=lambda rec: rec["iteration"] < stop_at,
    )
    assert len(partial.history) == stop_at
    resumed = train_by_name(algo, env_name, cfg, seed=1, resume=ckpt)
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


def test_load_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="path"):
        load(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="path"):
        load(bad)
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a diffctl agent file"):
        load(tmp_path / "other.pt")


def test_file_of_an_earlier_format_names_its_version(tmp_path) -> None:
    # a file of the first agent format (hand-derived gradients, flat optimiser states)
    payload = {"format": "diffctl.agents/1", "algo": "ppo", "spec": {}, "config": {}}
    torch.save({**payload, "agent": {}, "train_state": None}, tmp_path / "old.pt")
    with pytest.raises(ValueError, match=r"format diffctl.agents/1, by diffctl before .*retrain"):
        load(tmp_path / "old.pt")


def test_resume_without_train_state_is_refused(tmp_path) -> None:
    env_name, cfg = TINY["ppo"]
    agent = train_by_name("ppo", env_name, cfg).agent
    agent.save(tmp_path / "a.pt")
    with pytest.raises(ValueError, match="resume: .* no training state"):
        train_by_name("ppo", env_name, cfg, resume=tmp_path / "a.pt")


def test_evaluate_checks_env_and_episodes() -> None:
    agent = train_by_name("ppo", *TINY["ppo"]).agent
    with pytest.raises(ValueError, match="episodes"):
        evaluate(agent, "pendulum", episodes=0)
    with pytest.raises(ValueError, match="env: 'cartpole' does not match"):
        evaluate(agent, "cartpole", episodes=2)
    venv = VecEnv(make("pendulum"), 2, seed=0)
    out = evaluate(agent, venv, episodes=3)  # 2 episodes per copy, first 3 kept
    assert len(out["returns"]) == 3


def test_ppo_uses_given_vecenv_size_and_validates_divisibility() -> None:
    venv = VecEnv(make("pendulum"), 8, seed=0)
    cfg = PPOConfig(total_steps=256, num_envs=4, num_steps=16, num_minibatches=32, update_epochs=1)
    result = train_by_name("ppo", venv, cfg)
    assert result.agent.config.num_envs == 8
    with pytest.raises(ValueError, match="num_minibatches"):
        train_by_name("ppo", VecEnv(make("pendulum"), 3), cfg)


@pytest.mark.parametrize(("algo", "gym_id"), [("ppo", "CartPole-v1"), ("sac", "Pendulum-v1")])
def test_works_through_from_gymnasium(algo: str, gym_id: str) -> None:
    pytest.importorskip("gymnasium")
    from diffctl.envs import from_gymnasium

    runner = from_gymnasium(gym_id, num_envs=2, seed=0)
    cfg = (
        PPOConfig(total_steps=128, num_envs=2, num_steps=32, num_minibatches=2, update_epochs=1)
        if algo == "ppo"
        else TINY["sac"][1]
    )
    result = train_by_name(algo, runner, cfg)
    assert result.history
    out = evaluate(result.agent, from_gymnasium(gym_id, num_envs=2, seed=1), episodes=2)
    assert len(out["returns"]) == 2


def test_apg_refuses_gymnasium_runner() -> None:
    pytest.importorskip("gymnasium")
    from diffctl.envs import from_gymnasium

    with pytest.raises(TypeError, match="differentiable"):
        train_by_name("apg", from_gymnasium("Pendulum-v1"), TINY["apg"][1])


def test_ppo_target_kl_stops_epochs_early() -> None:
    base = PPOConfig(
        total_steps=256,
        num_envs=4,
        num_steps=32,
        num_minibatches=2,
        update_epochs=8,
        learning_rate=1e-2,
        anneal_lr=False,
    )
    free = train_by_name("ppo", "pendulum", base, seed=0).history
    capped = train_by_name(
        "ppo", "pendulum", dataclasses.replace(base, target_kl=1e-6), seed=0
    ).history
    # with the cap every iteration stops after its first epoch
    assert [r["epochs"] for r in free] == [8, 8]
    assert [r["epochs"] for r in capped] == [1, 1]
