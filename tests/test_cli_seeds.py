"""Same seed, bitwise-same outputs: ``train`` (every algorithm), ``plan`` (every planner),
``irl`` (every method) and ``mbrl``, each run twice in-process through ``diffctl.cli.main`` at
tiny sizes, comparing the bytes of what they write and print (wall times left out). ``collect``
and ``fit`` are covered in ``test_cli_bad_input.py``. Also: ``plan`` and ``irl`` show progress
unless ``--no-progress``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from diffctl.cli import main
from diffctl.cli.collect import CollectConfig, collect

TINY_ONPOLICY = ["--total-steps", "64", "--num-envs", "2", "--num-steps", "16", "--hidden", "8"]
TINY_OFFPOLICY = ["--total-steps", "48", "--num-envs", "1", "--learning-starts", "16",
                  "--batch-size", "8", "--buffer-size", "64", "--hidden", "8"]  # fmt: skip
TRAIN = {
    "reinforce": TINY_ONPOLICY,
    "a2c": TINY_ONPOLICY,
    "ppo": [*TINY_ONPOLICY, "--num-minibatches", "1", "--update-epochs", "1"],
    "ddpg": TINY_OFFPOLICY,
    "td3": TINY_OFFPOLICY,
    "sac": TINY_OFFPOLICY,
    "apg": ["--total-steps", "32", "--num-envs", "2", "--horizon", "8", "--hidden", "8"],
    "es": ["--total-steps", "64", "--num-directions", "2", "--episode-steps", "8", "--hidden", "8"],
    "ars": "--total-steps 64 --num-directions 2 --num-top 1 --episode-steps 8".split(),
}
PLAN = {
    "mpc": ["--mpc.horizon", "4", "--mpc.max-iter", "2"],
    "cem": "--cem.horizon 4 --cem.num-samples 16 --cem.num-elites 4 --cem.iterations 2".split(),
    "icem": (
        "--icem.horizon 4 --icem.num-samples 16 --icem.num-elites 4 --icem.iterations 2"
    ).split(),
    "mppi": ["--mppi.horizon", "4", "--mppi.num-samples", "16"],
    "shooting": ["--shooting.horizon", "4", "--shooting.iterations", "2"],
}
IRL = {
    "maxent": "--maxent.iterations 2 --maxent.num-samples 4 --bc.epochs 2 --hidden 8".split(),
    "margin": ["--margin.iterations", "2", "--margin.num-candidates", "4", "--hidden", "8"],
    "mpc": ["--mpc.iterations", "2", "--mpc.horizon", "3", "--mpc.mpc-iters", "2"],
    "airl": (
        "--adversarial.total-steps 2048 --adversarial.disc-updates 2 "
        "--adversarial.disc-batch 16 --adversarial.hidden 8"
    ).split(),
}
TINY_MBRL = ["--iterations", "1", "--episode-steps", "4", "--num-samples", "8", "--num-elites",
             "2", "--horizon", "2", "--plan-iterations", "1", "--hidden", "8", "--fit.epochs",
             "1"]  # fmt: skip
TINY_MBPO = ["--env", "pendulum", "--hidden", "8", "--num-members", "2", "--ensemble-elites", "2",
             "--total-steps", "30",
             "--random-steps", "10", "--model-train-every", "10", "--rollouts-per-step", "2",
             "--rollout-schedule", "0", "1", "1", "1", "--updates-per-step", "2",
             "--sac.hidden", "8", "--sac.batch-size", "8", "--fit.epochs", "1",
             "--fit.val-fraction", "0", "--episode-steps", "10", "--eval-episodes", "1",
             "--no-progress"]  # fmt: skip


@pytest.fixture(autouse=True)
def _fixed_clock(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # 'created' stamps in file metadata


def _scrub(text: str) -> str:
    """Printed text without wall and solve times (a table's time columns dropped too)."""
    lines, drop = [], None
    for line in text.splitlines():
        cells = line.split()
        timed = [i for i, c in enumerate(cells) if "time" in c or c.endswith("_ms")]
        if timed and "|" not in line and ":" not in line:
            drop = timed  # a table's header
        elif drop is not None and not cells:
            drop = None
        if drop is not None and len(cells) > max(drop):
            line = " ".join(c for i, c in enumerate(cells) if i not in drop)
        lines.append(line)
    text = "\n".join(lines)
    text = re.sub(r"\(\d+(\.\d+)? s\)", "(T s)", text)
    text = re.sub(r"solve time per step [\d.]+ ms", "solve time per step T ms", text)
    return re.sub(r"'(\w*time)': [\d.e+-]+", r"'\1': T", text)


def _json_without_times(path: Path) -> str:
    def strip(v: object) -> object:
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if "time" not in k}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    return json.dumps(strip(json.loads(path.read_text())), sort_keys=True)  # (nan != nan)


