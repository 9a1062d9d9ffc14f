"""Every example runs end to end: with its ``--quick`` budget (CPU smoke tests), except the
Brax ones, which run in full because they are the acceptance checks of the Brax bridge:
``brax_mpc.py`` exits 1 unless the MPC balances ``brax:inverted_pendulum`` for the whole
1,000-step episode, ``brax_ppo_ant.py`` exits 1 unless PPO's returns on ``brax:ant`` improve."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NEEDS = {"brax_mpc.py": "brax", "brax_ppo_ant.py": "brax"}
FULL = {"brax_mpc.py", "brax_ppo_ant.py"}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_example_runs_quick(script, tmp_path):
    if script in NEEDS:
        pytest.importorskip(NEEDS[script])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    args = [] if script in FULL else ["--quick"]
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=880,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.strip(), "an example prints what it found"
