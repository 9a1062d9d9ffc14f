"""Brax bridge: parity with Brax's own step, gradients against finite differences, DLPack,
compile caching, named tasks and errors. Everything uses ``brax:inverted_pendulum`` at one batch
size so that each jitted function is compiled once for the whole module (slow on CPU)."""

from __future__ import annotations

import logging

import pytest
import torch

pytest.importorskip("brax")
jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

from diffctl.envs import VecEnv, make  # noqa: E402
from diffctl.envs import brax_bridge as bb  # noqa: E402

pytestmark = pytest.mark.brax

B = 8
# LQR gain of the upright cart-pole (discrete ARE on the bridge's own Jacobians at x = 0,
# Q = diag(1, 10, .1, .1), R = 1): keeps the 100-step parity rollout near the equilibrium.
K = (-0.5505, -3.9150, -0.6404, -0.5695)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def records():
    handler = _Records()
    logger = logging.getLogger(bb.__name__)
    old = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


@pytest.fixture(scope="module")
def env(records):
    torch.set_num_threads(1)
    return make("brax:inverted_pendulum", verbose=False)


def _bits(seed: int, n: int) -> torch.Tensor:
    # the PRNG key words ``initial_state`` draws from a generator seeded with ``seed``
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-(2**31), 2**31, (n, 2), generator=g, dtype=torch.int64).to(torch.int32)


def _policy(obs: torch.Tensor) -> torch.Tensor:
    k = torch.tensor(K, dtype=obs.dtype)
    return (-(obs * k).sum(-1, keepdim=True)).clamp(-1.0, 1.0)


def test_spec(env):
    s = env.spec
    assert (s.name, s.state_dim, s.obs_dim, s.act_dim, s.max_steps) == (
        "brax:inverted_pendulum",
        4,
        4,
        1,
        1000,
    )
    assert s.action_low == (-1.0,) and s.action_high == (1.0,)
    assert s.dt == pytest.approx(0.04)
    assert s.extra["backend"] == "generalized"
    assert s.extra["layout"] == {"q": (0, 2), "qd": (2, 4)}
    assert make("brax:inverted_pendulum", verbose=False)._core is env._core  # compiled once


def test_parity_with_brax_step(env):
    """100 closed-loop steps: bridge states, observations, rewards, dones equal Brax's own."""
    from brax import envs as brax_envs

    native = brax_envs.get_environment("inverted_pendulum")
    k = jnp.asarray(K, jnp.float32)

    @jax.jit
    def rollout(bits):
        s = jax.vmap(native.reset)(jax.lax.bitcast_convert_type(bits, jnp.uint32))

        def body(s, _):
            u = jnp.clip(-(s.obs @ k), -1.0, 1.0)[:, None]
            s = jax.vmap(native.step)(s, u)
            return s, (s.obs, s.reward, s.done)

        s1, outs = jax.lax.scan(body, s, None, length=100)
        return s.obs, outs

    obs0_ref, (obs_ref, rew_ref, done_ref) = rollout(jnp.asarray(_bits(3, B).numpy()))
    x = env.initial_state(B, torch.Generator().manual_seed(3))
    torch.testing.assert_close(x, torch.from_dlpack(obs0_ref), rtol=0, atol=0)
    obs, rews, dones = [], [], []
    for _ in range(100):
        x, o, r, d = env.step(x, _policy(env.observe(x)))
        obs.append(o), rews.append(r), dones.append(d)
    obs_ref = torch.from_dlpack(obs_ref)
    assert obs_ref[:, :, 1].abs().max() > 1e-3  # the pole really moves
    torch.testing.assert_close(torch.stack(obs), obs_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.stack(rews), torch.from_dlpack(rew_ref))
    assert torch.equal(torch.stack(dones), torch.from_dlpack(done_ref) > 0.5)