def _normalised(v: object) -> object:
    """A loaded checkpoint with its wall times (and the checksum over them) left out and
    every tensor as its dtype, shape and bytes (a bitwise comparison)."""
    if isinstance(v, torch.Tensor):
        t = v.detach().cpu().contiguous()
        return (str(t.dtype), tuple(t.shape), t.reshape(-1).view(torch.uint8).numpy().tobytes())
    if isinstance(v, dict):
        keep = {k: x for k, x in v.items() if "time" not in str(k) and k != "checksum"}
        return {k: _normalised(x) for k, x in keep.items()}
    if isinstance(v, (list, tuple)):
        return [_normalised(x) for x in v]
    if isinstance(v, float) and v != v:
        return "nan"
    return v


def _files(folder: Path, pt_times: bool = False) -> dict[str, object]:
    """What a run wrote into ``folder``, wall times left out. ``pt_times``: ``.pt`` files hold
    wall times (an agent checkpoint's training state, for ``--resume``), compared without."""
    out: dict[str, object] = {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        if p.suffix == ".pt" and pt_times:
            out[p.name] = _normalised(torch.load(p, weights_only=False))
        elif p.suffix == ".json":
            out[p.name] = _json_without_times(p)
        elif p.suffix == ".csv":  # the wall-time column varies
            lines = p.read_text().splitlines()
            head = lines[0].split(",")
            keep = [i for i, h in enumerate(head) if "time" not in h]
            out[p.name] = [[row.split(",")[i] for i in keep] for row in lines]
        elif p.suffix == ".png" and "curve" in p.name:
            out[p.name] = p.stat().st_size > 0  # its x axis may be wall time
        else:
            out[p.name] = p.read_bytes()
    return out


def _twice(
    argv: list[str], folder: Path, capsys, pt_times: bool = False
) -> list[tuple[str, dict[str, object]]]:
    runs = []
    for _ in range(2):
        assert main([*argv, "--overwrite"]) == 0
        printed = _scrub(capsys.readouterr().out)
        runs.append((printed, _files(folder, pt_times)))
    return runs


@pytest.mark.parametrize("algo", list(TRAIN))
def test_train_same_seed_same_bytes(tmp_path, capsys, algo):
    out = tmp_path / "run"
    argv = ["train", algo, "--seed", "3", "--no-progress", *TRAIN[algo], "--out", str(out)]
    a, b = _twice(argv, out, capsys, pt_times=True)
    assert "model.pt" in a[1]
    assert a == b, algo


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("demos")
    cfg = CollectConfig(episodes=2, out=d / "demos.npz", progress=False)
    return collect(cfg).path


@pytest.mark.parametrize("planner", list(PLAN))
def test_plan_same_seed_same_output(tmp_path, capsys, planner):
    plot, js = tmp_path / "plan.png", tmp_path / "plan.json"
    argv = ["plan", "--planner", planner, "--episodes", "2", "--steps", "3", "--seed", "5",
            "--no-progress", *PLAN[planner], "--plot", str(plot), "--json", str(js)]  # fmt: skip
    a, b = _twice(argv, tmp_path, capsys)
    assert "mean return" in a[0] and '"actions"' in a[1]["plan.json"]
    assert a == b, planner


@pytest.mark.parametrize("method", list(IRL))
def test_irl_same_seed_same_bytes(tmp_path, capsys, demos, method):
    out = tmp_path / "out"
    out.mkdir()
    argv = ["irl", "--demos", str(demos), "--method", method, "--seed", "2", "--no-progress",
            *IRL[method], "--out", str(out / "reward.pt")]  # fmt: skip
    a, b = _twice(argv, out, capsys)
    assert "reward.pt" in a[1]
    assert a == b, method


def test_mbrl_same_seed_same_bytes(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    argv = ["mbrl", *TINY_MBRL, "--seed", "4", "--no-progress", "--out", str(out / "m.pt")]
    a, b = _twice(argv, out, capsys)
    assert "m.pt" in a[1]
    assert a == b


def test_mbpo_same_seed_same_bytes(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    argv = ["mbpo", *TINY_MBPO, "--seed", "4", "--out", str(out / "a.pt")]
    a, b = _twice(argv, out, capsys)
    assert "a.pt" in a[1]
    assert a == b


# ----------------------------------------------------------------------------- progress
@pytest.mark.parametrize("command", ["plan", "irl"])
def test_progress_shown_unless_no_progress(tmp_path, capsys, demos, command):
    if command == "plan":
        argv = ["plan", "--episodes", "1", "--steps", "2", *PLAN["mpc"]]
        bar = "plan mpc"
    else:
        argv = ["irl", "--demos", str(demos), "--method", "margin", *IRL["margin"],
                "--out", str(tmp_path / "r.pt"), "--overwrite"]  # fmt: skip
        bar = "irl margin"
    assert main(argv) == 0
    assert bar in capsys.readouterr().err
    assert main([*argv, "--no-progress"]) == 0
    assert bar not in capsys.readouterr().err
