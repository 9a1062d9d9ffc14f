"""MBPO (``diffctl.models.mbpo``): its settings' checks, the rollout schedule, model rollouts
that equal the env's own steps when the model is the env, the same seed giving the same run,
checkpoints that resume as the uninterrupted run, and a learning test on the pendulum against SAC
at the same number of env steps."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch
from diffctl.envs import make

import diffctl.agents.loop
from diffctl.agents import load, sac
from diffctl.agents.checkpoint import load_checkpoint
from diffctl.cli import main
from diffctl.configs.agents import SACConfig
from diffctl.models import FitConfig
from diffctl.models.mbpo import MBPOConfig, mbpo, model_rollouts
from diffctl.models.mbrl import episode_returns, run_episodes

TINY = MBPOConfig(
    env="pendulum",
    hidden=(8,),
    num_members=2,
    ensemble_elites=2,
    total_steps=60,
    random_steps=20,
    model_train_every=20,
    rollouts_per_step=2,
    rollout_schedule=(0, 40, 1, 3),
    model_buffer_steps=20,
    updates_per_step=2,
    sac=SACConfig(hidden=(8,), batch_size=16),
    fit=FitConfig(epochs=2, batch_size=16, val_fraction=0.0, eval_horizon=3, progress=False),
    episode_steps=10,
    eval_episodes=2,
    progress=False,
)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"random_steps": 60}, "random_steps"),
        ({"total_steps": 0}, "total_steps"),
        ({"rollout_schedule": (5, 5, 1, 1)}, "rollout_schedule"),
        ({"rollout_schedule": (0, 5, 0, 1)}, "rollout_schedule"),
        ({"real_ratio": 1.5}, "real_ratio"),
        ({"ensemble_elites": 3}, "ensemble_elites"),
        ({"updates_per_step": True}, "updates_per_step"),
        ({"env_options": ("nope",)}, "env_options"),
    ],
)
def test_config_refuses_bad_settings_naming_the_field(change, field):
    with pytest.raises((ValueError, TypeError), match=field):
        dataclasses.replace(TINY, **change)


def test_rollout_length_follows_the_schedule():
    c = dataclasses.replace(TINY, rollout_schedule=(100, 300, 1, 5))
    lengths = [c.rollout_length(t) for t in (0, 100, 150, 200, 299, 300, 10_000)]
    assert lengths == [1, 1, 2, 3, 4, 5, 5]


class _TrueModel:
    """The env's own dynamics in the place of the ensemble."""

    def __init__(self, env):
        self.env = env

    def sample(self, x, u, *, mode, noise, generator):
        assert (mode, noise) == ("ts1", True)
        return self.env.dynamics(x, u)


@pytest.mark.parametrize("name", ["pendulum", "mujoco:InvertedDoublePendulum-v5"])
def test_model_rollouts_through_the_true_dynamics_are_the_env_steps(name):
    env = make(name)
    agent = sac.make_agent(env.spec, SACConfig(hidden=(8,)), seed=0)
    gen = torch.Generator().manual_seed(0)
    x0 = env.initial_state(16, gen)
    out = model_rollouts(_TrueModel(env), env, agent, x0, 8, torch.Generator().manual_seed(1))
    # the same steps taken by hand: the rows still running after each step go on
    ref = {k: [] for k in out}
    x, replay = x0, torch.Generator().manual_seed(1)
    for _ in range(8):
        obs = env.observe(x)
        u = agent.act(obs, generator=replay)
        x1 = env.dynamics(x, u)
        term = env.terminated(x1)
        for k, v in zip(ref, (obs, u, env.reward(x, u, x1), env.observe(x1), term)):
            ref[k].append(v)
        x = x1[~term]
        if not len(x):
            break
    for k in out:
        torch.testing.assert_close(out[k], torch.cat(ref[k]), msg=k)
    n_term = int(out["terminated"].sum())
    if name == "pendulum":
        assert out["obs"].shape[0] == 16 * 8 and n_term == 0
    else:  # random early policies tip the poles over: rows stop after their terminal step
        assert n_term > 0 and out["obs"].shape[0] < 16 * 8


def test_same_seed_same_run():
    a, b = mbpo(TINY), mbpo(TINY)
    keys = ("episode", "env_steps", "return", "eval_return", "model_one_step_nmse")
    assert [[h[k] for k in keys] for h in a.history] == [[h[k] for k in keys] for h in b.history]
    for p, q in zip(a.agent.parameters(), b.agent.parameters(), strict=True):
        assert torch.equal(p, q)
    assert len(a.history) == TINY.total_steps // TINY.episode_steps
    assert a.data.num_steps == TINY.total_steps
    c = mbpo(dataclasses.replace(TINY, seed=1))
    assert [h["return"] for h in c.history] != [h["return"] for h in a.history]


def _keep_checkpoints(monkeypatch) -> list[str]:
    """From now on, keep a copy of each checkpoint as it is written (``<path>.<n>`` for the
    n-th); returns the list of copies, filled as they are made."""
    written: list[str] = []
    save = diffctl.agents.loop.save_checkpoint

    def keep(where, agent, train_state):
        save(where, agent, train_state)
        written.append(shutil.copy(where, f"{where}.{len(written) + 1}"))

    monkeypatch.setattr(diffctl.agents.loop, "save_checkpoint", keep)
    return written


