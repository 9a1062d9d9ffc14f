"""Every code block of README.md runs as written.

The ```python blocks run one by one, each in a fresh namespace, in a scratch folder that holds
what the command-line walkthrough wrote (``logs.npz``) and a link to ``examples/`` (the MuJoCo
block loads ``examples/assets/pendulum.xml`` as a user in the clone would). The ```bash blocks
run command by command through ``diffctl.cli.main`` in that folder, except those in ``SKIP``
(each with the reason). The walkthrough's commands run at the sizes in ``TINY`` (flags appended
to, or replacing, the README's): its real sizes take tens of minutes on a CPU.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from diffctl.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: bash blocks not run, by a snippet of their text, and why
SKIP = {
    "pip install -e '.[all]' && diffctl compare": "a fresh install and the 6-minute compare run",
    "bash scripts/test.sh": "the whole test suite (this file is part of it)",
    "diffctl mbrl --env mujoco:HalfCheetah-v5": "an hour of PETS on the half-cheetah (the "
    "loop, its checkpoints and resume are tested in tests/models/test_mbrl_scale.py)",
    "diffctl mbpo --env mujoco:HalfCheetah-v5": "an hour of MBPO on the half-cheetah (MBPO is "
    "tested in tests/models/test_mbpo.py)",
}

#: sizes of the walkthrough commands in this test (the README's are real runs): per command,
#: ``(prefix of the command line, flags set here)``; a flag the README gives is replaced
TINY = [
    ("collect --env pendulum --policy mpc", {"--episodes": "1", "--policy-args": "horizon=3"}),
    ("collect", {"--episodes": "2"}),
    ("fit", {"--epochs": "2", "--hidden": "8", "--num-members": "2", "--eval-horizon": "5"}),
    ("plan", {"--episodes": "1", "--steps": "3", "--mpc.horizon": "4", "--mpc.max-iter": "2"}),
    ("train ppo", {"--total-steps": "64", "--num-envs": "2", "--num-steps": "32",
                   "--num-minibatches": "1", "--update-epochs": "1", "--hidden": "8"}),
    ("eval", {"--episodes": "1"}),
    ("irl", {"--adversarial.total-steps": "2048", "--adversarial.disc-updates": "2",
             "--adversarial.disc-batch": "16", "--adversarial.hidden": "8"}),
]  # fmt: skip
NO_PROGRESS = ("collect", "plan", "irl", "fit")  # tyro's --progress/--no-progress
NO_PROGRESS_FLAG = {"train": "--no-progress"}


def blocks(lang: str) -> list[str]:
    text = README.read_text()
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def _commands(block: str) -> list[list[str]]:
    """The ``diffctl`` command lines of a bash block (comments and continuations handled)."""
    out = []
    for line in block.replace("\\\n", " ").splitlines():
        argv = shlex.split(line, comments=True)
        if argv:
            assert argv[0] == "diffctl", f"not a diffctl command: {line!r}"
            out.append(argv[1:])
    return out


def _tiny(argv: list[str]) -> list[str]:
    line = " ".join(argv)
    flags = next((f for prefix, f in TINY if line.startswith(prefix)), {})
    argv = list(argv)
    for flag, value in flags.items():
        if flag in argv:
            i = argv.index(flag)
            argv[i + 1] = value
        else:
            argv += [flag, value]
    if argv[0] in NO_PROGRESS:
        argv.append("--no-progress")
    elif argv[0] in NO_PROGRESS_FLAG:
        argv.append(NO_PROGRESS_FLAG[argv[0]])
    return argv


def _skipped(block: str) -> str | None:
    return next((why for snippet, why in SKIP.items() if snippet in block), None)


def test_readme_has_the_blocks_this_test_expects():
    assert len(blocks("python")) >= 3
    bash = blocks("bash")
    assert all(any(s in b for b in bash) for s in SKIP), "a SKIP entry matches no block"
    walk = [b for b in bash if not _skipped(b)]
    assert walk, "no command-line walkthrough"
    commands = [" ".join(c[:2]) for b in walk for c in _commands(b)]
    for step in ("collect", "fit", "plan", "train ppo", "eval", "irl"):
        assert any(c.startswith(step) for c in commands), step
    assert any("--reward" in " ".join(c) for b in walk for c in _commands(b))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A folder where the README's bash walkthrough has run (its files stay for the python)."""
    d = tmp_path_factory.mktemp("readme")
    (d / "examples").symlink_to(ROOT / "examples")
    old = os.getcwd()
    os.chdir(d)
    try:
        for block in blocks("bash"):
            if _skipped(block):
                continue
            for argv in _commands(block):
                assert main(_tiny(argv)) == 0, argv
    finally:
        os.chdir(old)
    return d


def test_readme_bash_walkthrough_runs(scratch):
    for name in ("logs.npz", "model.pt", "runs/ppo/model.pt", "expert.npz", "reward.pt"):
        assert (scratch / name).is_file(), name


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_readme_python_block_runs(scratch, monkeypatch, index):
    code = blocks("python")[index]
    if "mujoco:" in code:
        pytest.importorskip("mujoco", reason="the MuJoCo block needs the [mujoco] extra")
    monkeypatch.chdir(scratch)
    exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "__readme__"})


def test_readme_half_cheetah_command_is_the_preset():
    """The skipped half-cheetah command (whose runs the README reports) is ``PETS_PRESET``: every
    setting of the model, the planner and the loop, and the fit's epochs and early stopping."""
    from diffctl.cli._common import parse
    from diffctl.cli.mbrl import MBRLCommandConfig
    from diffctl.configs.models import PETS_PRESET

    (block,) = [b for b in blocks("bash") if "diffctl mbrl --env mujoco:HalfCheetah-v5" in b]
    (argv,) = _commands(block)
    cfg = parse(MBRLCommandConfig, argv[1:], prog="diffctl mbrl").config
    for key, value in PETS_PRESET.items():
        if key != "fit":
            assert getattr(cfg, key) == value, key
    for key in ("epochs", "val_fraction", "patience"):
        assert getattr(cfg.fit, key) == getattr(PETS_PRESET["fit"], key), f"fit.{key}"


def test_readme_mbpo_command_is_the_bench_setting():
    """The skipped MBPO command (whose runs the README reports) is what ``diffctl bench mbrl``
    runs, up to the number of evaluation episodes (which do not change the training)."""
    from diffctl.cli._common import parse
    from diffctl.cli.mbpo import MBPOCommandConfig
    from diffctl.configs.models import MBPO_PRESETS, MBPOConfig

    (block,) = [b for b in blocks("bash") if "diffctl mbpo --env mujoco:HalfCheetah-v5" in b]
    (argv,) = _commands(block)
    cfg = parse(MBPOCommandConfig, argv[1:], prog="diffctl mbpo").config
    env = "mujoco:HalfCheetah-v5"
    assert cfg == MBPOConfig(env=env, **MBPO_PRESETS[env], eval_episodes=1)
