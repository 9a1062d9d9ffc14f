"""Reward files: AIRL's g and h saved and read back together, and ``diffctl plan --reward``
planning on the whole learned reward (terminal cost -h)."""

from __future__ import annotations

import math

import pytest
import torch

from diffctl.cli import main
from diffctl.cli.plan import PlanCommandConfig, run
from diffctl.irl import (
    AdversarialResult,
    RewardConfig,
    RewardModel,
    load_adversarial,
    load_reward,
    shaping_path,
)

torch.set_num_threads(1)


def _airl_pair() -> AdversarialResult:
    """g = 0 (a zero linear reward) and h = a potential that peaks with the pendulum upright."""
    g = RewardModel(RewardConfig(state_dim=2, kind="linear", env="pendulum"))
    h = RewardModel(RewardConfig(state_dim=2, kind="quadratic", env="pendulum"))
    with torch.no_grad():
        h.goal.copy_(torch.tensor([1.0, 0.0, 0.0]))  # [cos, sin, thdot] of upright and still
        h.log_q.fill_(math.log(20.0))
    return AdversarialResult(reward=g, agent=None, shaping=h, gamma=0.9)


def test_airl_round_trip(tmp_path) -> None:
    res = _airl_pair()
    path = tmp_path / "reward.pt"
    res.save(path, meta={"method": "airl"})
    assert shaping_path(path) == tmp_path / "reward.shaping.pt" and shaping_path(path).is_file()
    back = load_adversarial(path)
    assert back.gamma == 0.9 and back.agent is None and back.reward.meta["method"] == "airl"
    x = torch.randn(7, 2)
    torch.testing.assert_close(back.reward(x), res.reward(x))
    torch.testing.assert_close(back.shaping(x), res.shaping(x))
    assert load_reward(path).meta["shaping"] == "reward.shaping.pt"  # g alone still loads


def test_gail_file_has_no_shaping_and_missing_h_is_an_error(tmp_path) -> None:
    res = _airl_pair()
    AdversarialResult(reward=res.reward, agent=None).save(tmp_path / "gail.pt")
    assert not shaping_path(tmp_path / "gail.pt").exists()
    assert load_adversarial(tmp_path / "gail.pt").shaping is None
    res.save(tmp_path / "airl.pt")
    shaping_path(tmp_path / "airl.pt").unlink()
    with pytest.raises(FileNotFoundError, match="airl.shaping.pt"):
        load_adversarial(tmp_path / "airl.pt")


def test_plan_uses_h_as_terminal_cost(tmp_path, capsys) -> None:
    """With g = 0 only h can make MPC act: the pendulum is driven toward upright."""
    path = tmp_path / "reward.pt"
    _airl_pair().save(path)
    cfg = PlanCommandConfig(episodes=4, steps=40, reward=path)
    out = run(cfg)
    assert out["actions"].abs().mean() > 0.5  # it acts (a dropped h leaves u = 0)
    up0, up = out["states"][0, :, 0].cos(), out["states"][-1, :, 0].cos()  # 1: upright
    assert (up0 > 0.99).sum() == 2 and (up > 0.99).sum() == 3  # two held up, one brought up
    assert main(["plan", "--reward", str(path), "--episodes", "1", "--steps", "2"]) == 0
    assert main(["plan", "--reward", str(tmp_path / "missing.pt")]) == 2
    assert "--reward: no such file" in capsys.readouterr().err
