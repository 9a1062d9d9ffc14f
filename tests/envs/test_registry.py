"""``make`` and the registry: names, overrides, options."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from diffctl.envs import Env, make, register, registered_names

SYSTEMS = [
    "pendulum",
    "cartpole",
    "cartpole-continuous",
    "acrobot",
    "acrobot-continuous",
    "mountaincar-continuous",
    "linear",
    "car",
    "reacher",
]


@pytest.mark.parametrize("name", SYSTEMS)
def test_every_system_is_registered_and_consistent(name: str) -> None:
    env = make(name, dtype=torch.float64)
    assert isinstance(env, Env) and env.spec.name == name
    assert all(p.dtype == torch.float64 for p in env.params.values())
    x = env.initial_state(5, torch.Generator().manual_seed(0))
    assert x.shape == (5, env.spec.state_dim) and x.dtype == torch.float64
    if env.spec.discrete:
        u = torch.zeros(5, dtype=torch.int64)
        assert env.spec.act_dim == 0 and env.spec.num_actions >= 2
    else:
        u = torch.zeros(5, env.spec.act_dim, dtype=torch.float64)
    x1, obs, r, term = env.step(x, u)
    assert x1.shape == x.shape and obs.shape == (5, env.spec.obs_dim)
    assert r.shape == (5,) and term.shape == (5,) and term.dtype == torch.bool
    # any leading batch dims, and an unbatched call
    assert env.dynamics(x.reshape(5, 1, -1), u.reshape(5, 1, *u.shape[1:])).shape == (
        5,
        1,
        x.shape[-1],
    )
    assert env.dynamics(x[0], u[0]).shape == (env.spec.state_dim,)
    # same seed, same start states
    y = env.initial_state(5, torch.Generator().manual_seed(0))
    assert torch.equal(x, y)


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="name: unknown environment 'nope'") as e:
        make("nope")
    for name in SYSTEMS:
        assert name in str(e.value)
    assert set(SYSTEMS) <= set(registered_names())
    with pytest.raises(TypeError, match="name"):
        make(3)


def test_overrides_set_parameters_and_keep_gradients() -> None:
    env = make("pendulum", m=1.3, g=9.81)
    assert float(env.params["m"]) == pytest.approx(1.3)
    assert float(env.params["g"]) == pytest.approx(9.81)
    length = torch.tensor(0.7, requires_grad=True)
    env2 = env.replace(l=length)
    x1 = env2.dynamics(torch.tensor([[0.5, 0.0]]), torch.tensor([[1.0]]))
    (g,) = torch.autograd.grad(x1.sum(), length)
    assert g != 0 and float(env.params["l"]) == 1.0  # the original is unchanged
    car = make("car", goal=[1.0, 2.0, 0.0])
    assert car.params["goal"].tolist() == [1.0, 2.0, 0.0]
    assert make("cartpole-continuous", swing_up=True, max_steps=300).spec.max_steps == 300
    A = torch.eye(3, dtype=torch.float64, requires_grad=True)
    lin = make("linear", A=A, B=torch.ones(3, 1), dtype=torch.float64)
    assert lin.params["A"] is A  # the caller's tensor, graph kept
    x1 = lin.dynamics(torch.ones(2, 3, dtype=torch.float64), torch.ones(2, 1, dtype=torch.float64))
    (gA,) = torch.autograd.grad(x1.sum(), A)
    torch.testing.assert_close(gA, torch.full((3, 3), 2.0, dtype=torch.float64))


@pytest.mark.parametrize(
    ("name", "bad", "match"),
    [
        ("cartpole", {"mass": 1.0}, "mass: unknown parameter"),
        ("acrobot", {"m3": 1.0}, "m3: unknown parameter"),
        ("car", {"goal": [1.0, 2.0]}, r"goal: expected shape \(3,\), got \(2,\)"),
        ("reacher", {"target": 1.0}, r"target: expected shape \(2,\)"),
        ("pendulum", {"m": [1.0, 2.0]}, "m: expected shape"),
        ("mountaincar-continuous", {"power": float("nan")}, "power: parameter contains NaN"),
        ("linear", {"C": [[1.0]]}, "C: unknown parameter"),
        ("linear", {"A": [[1.0, 2.0, 3.0]]}, "A: expected a square matrix"),
        ("linear", {"A": [1.0, 2.0]}, "A: expected a matrix"),
        ("linear", {"B": [[1.0], [2.0], [3.0]]}, r"B: expected a matrix of shape \(2, 'n'\)"),
        ("linear", {"A": [[1.0, 0, 0]] * 3}, "B: required when A is not 2 x 2"),
        ("linear", {"Q": [[1.0]]}, r"Q: expected a matrix of shape \(2, 2\)"),
        ("linear", {"Q": [[1.0, 1.0], [0.0, 1.0]]}, "Q: expected a symmetric matrix"),
        ("linear", {"Q": [[-1.0, 0.0], [0.0, 1.0]]}, "Q: expected a positive semi-definite"),
        ("linear", {"R": [[0.0]]}, "R: expected a positive definite"),
        ("linear", {"A": [[1.0, float("inf")], [0.0, 1.0]]}, "A: contains NaN or inf"),
        ("linear", {"Q": [[float("nan"), 0.0], [0.0, 1.0]]}, "Q: contains NaN or inf"),
        ("linear", {"action_low": [1.0, 2.0]}, "action_low: expected a float or 1 values"),
        ("linear", {"dt": -1.0}, "dt: expected a positive float"),
        ("cartpole-continuous", {"max_steps": 0}, "max_steps: expected a positive int"),
    ],
)
def test_bad_override_names_the_argument(name: str, bad: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make(name, **bad)
    env = make(name)
    params = {k: v for k, v in bad.items() if k in env.params}
    if params and "shape" in match:  # replace() rejects a wrong shape too, naming it
        with pytest.raises(ValueError, match=f"{next(iter(params))}: expected shape"):
            env.replace(**params)


def test_bad_option_types() -> None:
    with pytest.raises(TypeError, match="swing_up"):
        make("cartpole-continuous", swing_up="yes")
    with pytest.raises(TypeError, match="dtype"):
        make("reacher", dtype=torch.int64)
    with pytest.raises(TypeError, match="A: expected real numbers"):
        make("linear", A=torch.ones(2, 2, dtype=torch.bool))


def test_linear_infers_dimensions_and_bounds() -> None:
    A = torch.eye(3) * 0.9
    B = torch.ones(3, 2)
    env = make("linear", A=A, B=B, action_low=-1.0, action_high=[2.0, 3.0])
    assert (env.spec.state_dim, env.spec.act_dim) == (3, 2)
    assert env.spec.action_low == (-1.0, -1.0) and env.spec.action_high == (2.0, 3.0)
    assert torch.equal(env.params["Q"], torch.eye(3)) and torch.allclose(
        env.params["R"], 0.1 * torch.eye(2)
    )
    boxed = make("linear")  # finite by default (gymnasium's Box, SB3's check_env)
    assert boxed.spec.action_low == (-10.0,) and boxed.spec.action_high == (10.0,)
    free = make("linear", action_low=-float("inf"), action_high=float("inf"))
    assert free.spec.action_low == (-float("inf"),) and free.spec.action_high == (float("inf"),)


def test_register_rejects_duplicates_and_accepts_callables() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register("pendulum", "diffctl.envs.pendulum:Pendulum")
    with pytest.raises(ValueError, match="name"):
        register("", "diffctl.envs.pendulum:Pendulum")


def test_envs_import_without_gymnasium() -> None:
    """``import diffctl.envs`` must not need gymnasium; the adapters say what is missing."""
    code = (
        "import sys; sys.modules['gymnasium'] = None\n"
        "import diffctl.envs as e\n"
        "assert e.make('cartpole').spec.num_actions == 2\n"
        "try:\n"
        "    e.to_gymnasium\n"
        "except ImportError as err:\n"
        "    print('ImportError', err)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "ImportError" in out.stdout and "gymnasium" in out.stdout


def test_gym_ids_name_the_extra_without_gymnasium(monkeypatch, tmp_path, capsys) -> None:
    """``--env gym:<id>`` and the gymnasium adapters say which extra brings gymnasium."""
    import sys

    import diffctl.envs

    from diffctl.cli import main

    monkeypatch.setitem(sys.modules, "gymnasium", None)
    monkeypatch.delitem(sys.modules, "diffctl.envs.gym_adapters", raising=False)
    monkeypatch.delattr(diffctl.envs, "gym_adapters", raising=False)  # (imported before)
    with pytest.raises(ModuleNotFoundError, match=r"diffctl\[gym\]"):
        diffctl.envs.to_gymnasium  # noqa: B018
    argv = ["train", "ppo", "--env", "gym:Pendulum-v1", "--no-progress", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("diffctl train: error: --env:") and "diffctl[gym]" in err, err
