"""Every ``diffctl`` subcommand on bad input: one line naming the argument, a non-zero exit
(2 for usage, 1 at runtime), no traceback, no file changed, no temp file left. Then: SIGKILL
in the middle of each writing command leaves the target as it was and the next run leaves no
stray file (real subprocesses); SIGTERM removes the temp file at once; the same seed gives
bitwise the same dataset and the same model of every kind; ``diffctl --help`` and the help
and usage errors of collect, train, eval and bench import no torch.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from diffctl.cli import COMMANDS, HELP_LINES, main
from diffctl.cli.collect import CollectConfig, collect
from diffctl.data import load_dataset, save_dataset
from diffctl.models import LinearModel, MLPDynamics, save_model

TINY_FIT = ["--epochs", "2", "--eval-horizon", "5", "--no-progress"]
TINY_PPO = ["--total-steps", "64", "--num-envs", "2", "--num-steps", "32", "--num-minibatches",
            "1", "--update-epochs", "1", "--hidden", "8", "--no-progress"]  # fmt: skip
TINY_MPPI = ["--planner", "mppi", "--mppi.horizon", "3", "--mppi.num-samples", "8",
             "--episodes", "1", "--steps", "2"]  # fmt: skip
TINY_MBRL = ["--iterations", "1", "--episode-steps", "4", "--num-samples", "8", "--num-elites",
             "2", "--horizon", "2", "--plan-iterations", "1", "--hidden", "8", "--fit.epochs",
             "1", "--no-progress"]  # fmt: skip
TINY_MBPO = ["--env", "pendulum", "--hidden", "8", "--num-members", "2", "--ensemble-elites",
             "2", "--total-steps", "20", "--random-steps", "10", "--model-train-every", "10",
             "--rollouts-per-step", "2", "--rollout-schedule", "0", "1", "1", "1",
             "--model-buffer-steps", "10", "--updates-per-step", "1", "--sac.hidden", "8",
             "--sac.batch-size", "8", "--fit.epochs", "1", "--fit.val-fraction", "0",
             "--episode-steps", "10", "--no-progress"]  # fmt: skip
CUDA = torch.cuda.is_available()


# ----------------------------------------------------------------------------- files
@pytest.fixture(scope="module")
def f(tmp_path_factory) -> dict[str, Path]:
    """One folder of good and bad input files, shared by every case (no case may change it)."""
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("inputs")
    p = {name: d / name for name in ("missing.npz", "missing.pt", "nodir")}
    p["dir"] = d / "afolder"
    p["dir"].mkdir()
    p["ds"] = collect(CollectConfig(episodes=4, out=d / "ds.npz", progress=False)).path
    traj, _ = load_dataset(p["ds"])  # the same data with no env named in its metadata
    p["ds_nometa"] = save_dataset(d / "nometa.npz", traj, {})
    p["ds_discrete"] = collect(
        CollectConfig(env="cartpole", episodes=1, out=d / "cp.npz", progress=False)
    ).path
    p["model"] = d / "model.pt"
    save_model(p["model"], LinearModel(2, 1), {"env": "pendulum", "source": "states"})
    p["model_other_env"] = d / "cart_model.pt"
    save_model(p["model_other_env"], LinearModel(4, 1), {"env": "cartpole-continuous"})
    p["model_obs"] = d / "obs_model.pt"
    save_model(p["model_obs"], LinearModel(3, 1), {"env": "pendulum", "source": "obs"})
    big = d / "big_model.pt"  # weights large enough to flip 2 KB inside them
    save_model(big, MLPDynamics(2, 1, hidden=(128, 128)), {"env": "pendulum", "source": "states"})
    p["model_flipped"] = _flipped(big, d / "flipped_model.pt")
    from diffctl.irl import RewardConfig, RewardModel

    big_reward = d / "big_reward.pt"
    cfg = RewardConfig(state_dim=2, act_dim=1, use_action=True, hidden=(128, 128), env="pendulum")
    RewardModel(cfg).save(big_reward)
    p["reward_flipped"] = _flipped(big_reward, d / "flipped_reward.pt")
    p["reward_other_env"] = d / "cart_reward.pt"
    RewardModel(RewardConfig(state_dim=4, env="cartpole-continuous")).save(p["reward_other_env"])
    assert main(["train", "ppo", "--env", "pendulum", *TINY_PPO, "--out", str(d / "run")]) == 0
    p["run"] = d / "run"
    p["agent"] = d / "run" / "model.pt"
    p["agent_flipped"] = _flipped(p["agent"], d / "flipped_agent.pt")
    p["empty"] = d / "empty.pt"
    p["empty"].write_bytes(b"")
    p["random"] = d / "random.bin"
    p["random"].write_bytes(random.Random(0).randbytes(4096))
    for key in ("ds", "model", "agent"):
        data = p[key].read_bytes()
        p[f"{key}_truncated"] = d / f"truncated_{p[key].name}"
        p[f"{key}_truncated"].write_bytes(data[: len(data) // 2])
    p["existing_png"] = d / "existing.png"
    p["existing_png"].write_bytes(b"not yet a plot")
    p["existing_json"] = d / "existing.json"
    p["existing_json"].write_text("{}")
    (d / "mydata.json").write_text('{"mine": 1}')  # fit --out mydata.pt must not replace it
    p["mydata"] = d / "mydata.pt"
    (d / "shaped.shaping.pt").write_bytes(b"someone's file")  # irl airl --out shaped.pt
    p["shaped"] = d / "shaped.pt"
    p["results"] = d / "results_dir"
    p["results"].mkdir()
    (p["results"] / "results.json").write_text("[]")
    p["new"] = d / "new_output"  # never created by a case
    p["folder_out"] = str(d / "newdir") + "/"
    return p


def _flipped(src: Path, dst: Path, n: int = 2048) -> Path:
    data = bytearray(src.read_bytes())
    start = len(data) // 2 - n // 2
    for i in range(start, start + n):
        data[i] ^= 0xFF
    dst.write_bytes(bytes(data))
    return dst


def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[os.path.relpath(os.path.join(dirpath, name), root)] = "dir"
        for name in filenames:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


# ----------------------------------------------------------------------------- cases
# (id, argv with {key} for a file of the fixture, exit status, text the error line must name)
CASES = [
    # collect
    ("collect-episodes-0", ["collect", "--episodes", "0", "--out", "{new}.npz"], 2, "episodes"),
    ("collect-episodes-word", ["collect", "--episodes", "abc"], 2, "--episodes"),
    ("collect-episodes-neg", ["collect", "--episodes", "-3", "--out", "{new}.npz"], 2, "episodes"),
    ("collect-num-envs-0", ["collect", "--num-envs", "0", "--out", "{new}.npz"], 2, "num_envs"),
    ("collect-seed-word", ["collect", "--seed", "x"], 2, "--seed"),
    ("collect-unknown-flag", ["collect", "--bogus"], 2, "--bogus"),
    ("collect-env", ["collect", "--env", "nope", "--out", "{new}.npz"], 2, "--env"),
    ("collect-policy", ["collect", "--policy", "nope", "--out", "{new}.npz"], 2, "policy"),
    ("collect-policy-args", ["collect", "--policy-args", "x", "--out", "{new}.npz"], 2,
     "policy_args"),
    ("collect-policy-args-zero", ["collect", "--policy", "zero", "--policy-args", "a=1",
                                  "--out", "{new}.npz"], 2, "--policy-args"),
    ("collect-out-exists", ["collect", "--episodes", "1", "--out", "{ds}"], 2, "--out"),
    ("collect-out-folder-slash", ["collect", "--out", "{folder_out}"], 2, "--out"),
    ("collect-out-is-folder", ["collect", "--out", "{dir}"], 2, "--out"),
    ("collect-out-no-folder", ["collect", "--out", "{nodir}/x.npz"], 2, "--out"),
    ("collect-out-unwritable", ["collect", "--out", "/sys/diffctl-x.npz"], 2, "--out"),
    ("collect-device-word", ["collect", "--device", "nonsense", "--out", "{new}.npz"], 2,
     "--device"),
    # fit
    ("fit-data-missing", ["fit", "--data", "{missing.npz}", "--out", "{new}.pt"], 2, "--data"),
    ("fit-data-folder", ["fit", "--data", "{dir}", "--out", "{new}.pt"], 2, "--data"),
    ("fit-data-empty", ["fit", "--data", "{empty}", "--out", "{new}.pt"], 1, "--data"),
    ("fit-data-random", ["fit", "--data", "{random}", "--out", "{new}.pt"], 1, "--data"),
    ("fit-data-truncated", ["fit", "--data", "{ds_truncated}", "--out", "{new}.pt"], 1,
     "--data"),
    ("fit-data-is-model", ["fit", "--data", "{model}", "--out", "{new}.pt"], 1, "--data"),
    ("fit-data-discrete", ["fit", "--data", "{ds_discrete}", "--out", "{new}.pt"], 1, "--data"),
    ("fit-out-is-data", ["fit", "--data", "{ds}", "--out", "{ds}", "--overwrite"], 2, "--out"),
    ("fit-out-exists", ["fit", "--data", "{ds}", "--out", "{model}"], 2, "--out"),
    ("fit-out-json-beside", ["fit", "--data", "{ds}", "--out", "{mydata}"], 2, "--out"),
    ("fit-out-json-is-out", ["fit", "--data", "{ds}", "--out", "{new}.json"], 2, "--out"),
    ("fit-out-unwritable", ["fit", "--data", "{ds}", "--out", "/sys/m.pt"], 2, "--out"),
    ("fit-epochs-0", ["fit", "--data", "{ds}", "--epochs", "0", "--out", "{new}.pt"], 2,
     "epochs"),
    ("fit-model-name", ["fit", "--data", "{ds}", "--model", "transformer"], 2, "--model"),
    ("fit-env-name", ["fit", "--data", "{ds}", "--env", "nope", "--out", "{new}.pt"], 2,
     "--env"),
    ("fit-env-other", ["fit", "--data", "{ds}", "--env", "linear", "--out", "{new}.pt"], 1,
     "--env"),
    ("fit-env-dims", ["fit", "--data", "{ds_nometa}", "--model", "greybox", "--env",
                      "cartpole-continuous", "--out", "{new}.pt"], 1, "--env"),
    ("fit-params", ["fit", "--data", "{ds}", "--model", "greybox", "--params", "nope",
                    "--out", "{new}.pt", *TINY_FIT], 2, "--params"),
    ("fit-val-fraction", ["fit", "--data", "{ds}", "--val-fraction", "2", "--out", "{new}.pt"],
     2, "val_fraction"),
    ("fit-no-data", ["fit"], 2, "--data"),
    ("fit-data-no-value", ["fit", "--data"], 2, "--data"),
    ("fit-source-choice", ["fit", "--data", "{ds}", "--source", "nope"], 2, "--source"),
    ("fit-unused-params", ["fit", "--data", "{ds}", "--params", "m", "--out", "{new}.pt"], 2,
     "--params"),
    ("fit-unused-hidden", ["fit", "--data", "{ds}", "--model", "linear", "--hidden", "4",
                           "--out", "{new}.pt"], 2, "--hidden"),
    ("fit-unused-members", ["fit", "--data", "{ds}", "--num-members", "3", "--out",
                            "{new}.pt"], 2, "--num-members"),
    ("fit-hidden-0", ["fit", "--data", "{ds}", "--hidden", "0", "--out", "{new}.pt"], 2,
     "hidden"),
    # plan
    ("plan-model-missing", ["plan", "--model", "{missing.pt}"], 2, "--model"),
    ("plan-model-empty", ["plan", "--model", "{empty}"], 1, "--model"),
    ("plan-model-random", ["plan", "--model", "{random}"], 1, "--model"),
    ("plan-model-truncated", ["plan", "--model", "{model_truncated}"], 1, "--model"),
    ("plan-model-flipped", ["plan", "--model", "{model_flipped}"], 1, "--model"),
    ("plan-model-is-dataset", ["plan", "--model", "{ds}"], 1, "--model"),
    ("plan-model-is-agent", ["plan", "--model", "{agent}"], 1, "--model"),
    ("plan-model-other-env", ["plan", "--model", "{model_other_env}"], 1, "--model"),
    ("plan-model-dims", ["plan", "--env", "cartpole-continuous", "--model", "{model}"], 1,
     "--model"),
    ("plan-model-obs", ["plan", "--model", "{model_obs}"], 1, "--model"),
    ("plan-reward-missing", ["plan", "--reward", "{missing.pt}"], 2, "--reward"),
    ("plan-reward-random", ["plan", "--reward", "{random}"], 1, "--reward"),
    ("plan-reward-is-model", ["plan", "--reward", "{model}"], 1, "--reward"),
    ("plan-reward-flipped", ["plan", "--reward", "{reward_flipped}"], 1, "--reward"),
    ("plan-reward-other-env", ["plan", "--reward", "{reward_other_env}"], 1, "--reward"),
    ("plan-episodes-0", ["plan", "--episodes", "0"], 2, "episodes"),
    ("plan-steps-0", ["plan", "--steps", "0"], 2, "steps"),
    ("plan-planner", ["plan", "--planner", "nope"], 2, "--planner"),
    ("plan-env-name", ["plan", "--env", "nope"], 2, "--env"),
    ("plan-env-discrete", ["plan", "--env", "cartpole"], 1, "--env"),
    ("plan-u-lower-outside", ["plan", "--mpc.u-lower", "5"], 2, "--mpc.u-lower"),
    ("plan-u-lower-count", ["plan", "--mpc.u-lower", "0", "0", "0"], 2, "--mpc.u-lower"),
    ("plan-u-bounds-crossed", ["plan", "--mpc.u-lower", "1", "--mpc.u-upper", "0"], 2,
     "u_lower"),
    ("plan-unused-planner-flag", ["plan", "--mppi.num-samples", "10"], 2,
     "--mppi.num-samples"),
    ("plan-unused-mpc-bounds", ["plan", "--planner", "cem", "--mpc.u-lower", "0"], 2,
     "--mpc.u-lower"),
    ("plan-elites", ["plan", "--planner", "cem", "--cem.num-elites", "900"], 2, "num_elites"),
    ("plan-plot-exists", ["plan", *TINY_MPPI, "--plot", "{existing_png}"], 2, "--plot"),
    ("plan-plot-is-model", ["plan", *TINY_MPPI, "--model", "{model}", "--plot", "{model}",
                            "--overwrite"], 2, "--plot"),
    ("plan-plot-unwritable", ["plan", *TINY_MPPI, "--plot", "/sys/p.png"], 2, "--plot"),
    ("plan-plot-under-file", ["plan", *TINY_MPPI, "--plot", "{ds}/sub/p.png"], 2, "--plot"),
    ("plan-plot-unwritable-sub", ["plan", *TINY_MPPI, "--plot", "/sys/sub/p.png"], 2, "--plot"),
    # mbrl
    ("mbrl-iterations-0", ["mbrl", "--iterations", "0"], 2, "iterations"),
    ("mbrl-env-name", ["mbrl", "--env", "nope"], 2, "--env"),
    ("mbrl-env-discrete", ["mbrl", "--env", "cartpole", *TINY_MBRL], 1, "env"),
    ("mbrl-model-name", ["mbrl", "--model", "nope"], 2, "--model"),
    ("mbrl-unused-members", ["mbrl", "--num-members", "3"], 2, "--num-members"),
    ("mbrl-unused-elites", ["mbrl", "--planner", "mppi", "--num-elites", "3"], 2,
     "--num-elites"),
    ("mbrl-out-exists", ["mbrl", "--out", "{model}"], 2, "--out"),
    ("mbrl-out-unwritable", ["mbrl", "--out", "/sys/m.pt"], 2, "--out"),
    # mbpo
    ("mbpo-total-steps-0", ["mbpo", "--total-steps", "0"], 2, "total_steps"),
    ("mbpo-random-steps-all", ["mbpo", "--random-steps", "20000"], 2, "random_steps"),
    ("mbpo-schedule", ["mbpo", "--rollout-schedule", "1", "0", "1", "1"], 2, "rollout_schedule"),
    ("mbpo-env-name", ["mbpo", "--env", "nope"], 2, "--env"),
    ("mbpo-env-discrete", ["mbpo", *TINY_MBPO, "--env", "cartpole"], 1, "env"),
    ("mbpo-unused-sac-steps", ["mbpo", "--sac.total-steps", "5"], 2, "--sac.total-steps"),
    ("mbpo-out-exists", ["mbpo", "--out", "{model}"], 2, "--out"),
    ("mbpo-out-unwritable", ["mbpo", "--out", "/sys/m.pt"], 2, "--out"),
    ("mbpo-checkpoint-exists", ["mbpo", "--checkpoint", "{model}"], 2, "--checkpoint"),
    ("mbpo-resume-missing", ["mbpo", *TINY_MBPO, "--resume", "{missing.pt}"], 2, "--resume"),
    ("mbpo-resume-agent", ["mbpo", *TINY_MBPO, "--resume", "{agent}"], 2, "--resume"),
    ("mbpo-resume-flipped", ["mbpo", *TINY_MBPO, "--resume", "{agent_flipped}"], 2,
     "--resume"),
    ("mbpo-resume-is-checkpoint", ["mbpo", *TINY_MBPO, "--resume", "{agent}", "--checkpoint",
                                   "{agent}"], 2, "--checkpoint"),
    # train
    ("train-algo", ["train", "nope"], 2, "algo"),
    ("train-env-name", ["train", "ppo", "--env", "nope", "--out", "{new}"], 2, "--env"),
    ("train-flag-word", ["train", "ppo", "--total-steps", "x"], 2, "--total-steps"),
    ("train-unknown-flag", ["train", "ppo", "--bogus", "1", "--out", "{new}"], 2, "--bogus"),
    ("train-threads-0", ["train", "ppo", "--threads", "0", "--out", "{new}"], 2, "--threads"),
    ("train-ckpt-every", ["train", "ppo", "--checkpoint-every", "-1", "--out", "{new}"], 2,
     "--checkpoint-every"),
    ("train-resume-missing", ["train", "ppo", "--env", "pendulum", "--resume", "{missing.pt}",
                              "--out", "{new}"], 2, "--resume"),
    ("train-resume-random", ["train", "ppo", "--env", "pendulum", "--resume", "{random}",
                             "--out", "{new}"], 1, "--resume"),
    ("train-resume-dataset", ["train", "ppo", "--env", "pendulum", "--resume", "{ds}",
                              "--out", "{new}"], 1, "--resume"),
    ("train-resume-model", ["train", "ppo", "--env", "pendulum", "--resume", "{model}",
                            "--out", "{new}"], 1, "--resume"),
    ("train-resume-truncated", ["train", "ppo", "--env", "pendulum", "--resume",
                                "{agent_truncated}", "--out", "{new}"], 1, "--resume"),
    ("train-resume-flipped", ["train", "ppo", "--env", "pendulum", "--resume",
                              "{agent_flipped}", "--out", "{new}"], 1, "--resume"),
    ("train-resume-other-algo", ["train", "sac", "--env", "pendulum", "--resume", "{agent}",
                                 "--out", "{new}"], 2, "--resume"),
    ("train-resume-other-env", ["train", "ppo", "--env", "cartpole", "--resume", "{agent}",
                                "--out", "{new}"], 2, "--resume"),
    ("train-resume-is-out", ["train", "ppo", "--env", "pendulum", "--resume", "{agent}",
                             "--out", "{run}", "--overwrite"], 2, "--out"),
    ("train-out-exists", ["train", "ppo", "--env", "pendulum", "--out", "{run}"], 2, "--out"),
    ("train-out-is-file", ["train", "ppo", "--out", "{ds}"], 2, "--out"),
    ("train-out-unwritable", ["train", "ppo", "--out", "/sys/diffctl-run"], 2, "--out"),
    ("train-device-word", ["train", "ppo", "--device", "nonsense", "--out", "{new}"], 2,
     "--device"),
    # eval
    ("eval-no-model", ["eval"], 2, "model"),
    ("eval-missing", ["eval", "{missing.pt}"], 2, "MODEL"),
    ("eval-folder", ["eval", "{dir}"], 2, "MODEL"),
    ("eval-empty", ["eval", "{empty}"], 1, "MODEL"),
    ("eval-random", ["eval", "{random}"], 1, "MODEL"),
    ("eval-truncated", ["eval", "{agent_truncated}"], 1, "MODEL"),
    ("eval-flipped", ["eval", "{agent_flipped}"], 1, "MODEL"),
    ("eval-dataset", ["eval", "{ds}"], 1, "MODEL"),
    ("eval-dynamics-model", ["eval", "{model}"], 1, "MODEL"),
    ("eval-other-env", ["eval", "{agent}", "--env", "cartpole"], 2, "--env"),
    ("eval-env-name", ["eval", "{agent}", "--env", "nope"], 2, "--env"),
    ("eval-episodes-0", ["eval", "{agent}", "--episodes", "0"], 2, "--episodes"),
    ("eval-episodes-word", ["eval", "{agent}", "--episodes", "x"], 2, "--episodes"),
    ("eval-json-is-model", ["eval", "{agent}", "--json", "{agent}", "--overwrite"], 2,
     "--json"),
    ("eval-json-exists", ["eval", "{agent}", "--json", "{existing_json}"], 2, "--json"),
    ("eval-json-unwritable", ["eval", "{agent}", "--json", "/sys/e.json"], 2, "--json"),
    ("eval-device-word", ["eval", "{agent}", "--device", "nonsense"], 2, "--device"),
    # irl
    ("irl-demos-missing", ["irl", "--demos", "{missing.npz}", "--out", "{new}.pt"], 2,
     "--demos"),
    ("irl-demos-empty", ["irl", "--demos", "{empty}", "--out", "{new}.pt"], 1, "--demos"),
    ("irl-demos-random", ["irl", "--demos", "{random}", "--out", "{new}.pt"], 1, "--demos"),
    ("irl-demos-truncated", ["irl", "--demos", "{ds_truncated}", "--out", "{new}.pt"], 1,
     "--demos"),
    ("irl-demos-is-model", ["irl", "--demos", "{model}", "--out", "{new}.pt"], 1, "--demos"),
    ("irl-demos-other-env", ["irl", "--demos", "{ds}", "--env", "cartpole", "--out",
                             "{new}.pt"], 1, "--env"),
    ("irl-env-other", ["irl", "--demos", "{ds}", "--env", "linear", "--out", "{new}.pt"], 1,
     "--env"),
    ("irl-env-name", ["irl", "--demos", "{ds}", "--env", "nope", "--out", "{new}.pt"], 2,
     "--env"),
    ("irl-unused-method-flag", ["irl", "--demos", "{ds}", "--method", "airl",
                                "--maxent.iterations", "3", "--out", "{new}.pt"], 2,
     "--maxent.iterations"),
    ("irl-method", ["irl", "--demos", "{ds}", "--method", "nope"], 2, "--method"),
    ("irl-out-is-demos", ["irl", "--demos", "{ds}", "--out", "{ds}", "--overwrite"], 2, "--out"),
    ("irl-out-exists", ["irl", "--demos", "{ds}", "--out", "{model}"], 2, "--out"),
    ("irl-shaping-exists", ["irl", "--demos", "{ds}", "--method", "airl", "--out", "{shaped}"],
     2, "--out"),
    ("irl-out-unwritable", ["irl", "--demos", "{ds}", "--out", "/sys/r.pt"], 2, "--out"),
    # compare
    ("compare-env", ["compare", "--env", "nope", "--out", "{new}"], 2, "--env"),
    ("compare-methods", ["compare", "--methods", "nope", "--out", "{new}"], 2, "methods"),
    ("compare-budget-word", ["compare", "--budget", "x"], 2, "--budget"),
    ("compare-out-exists", ["compare", "--out", "{results}"], 2, "--out"),
    ("compare-out-is-file", ["compare", "--out", "{ds}"], 2, "--out"),
    ("compare-device-word", ["compare", "--device", "nonsense", "--out", "{new}"], 2,
     "--device"),
    # bench and the command itself
    ("bench-name", ["bench", "nope"], 2, "NAME"),
    ("bench-all-args", ["bench", "all", "--bogus"], 2, "all"),
    ("bench-json-exists", ["bench", "envs", "--json", "{existing_json}"], 2, "--json"),
    ("bench-json-missing-path", ["bench", "envs", "--json"], 2, "--json"),
    ("bench-own-flag", ["bench", "envs", "--bogus"], 2, "--bogus"),
    # more files of the wrong kind or for another env, more numbers and names, more outputs
    ("fit-data-is-agent", ["fit", "--data", "{agent}", "--out", "{new}.pt"], 1, "--data"),
    ("fit-data-is-reward", ["fit", "--data", "{reward_other_env}", "--out", "{new}.pt"], 1,
     "--data"),
    ("fit-data-is-json", ["fit", "--data", "{existing_json}", "--out", "{new}.pt"], 1, "--data"),
    ("fit-out-folder-slash", ["fit", "--data", "{ds}", "--out", "{folder_out}"], 2, "--out"),
    ("fit-out-is-folder", ["fit", "--data", "{ds}", "--out", "{dir}"], 2, "--out"),
    ("fit-seed-word", ["fit", "--data", "{ds}", "--seed", "x"], 2, "--seed"),
    ("fit-model-empty", ["fit", "--data", "{ds}", "--model", ""], 2, "--model"),
    ("plan-model-is-reward", ["plan", "--model", "{reward_other_env}"], 1, "--model"),
    ("plan-reward-is-agent", ["plan", "--reward", "{agent}"], 1, "--reward"),
    ("plan-reward-empty", ["plan", "--reward", "{empty}"], 1, "--reward"),
    ("plan-reward-folder", ["plan", "--reward", "{dir}"], 2, "--reward"),
    ("plan-episodes-neg", ["plan", "--episodes", "-1"], 2, "episodes"),
    ("plan-steps-word", ["plan", "--steps", "x"], 2, "--steps"),
    ("plan-planner-empty", ["plan", "--planner", ""], 2, "--planner"),
    ("plan-plot-folder-slash", ["plan", *TINY_MPPI, "--plot", "{folder_out}"], 2, "--plot"),
    ("plan-json-exists", ["plan", *TINY_MPPI, "--json", "{existing_json}"], 2, "--json"),
    ("plan-json-folder-slash", ["plan", *TINY_MPPI, "--json", "{folder_out}"], 2, "--json"),
    ("plan-json-is-folder", ["plan", *TINY_MPPI, "--json", "{dir}"], 2, "--json"),
    ("plan-json-unwritable", ["plan", *TINY_MPPI, "--json", "/sys/p.json"], 2, "--json"),
    ("plan-json-is-model", ["plan", *TINY_MPPI, "--model", "{model}", "--json", "{model}",
                            "--overwrite"], 2, "--json"),  # fmt: skip
    ("mbrl-iterations-word", ["mbrl", "--iterations", "x"], 2, "--iterations"),
    ("mbrl-out-folder-slash", ["mbrl", "--out", "{folder_out}"], 2, "--out"),
    ("mbrl-out-is-folder", ["mbrl", "--out", "{dir}"], 2, "--out"),
    ("mbrl-out-no-folder", ["mbrl", "--out", "{nodir}/m.pt"], 2, "--out"),
    ("mbrl-env-options", ["mbrl", "--env-options", "nope=1"], 2, "--env"),
    ("train-resume-empty", ["train", "ppo", "--env", "pendulum", "--resume", "{empty}",
                            "--out", "{new}"], 1, "--resume"),
    ("train-resume-reward", ["train", "ppo", "--env", "pendulum", "--resume",
                             "{reward_other_env}", "--out", "{new}"], 1, "--resume"),
    ("train-resume-folder", ["train", "ppo", "--env", "pendulum", "--resume", "{dir}",
                             "--out", "{new}"], 2, "--resume"),
    ("train-seed-word", ["train", "ppo", "--seed", "x"], 2, "--seed"),
    ("train-out-no-parent-folder", ["train", "ppo", "--out", "{ds}/run"], 2, "--out"),
    ("eval-reward", ["eval", "{reward_other_env}"], 1, "MODEL"),
    ("eval-json-file", ["eval", "{existing_json}"], 1, "MODEL"),
    ("eval-seed-word", ["eval", "{agent}", "--seed", "x"], 2, "--seed"),
    ("eval-json-folder-slash", ["eval", "{agent}", "--json", "{folder_out}"], 2, "--json"),
    ("eval-json-is-folder", ["eval", "{agent}", "--json", "{dir}"], 2, "--json"),
    ("irl-demos-folder", ["irl", "--demos", "{dir}", "--out", "{new}.pt"], 2, "--demos"),
    ("irl-demos-is-agent", ["irl", "--demos", "{agent}", "--out", "{new}.pt"], 1, "--demos"),
    ("irl-out-folder-slash", ["irl", "--demos", "{ds}", "--out", "{folder_out}"], 2, "--out"),
    ("irl-out-is-folder", ["irl", "--demos", "{ds}", "--out", "{dir}"], 2, "--out"),
    ("irl-seed-word", ["irl", "--demos", "{ds}", "--seed", "x"], 2, "--seed"),
    ("irl-method-empty", ["irl", "--demos", "{ds}", "--method", ""], 2, "--method"),
    ("collect-ckpt-missing", ["collect", "--policy", "ppo-checkpoint", "--policy-args",
                              "path={missing.pt}", "--out", "{new}.npz"], 2, "--policy-args"),
    ("collect-ckpt-dataset", ["collect", "--policy", "ppo-checkpoint", "--policy-args",
                              "path={ds}", "--out", "{new}.npz"], 2, "--policy-args"),
    ("collect-ckpt-model", ["collect", "--policy", "ppo-checkpoint", "--policy-args",
                            "path={model}", "--out", "{new}.npz"], 2, "--policy-args"),
    ("collect-ckpt-other-env", ["collect", "--env", "cartpole-continuous", "--policy",
                                "ppo-checkpoint", "--policy-args", "path={agent}", "--out",
                                "{new}.npz"], 2, "--policy-args"),
    ("collect-ckpt-is-out", ["collect", "--policy", "ppo-checkpoint", "--policy-args",
                             "path={agent}", "--out", "{agent}", "--overwrite"], 2, "--out"),
    ("compare-out-unwritable", ["compare", "--out", "/sys/diffctl-cmp"], 2, "--out"),
    ("compare-out-under-file", ["compare", "--out", "{ds}/cmp"], 2, "--out"),
    ("compare-episodes-word", ["compare", "--episodes", "x"], 2, "--episodes"),
]  # fmt: skip
if not CUDA:
    CASES += [
        ("collect-cuda", ["collect", "--device", "cuda", "--out", "{new}.npz"], 2, "--device"),
        ("train-cuda", ["train", "ppo", "--device", "cuda", "--out", "{new}"], 2, "--device"),
        (
            "irl-cuda",
            ["irl", "--demos", "{ds}", "--device", "cuda", "--out", "{new}.pt"],
            2,
            "--device",
        ),
        ("eval-cuda", ["eval", "{agent}", "--device", "cuda"], 2, "--device"),
    ]


def _fill(argv: list[str], f: dict[str, Path]) -> list[str]:
    out = []
    for a in argv:
        for key, value in f.items():
            a = a.replace("{" + key + "}", str(value))
        out.append(a)
    return out


@pytest.mark.parametrize(
    ("argv", "code", "names"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_one_line_and_changes_nothing(f, capsys, monkeypatch, argv, code, names):
    root = f["ds"].parent
    monkeypatch.chdir(root)  # a default output (logs.npz, model.pt, runs/...) would land here
    before = _snapshot(root)
    rc = main(_fill(argv, f))
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == code, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"diffctl {argv[0]}: error: "), err
    assert names in lines[0], err
    assert "Traceback" not in err
    assert _snapshot(root) == before, "a file changed"


def test_cases_cover_every_subcommand():
    assert {c[1][0] for c in CASES} == set(COMMANDS)
    assert len(CASES) >= 160


def test_unknown_command_and_debug(f, capsys):
    assert main(["nope"]) == 2
    assert capsys.readouterr().err.startswith("diffctl: error: unknown command 'nope'")
    assert main(["eval", str(f["random"]), "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("diffctl eval: error:")


def test_overwrite_replaces_and_wrote_names_every_file(f, tmp_path, capsys):
    out = tmp_path / "m.pt"
    argv = ["fit", "--data", str(f["ds"]), "--model", "linear", "--out", str(out), *TINY_FIT]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        f"wrote {out}, {out.with_suffix('.json')}, {out.with_suffix('.png')}"
    )
    first = out.read_bytes()
    assert main(argv) == 2  # exists
    assert out.read_bytes() == first
    assert main([*argv, "--overwrite", "--seed", "3"]) == 0
    assert out.read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.png", "m.pt"]


# ----------------------------------------------------------------------------- help
def test_help_lines_equal_the_modules_help():
    for name, module in COMMANDS.items():
        help_line = importlib.import_module(f"diffctl.cli.{module}").HELP
        if name == "bench":
            assert help_line.startswith(HELP_LINES[name])
        else:
            assert help_line == HELP_LINES[name], name


def test_help_and_usage_errors_import_no_torch():
    from diffctl.agents import ALGORITHMS
    from diffctl.cli.train import ALGO_NAMES

    assert tuple(ALGORITHMS) == ALGO_NAMES
    code = (
        "import sys; from diffctl.cli import main; "
        "assert main(['--help']) == 0 and main(['nope']) == 2; "
        "assert main(['train', '--help']) == 0 and main(['train', 'nope']) == 2; "
        "assert main(['eval', '--help']) == 0 and main(['eval']) == 2; "
        "assert main(['bench', '--help']) == 0; "
        "assert main(['collect', '--help']) == 0 and main(['collect', '--episodes', '0']) == 2; "
        "assert main(['collect', '--bogus']) == 2 and main(['collect', '--policy', 'x']) == 2; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_exit_codes_of_the_real_command(f):
    def run(*argv):
        return subprocess.run(
            [sys.executable, "-m", "diffctl.cli", *argv], capture_output=True, text=True
        )

    usage = run("eval", str(f["agent"]), "--episodes", "0")
    runtime = run("eval", str(f["random"]))
    for res, code in ((usage, 2), (runtime, 1)):
        assert res.returncode == code, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


# ----------------------------------------------------------------------------- killed writes
_HANG = """
import os, sys, time
marker = sys.argv[1]
def hang(fd):  # the first atomic write hangs after writing, before its rename
    open(marker, "w").close()
    time.sleep(600)