def test_replay_matches_step(env):
    """reward/observe/terminated on fresh tensors (no cache) equal the step's own outputs."""
    g = torch.Generator().manual_seed(1)
    x = env.initial_state(B, g)
    x[:2, 1] = torch.tensor([0.4, -0.4])  # two poles beyond the 0.2 rad termination angle
    u = torch.rand(B, 1, generator=g) * 2 - 1
    x1, o, r, d = env.step(x, u)
    assert d[:2].all() and not d[2:].any()
    torch.testing.assert_close(env.reward(x.clone(), u.clone(), x1.clone()), r)
    torch.testing.assert_close(env.observe(x1.clone()), o)
    assert torch.equal(env.terminated(x1.clone()), d)
    # leading batch dims are flattened and restored
    x2 = env.dynamics(x.reshape(2, 4, 4), u.reshape(2, 4, 1))
    torch.testing.assert_close(x2.reshape(B, 4), x1)


def _rollout_loss(env, x0, us, w):
    x = x0
    for t in range(us.shape[0]):
        x = env.dynamics(x, us[t])
    return (x * w).sum(-1)  # [B]: rows are independent


@pytest.mark.parametrize("steps", [1, 10])
def test_gradients_match_finite_differences(env, steps):
    g = torch.Generator().manual_seed(2)
    x0 = env.initial_state(B, g) * 5
    us = (torch.rand(steps, B, 1, generator=g) * 1.2 - 0.6).requires_grad_(True)
    w = torch.randn(B, 4, generator=g)
    x0g = x0.clone().requires_grad_(True)
    _rollout_loss(env, x0g, us, w).sum().backward()
    dx = torch.randn(B, 4, generator=g) * 0.05
    du = torch.randn(steps, B, 1, generator=g) * 0.1
    eps = 1e-2
    with torch.no_grad():
        for name, grad, direction in (("x0", x0g.grad, dx), ("u", us.grad, du)):
            px, pu = (direction, 0 * du) if name == "x0" else (0 * dx, direction)
            fp = _rollout_loss(env, x0 + eps * px, us + eps * pu, w)
            fm = _rollout_loss(env, x0 - eps * px, us - eps * pu, w)
            fd = (fp - fm) / (2 * eps)
            dims = (-1,) if name == "x0" else (0, -1)
            analytic = (grad * direction).sum(dims)
            rel = (analytic - fd).norm() / fd.norm()
            assert rel < 1e-2, f"{name}, {steps} steps: relative error {rel:.2e}"


def test_torch_func_transforms(env):
    """torch.func.vmap flattens into the row batch (V = 1 reuses the compiled batch size);
    torch.func.grad goes through the JAX VJP like autograd."""
    g = torch.Generator().manual_seed(4)
    x = env.initial_state(B, g)
    u = torch.rand(B, 1, generator=g) * 2 - 1
    ref = env.dynamics(x, u)
    torch.testing.assert_close(torch.func.vmap(env.dynamics)(x[None], u[None])[0], ref)
    xg = x.clone().requires_grad_(True)
    (plain,) = torch.autograd.grad(env.dynamics(xg, u)[:, 1].sum(), xg)
    functional = torch.func.grad(lambda x: env.dynamics(x, u)[:, 1].sum())(x)
    torch.testing.assert_close(functional, plain)


def test_jax_function_first_and_second_derivatives():
    """The autograd.Function on a toy JAX op matches torch's own derivatives up to order two."""
    import types

    mods = bb._modules()
    core = types.SimpleNamespace(mods=mods, announce=lambda *args: None)
    op = bb._Op(core, "toy", lambda x, u: (jnp.sin(x) * u**2, jnp.cos(x)), 2, nondiff=(1,))
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 4, generator=g, requires_grad=True)
    u = torch.randn(3, 4, generator=g, requires_grad=True)
    results = []
    for fn in (lambda x, u: bb._JaxFunction.apply(op, x, u)[0], lambda x, u: torch.sin(x) * u**2):
        gx, gu = torch.autograd.grad(fn(x, u).sum(), (x, u), create_graph=True)
        results.append((gx, gu, *torch.autograd.grad((gx * gu).sum(), (x, u))))
    for ours, ref in zip(*results):
        torch.testing.assert_close(ours, ref)


def test_dlpack_zero_copy(env):
    mods = bb._modules()
    t = torch.randn(B, 4)
    a = bb._to_jax(mods, t)
    assert a.unsafe_buffer_pointer() == t.data_ptr()
    b = jnp.sin(a)
    back = bb._to_torch(b)
    assert back.data_ptr() == b.unsafe_buffer_pointer()
    torch.testing.assert_close(back, torch.sin(t))


