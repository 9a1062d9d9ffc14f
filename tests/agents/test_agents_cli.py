"""``diffctl train`` / ``diffctl eval`` with tiny budgets."""

from __future__ import annotations

import json

import torch

from diffctl.agents import load
from diffctl.cli import main


def test_train_then_eval(tmp_path, capsys) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "run"
    rc = main(
        [
            "train",
            "ppo",
            "--env",
            "pendulum",
            "--total-steps",
            "256",
            "--num-envs",
            "4",
            "--num-steps",
            "32",
            "--num-minibatches",
            "2",
            "--update-epochs",
            "1",
            "--hidden",
            "16",
            "16",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    for name in ("model.pt", "history.json", "history.csv", "learning_curve.png"):
        assert (out / name).is_file(), name
    history = json.loads((out / "history.json").read_text())
    assert [r["step"] for r in history] == [128, 256]
    agent = load(out / "model.pt")
    assert agent.config.hidden == (16, 16) and agent.config.num_envs == 4
    assert agent.config.gamma == 0.95  # the rest from the pendulum preset
    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                str(out / "model.pt"),
                "--episodes",
                "2",
                "--json",
                str(tmp_path / "eval.json"),
            ]
        )
        == 0
    )
    assert "mean return" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "eval.json").read_text())["returns"]) == 2


def test_train_help_and_bad_flags(capsys) -> None:
    assert main(["train", "sac", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--actor-lr" in text and "--env" in text
    assert main(["train", "ppo", "--env", "pendulum", "--no-such-flag", "1"]) != 0