os.fsync = hang
from diffctl.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _writers(f: dict[str, Path], d: Path) -> dict[str, tuple[list[str], Path]]:
    """command -> (argv writing over an existing target with --overwrite, the target)."""
    run = d / "run"
    return {
        "collect": (["collect", "--episodes", "1", "--no-progress", "--out", str(d / "c.npz")],
                    d / "c.npz"),
        "fit": (["fit", "--data", str(f["ds"]), "--model", "linear", "--no-plot", *TINY_FIT,
                 "--out", str(d / "m.pt")], d / "m.pt"),
        "plan": (["plan", *TINY_MPPI, "--plot", str(d / "p.png")], d / "p.png"),
        "mbrl": (["mbrl", *TINY_MBRL, "--out", str(d / "mb.pt")], d / "mb.pt"),
        "mbpo": (["mbpo", *TINY_MBPO, "--out", str(d / "po.pt")], d / "po.pt"),
        "mbpo-checkpoint": (["mbpo", *TINY_MBPO, "--checkpoint", str(d / "po.ckpt")],
                            d / "po.ckpt"),
        "train": (["train", "ppo", "--env", "pendulum", *TINY_PPO, "--out", str(run)],
                  run / "model.pt"),
        "eval": (["eval", str(f["agent"]), "--episodes", "1", "--json", str(d / "e.json")],
                 d / "e.json"),
    }  # fmt: skip


