"""TD3 and DDPG on pendulum (issue #6: >= -250 within 20k env steps; SAC is in
``test_learning.py``), and resuming a checkpoint written with other optimisers."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from diffctl.agents import default_config, evaluate, load
from diffctl.agents import train as train_by_name
from diffctl.agents.td3 import TD3Config


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["td3", "ddpg"])
def test_pendulum_reaches_minus_250_within_20k_steps(algo: str) -> None:
    # the 10k-step presets end below -250 on some seeds (float rounding alone changes a run);
    # 20k is the bound (seeds 1 and 2 end at -178 to -190, TD3 and DDPG alike)
    cfg = dataclasses.replace(default_config(algo, "pendulum"), total_steps=20_000)
    result = train_by_name(algo, "pendulum", cfg, seed=0)
    assert result.history[-1]["step"] == 20_000
    assert evaluate(result.agent, "pendulum", episodes=20, seed=123)["mean_return"] >= -250


def test_resume_refuses_an_older_optimiser_layout(tmp_path) -> None:
    cfg = TD3Config(total_steps=96, learning_starts=32, batch_size=16, log_interval=48)
    ckpt = tmp_path / "ckpt.pt"
    train_by_name("td3", "pendulum", cfg, seed=0, checkpoint=ckpt, callback=lambda rec: False)
    payload = torch.load(ckpt, weights_only=True)
    parts = payload["train_state"]["parts"]
    parts["critics"] = parts.pop("critic_optimizer")  # as another optimiser layout names it
    payload.pop("checksum")  # (the content changed)
    torch.save(payload, ckpt)
    with pytest.raises(ValueError, match="resume: .* no 'critic_optimizer' state"):
        train_by_name("td3", "pendulum", cfg, seed=0, resume=ckpt)
    assert load(ckpt).algo == "td3"  # the agent itself still loads