def _same_run(a, b):
    keys = ("episode", "env_steps", "return", "eval_return", "model_one_step_nmse")
    assert [[h[k] for k in keys] for h in a.history] == [[h[k] for k in keys] for h in b.history]
    for p, q in zip(a.agent.parameters(), b.agent.parameters(), strict=True):
        assert torch.equal(p, q)
    for (name, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(p, q), name


def test_resume_continues_as_the_uninterrupted_run(monkeypatch, tmp_path):
    """A checkpoint after every episode; resuming from the one after episode 2 (before the
    first refit) or episode 4 (after two) ends where the uninterrupted run ends."""
    written = _keep_checkpoints(monkeypatch)
    whole = mbpo(TINY, checkpoint=tmp_path / "run.ckpt")
    monkeypatch.undo()
    assert len(written) == len(whole.history) == 6
    _same_run(whole, mbpo(TINY))  # checkpointing changes nothing
    for k in (2, 4):
        resumed = mbpo(TINY, resume=written[k - 1], checkpoint=tmp_path / f"from{k}.ckpt")
        _same_run(whole, resumed)
        assert [h["wall_time"] for h in resumed.history[:k]] == [
            h["wall_time"] for h in load_checkpoint(written[k - 1])[1]["history"]
        ]
    agent = load(tmp_path / "run.ckpt")  # the checkpoint is an agent file
    for p, q in zip(agent.parameters(), whole.agent.parameters(), strict=True):
        assert torch.equal(p, q)


def test_resume_refuses_other_settings_and_other_files(tmp_path):
    path = tmp_path / "run.ckpt"
    mbpo(TINY, checkpoint=path)
    with pytest.raises(ValueError, match="was run with seed=0, this run has 1"):
        mbpo(dataclasses.replace(TINY, seed=1), resume=path)
    mbpo(dataclasses.replace(TINY, progress=True), resume=path)  # progress may change
    with pytest.raises(ValueError, match="ran on env 'pendulum', not 'mountaincar-continuous'"):
        mbpo(TINY, env=make("mountaincar-continuous"), resume=path)
    agent = sac.make_agent(make("pendulum").spec, TINY.sac)
    agent.save(tmp_path / "agent.pt")
    with pytest.raises(ValueError, match="is no mbpo checkpoint"):
        mbpo(TINY, resume=tmp_path / "agent.pt")


def test_cli_checkpoint_and_resume(monkeypatch, tmp_path, capsys):
    flags = ["mbpo", "--env", "pendulum", "--hidden", "8", "--num-members", "2",
             "--ensemble-elites", "2", "--total-steps", "40", "--random-steps", "10",
             "--model-train-every", "10", "--rollouts-per-step", "2", "--model-buffer-steps",
             "10", "--updates-per-step", "1", "--sac.hidden", "8", "--sac.batch-size", "8",
             "--fit.epochs", "1", "--fit.val-fraction", "0", "--episode-steps", "10",
             "--no-progress"]  # fmt: skip
    written = _keep_checkpoints(monkeypatch)
    assert main([*flags, "--checkpoint", str(tmp_path / "a.ckpt")]) == 0
    monkeypatch.undo()
    table = capsys.readouterr().out.splitlines()
    assert len(written) == 4
    assert main([*flags, "--resume", written[1], "--checkpoint", written[1]]) == 2
    assert "--checkpoint" in capsys.readouterr().err  # an output never replaces an input
    assert main([*flags, "--total-steps", "50", "--resume", written[1]]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main([*flags, "--resume", written[1], "--out", str(tmp_path / "b.pt")]) == 0
    resumed = capsys.readouterr().out.splitlines()
    # the same rows, time column aside, and the resumed run's agent
    assert [r.split()[:-1] for r in resumed[:-1]] == [r.split()[:-1] for r in table]
    agent, whole = load(tmp_path / "b.pt"), load(tmp_path / "a.ckpt")
    for p, q in zip(agent.parameters(), whole.parameters(), strict=True):
        assert torch.equal(p, q)


def test_refuses_discrete_actions():
    with pytest.raises(ValueError, match="env: cartpole has discrete actions"):
        mbpo(TINY, env=make("cartpole"))


def test_learns_the_pendulum_with_fewer_samples_than_sac():
    """2,000 env steps: MBPO's deterministic policy swings up and holds (measured -173 to -265
    on seeds 0-2, about 55 s each at one thread), where SAC's pendulum preset after the same
    steps has not learnt yet (-1,520 to -1,680; it passes -200 within 8,000)."""
    env = make("pendulum")
    x0 = env.initial_state(10, torch.Generator().manual_seed(123))

    def evaluate(agent) -> float:
        tr, _ = run_episodes(env, lambda o: agent.act(o, deterministic=True), 200, x0)
        return episode_returns(tr).mean().item()

    config = MBPOConfig(
        env="pendulum",
        hidden=(64, 64),
        num_members=5,
        ensemble_elites=None,
        total_steps=2_000,
        random_steps=400,
        model_train_every=200,
        rollouts_per_step=50,
        rollout_schedule=(0, 1, 1, 1),
        updates_per_step=10,
        sac=SACConfig(hidden=(64, 64)),
        fit=FitConfig(
            epochs=50,
            batch_size=128,
            lr=3e-3,
            val_fraction=0.2,
            patience=5,
            eval_horizon=10,
            progress=False,
        ),
        progress=False,
    )
    ours = evaluate(mbpo(config).agent)
    sac_config = dataclasses.replace(sac.default_config("pendulum"), total_steps=2_000)
    theirs = evaluate(sac.train(make("pendulum"), sac_config, seed=0).agent)
    assert ours > -400, ours
    assert ours > theirs + 500, (ours, theirs)