def test_compiles_once_per_batch_shape(env, records):
    x = env.initial_state(B, torch.Generator().manual_seed(0))
    for _ in range(3):
        x = env.dynamics(x, torch.zeros(B, 1))
    dyn = [m for m in records.messages if "compiling dynamics for batch 8" in m]
    assert len(dyn) == 1, records.messages


def test_vec_env_runs_and_terminates(env):
    venv = VecEnv(env, B, seed=0)
    obs = venv.reset()
    torch.testing.assert_close(obs, env.observe(venv.state.clone()))
    for _ in range(30):  # pushing hard to one side topples every pole within a second
        obs, r, term, trunc, info = venv.step(torch.ones(B, 1))
    stats = venv.episode_statistics()
    assert stats["count"] >= B
    # Brax's reward is 1 per step, so every finished episode's return is its length
    torch.testing.assert_close(stats["last_returns"], stats["last_lengths"])
    assert stats["last_lengths"].max() < 30


def test_vec_env_under_inference_mode_equals_normal_mode(env):
    # the bridge keeps nothing between calls, so inference mode changes no number
    runs = []
    for inference in (False, True):
        venv = VecEnv(env, B, seed=0)
        with torch.inference_mode(inference):
            steps = [venv.reset()]
            for _ in range(30):
                obs, r, term, trunc, _ = venv.step(torch.ones(B, 1))
                steps += [obs, r, term, trunc]
        runs.append(steps)
        assert steps[0].is_inference() == inference
    for a, b in zip(*runs):
        assert torch.equal(a, b)
    assert any(t.any() for t in runs[0][3::4])  # poles fell: terminations and resets ran


def test_roll_pitch_of_the_balance_task():
    mods = bb._modules()
    half = 0.2  # rotation of 0.4 rad about x: roll 0.4, pitch 0
    q = jnp.asarray([jnp.cos(half), jnp.sin(half), 0.0, 0.0])
    roll, pitch = bb._roll_pitch(mods.jnp, q)
    assert float(roll) == pytest.approx(0.4, abs=1e-6) and float(pitch) == pytest.approx(
        0, abs=1e-6
    )
    q = jnp.asarray([jnp.cos(half), 0.0, jnp.sin(half), 0.0])  # about y: pitch 0.4
    roll, pitch = bb._roll_pitch(mods.jnp, q)
    assert float(roll) == pytest.approx(0, abs=1e-6) and float(pitch) == pytest.approx(
        0.4, abs=1e-6
    )
    assert "humanoid-balance" in bb.available_brax_envs()


def test_bad_input(env, monkeypatch):
    with pytest.raises(ValueError, match="available: .*inverted_pendulum"):
        make("brax:no_such_env")
    with pytest.raises(ValueError, match="u: expected shape"):
        env.dynamics(torch.zeros(B, 4), torch.zeros(B, 2))
    with pytest.raises(ValueError, match=r"x: expected shape \[..., 4\]"):
        env.observe(torch.zeros(B, 3))
    with pytest.raises(TypeError, match="dtype"):
        make("brax:inverted_pendulum", dtype=torch.float16)
    if not jax.config.jax_enable_x64:
        with pytest.raises(ValueError, match="enable_x64=True"):
            make("brax:inverted_pendulum", dtype=torch.float64)
    with pytest.raises(TypeError, match="brax:inverted_pendulum: bad constructor option"):
        make("brax:inverted_pendulum", not_an_option=1)
    with pytest.raises(ImportError, match=r"pip install 'diffctl\[brax\]'"):
        bb.check_versions({"jax": None, "jaxlib": "0.10.2", "brax": "0.14.2"})
    monkeypatch.delenv(bb.ALLOW_UNTESTED_ENV, raising=False)
    with pytest.raises(ImportError, match="brax 0.10.0 .tested: >=0.14.2,<0.15"):
        bb.check_versions({"jax": "0.10.2", "jaxlib": "0.10.2", "brax": "0.10.0"})
    # jax missing: make() names the extra to install
    monkeypatch.setattr(bb, "_MODULES", None)
    monkeypatch.setattr(
        bb, "_installed_versions", lambda: {"jax": None, "jaxlib": None, "brax": None}
    )
    with pytest.raises(ImportError, match=r"diffctl\[brax\]"):
        make("brax:inverted_pendulum")
