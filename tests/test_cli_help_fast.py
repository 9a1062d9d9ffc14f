"""``diffctl <command> --help`` loads no torch (nor another heavy library), so it answers at once.

Each command's flags come from frozen config dataclasses that live in torch-free modules
(``diffctl.configs``); the commands import torch, the envs and the algorithms only after parsing.
Each ``--help`` runs in a fresh interpreter, which then lists the heavy modules it imported.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from diffctl.bench import BENCHES
from diffctl.cli import COMMANDS
from diffctl.cli.train import ALGO_NAMES

HEAVY = ("torch", "cvxpy", "gymnasium", "mujoco", "jax", "matplotlib")

# run in a fresh interpreter as ``python -c _CHECK ARGS...``: prints the HEAVY modules imported
_CHECK = f"""
import contextlib, io, sys
from diffctl.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    code = main(sys.argv[1:])
assert code == 0, f"exit status {{code}}"
assert "usage:" in out.getvalue(), out.getvalue()
print(" ".join(m for m in {HEAVY!r} if m in sys.modules))
"""


def _run(argv: list[str]) -> list[str]:
    """The ``HEAVY`` modules that ``diffctl *argv`` imported (it must exit 0 with a usage)."""
    res = subprocess.run(
        [sys.executable, "-c", _CHECK, *argv], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


@pytest.mark.parametrize(
    "command",
    COMMANDS,
)
def test_command_help_imports_nothing_heavy(command):
    assert _run([command, "--help"]) == []


@pytest.mark.parametrize("algo", ALGO_NAMES)
def test_train_algo_help_imports_nothing_heavy(algo):
    assert _run(["train", algo, "--help"]) == []
    # with an env the flags' defaults are that env's tuned preset
    assert _run(["train", algo, "--env", "pendulum", "--help"]) == []


@pytest.mark.parametrize("name", BENCHES)
def test_bench_help_imports_nothing_heavy(name):
    # each benchmark parses its flags before it imports torch, its peer or the envs
    assert _run(["bench", name, "--help"]) == []


def test_bench_humanoid_help_names_the_planner_updates():
    # its help lists the updates without importing diffctl.control.predictive (torch)
    from diffctl.bench.humanoid import _UPDATES
    from diffctl.control.predictive import UPDATES

    assert _UPDATES == UPDATES


def test_configs_are_the_ones_the_packages_export():
    import importlib

    from diffctl.configs import agents, control, irl, models

    for module in (agents, control, irl, models):
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, type) and name.endswith("Config"):
                package = module.__name__.replace("diffctl.configs.", "diffctl.")
                if name in ("MBRLConfig", "MBPOConfig"):  # modules imported on their own
                    package = f"diffctl.models.{name[:4].lower()}"
                if module is not agents:
                    assert getattr(importlib.import_module(package), name) is value, name
    from diffctl.agents import ALGORITHMS

    assert tuple(agents.CONFIGS) == tuple(ALGORITHMS) == ALGO_NAMES
    for algo, (cls, presets) in agents.CONFIGS.items():
        module = importlib.import_module(f"diffctl.agents.{ALGORITHMS[algo]}")
        assert module.CONFIG is cls and module.PRESETS is presets, algo
        for env in (*presets, "no-such-env"):
            assert agents.default_config(algo, env) == module.default_config(env), (algo, env)