def _strays(d: Path) -> list[str]:
    return [p.name for p in d.rglob("*") if p.name.endswith(".tmp")]


def test_sigkill_mid_write_keeps_the_target_and_next_run_cleans_up(f, tmp_path):
    writers = _writers(f, tmp_path)
    (tmp_path / "run").mkdir()
    procs = {}
    for name, (argv, target) in writers.items():
        target.write_bytes(f"the user's {name} file".encode())
        marker = tmp_path / f"{name}.writing"
        procs[name] = (
            subprocess.Popen(
                [sys.executable, "-c", _HANG, str(marker), *argv, "--overwrite"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            ),
            marker,
        )
        # one at a time: the machine may have few cores
        proc, marker = procs[name]
        deadline = time.monotonic() + 120
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), f"{name} never reached its write: {proc.stderr.read()!r}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert target.read_bytes() == f"the user's {name} file".encode(), name
        assert any(s.startswith(f".{target.name}.{proc.pid}.") for s in _strays(target.parent))
    for name, (argv, target) in writers.items():  # the next run removes the dead one's temp
        assert main([*argv, "--overwrite"]) == 0, name
        assert target.read_bytes() != f"the user's {name} file".encode(), name
    assert _strays(tmp_path) == []


@pytest.mark.parametrize(
    ("signum", "code", "says"),
    [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "interrupted"),
     (signal.SIGHUP, 129, "SIGHUP")],
    ids=["SIGTERM", "Ctrl-C", "SIGHUP"],
)  # fmt: skip
def test_signal_mid_write_removes_the_temp_file(f, tmp_path, signum, code, says):
    argv, target = _writers(f, tmp_path)["collect"]
    target.write_bytes(b"keep")
    marker = tmp_path / "writing"
    proc = subprocess.Popen(
        [sys.executable, "-c", _HANG, str(marker), *argv, "--overwrite"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # as from a terminal: a test worker may have inherited SIGINT ignored, and a Python
        # started with SIGINT ignored keeps ignoring it (no KeyboardInterrupt)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code and says in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert target.read_bytes() == b"keep" and _strays(tmp_path) == []


# ----------------------------------------------------------------------------- seeds
def test_collect_same_seed_same_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # the 'created' date in the meta
    out = tmp_path / "c.npz"
    argv = ["collect", "--episodes", "2", "--seed", "7", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    first = out.read_bytes()
    time.sleep(1.1)  # a clock that leaks into the file would show
    assert main([*argv, "--overwrite"]) == 0
    assert out.read_bytes() == first
    assert main([*argv, "--overwrite", "--seed", "8"]) == 0
    assert out.read_bytes() != first


def _without_times(text: str) -> dict:
    data = json.loads(text)
    for rec in data["history"]:
        rec.pop("wall_time", None)
    return data


@pytest.mark.parametrize("kind", ["linear", "mlp", "ensemble", "greybox"])
def test_fit_same_seed_same_bytes(f, tmp_path, kind):
    extra = {"mlp": ["--hidden", "8"], "ensemble": ["--hidden", "8", "--num-members", "2"],
             "greybox": ["--params", "m"]}.get(kind, [])  # fmt: skip
    out = tmp_path / "m.pt"
    argv = ["fit", "--data", str(f["ds"]), "--model", kind, "--seed", "1", *TINY_FIT, *extra,
            "--out", str(out), "--overwrite"]  # fmt: skip
    files = []
    for _ in range(2):
        assert main(argv) == 0
        files.append((out.read_bytes(), out.with_suffix(".png").read_bytes(),
                      _without_times(out.with_suffix(".json").read_text())))  # fmt: skip
    assert files[0] == files[1], kind  # model and plot bitwise; history but its wall times
