"""Deep Q-networks (Mnih et al. 2015, "Human-level control through deep reinforcement learning")
and the Rainbow parts that fit a plain Q-network (Hessel et al. 2018): double Q-learning,
the dueling head, n-step returns and prioritised replay, each a config switch.

Per vector-env step: an epsilon-greedy action (uniformly random for the first
``learning_starts`` env steps, then epsilon decaying linearly from ``start_epsilon`` to
``end_epsilon`` over the first ``exploration_fraction`` of the run); the transition goes into
the replay memory (with ``n_step > 1``, the n-step transition of the step ``n - 1`` steps back,
``diffctl.data.n_step_returns`` over a window of the last ``n`` steps of every env); every
``target_update_interval`` env steps the target network moves to the online one (a hard copy
with ``tau = 1``, else Polyak averaging); every ``train_frequency`` env steps
``gradient_steps`` updates:

- target (``d`` the bootstrap discount ``gamma^m``, ``m <= n`` steps, 0 at a termination):
  DQN ``y = R + d max_a Q'(s', a)`` (Mnih et al. 2015, Methods, the loss ``L_i``); double
  DQN ``y = R + d Q'(s', argmax_a Q(s', a))`` (van Hasselt et al. 2016, Sec. 4);
- loss: ``mean_B w_i l(Q(s, a) - y)`` with ``l`` the Huber (Mnih et al.'s clipped error) or
  squared error, ``w_i`` the importance weights of prioritised replay (1 otherwise), then
  the gradient clipped to ``max_grad_norm`` and one Adam step;
- prioritised replay: the drawn transitions' priorities become ``|Q(s, a) - y| + eps``
  (Schaul et al. 2016, Algorithm 1) and beta anneals linearly from ``beta0`` to 1.

Why not ``offpolicy.train_off_policy`` (the loop of DDPG / TD3 / SAC): it acts with uniform
continuous actions then ``agent.act``, refuses discrete envs, stores one-step transitions in a
continuous-action ``ReplayBuffer`` and takes a fixed number of updates every env step. DQN
needs epsilon-greedy actions on a schedule, a discrete memory with per-transition discounts
(n-step), priority updates after each step and updates in phases: this file keeps the same
skeleton (``TrainLoop``, ``setup_runner``, the fused ``adam``, ``compiled``, ``SoftUpdate``)
with those differences in the open.

The replay memory is a ``ReplayBuffer`` (or ``PrioritizedReplayBuffer``) of
``(o, a, R, o', terminated)`` plus a ring of the bootstrap discounts ``gamma^m`` beside it:
``m < n`` where an episode was cut by its time limit inside the n steps. Everything stays on
the runner's device; the loop reads no tensor back except once per history record.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffctl.agents.agent import Agent, TrainResult, seeded_init
from diffctl.agents.loop import Callback, TrainLoop
from diffctl.agents.networks import mlp
from diffctl.agents.offpolicy import SoftUpdate, adam, compiled
from diffctl.agents.runner import check_action_space, loop_mode, setup_runner
from diffctl.configs.agents import DQN_PRESETS as PRESETS
from diffctl.configs.agents import DQNConfig
from diffctl.data import PrioritizedReplayBuffer, ReplayBuffer, n_step_returns

__all__ = [
    "DQNConfig",
    "CONFIG",
    "PRESETS",
    "default_config",
    "QNetwork",
    "make_agent",
    "make_learner",
    "DQNLearner",
    "ReplayMemory",
    "NStepWindow",
    "epsilon_at",
    "train",
]


CONFIG = DQNConfig


def default_config(env_name: str) -> DQNConfig:
    """The tuned preset for ``env_name`` (``PRESETS``; the cart-pole defaults otherwise)."""
    return PRESETS.get(env_name, DQNConfig())


# --------------------------------------------------------------------------- the Q-network
class QNetwork(nn.Module):
    """``Q(o, .) [B, num_actions]``: an MLP of ReLU layers, or with ``dueling`` a shared trunk
    with a value head ``V(o)`` and an advantage head ``A(o, a)`` combined as
    ``Q = V + A - mean_a A`` (Wang et al. 2016, eq. 9).

    As the policy of an ``Agent``: ``mode(o)`` is the greedy action ``argmax_a Q(o, a)``;
    ``sample(o, generator)`` the epsilon-greedy one with ``epsilon`` (the run's final one)."""

    def __init__(
        self,
        obs_dim: int,
        num_actions: int,
        hidden: tuple[int, ...] = (256, 256),
        dueling: bool = False,
        epsilon: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_actions, self.dueling, self.epsilon = num_actions, dueling, float(epsilon)
        if dueling:
            self.trunk = nn.Sequential(
                mlp(obs_dim, hidden[:-1], hidden[-1], "relu", out_gain=2**0.5), nn.ReLU()
            )
            self.value = mlp(hidden[-1], (), 1, out_gain=1.0)
            self.advantage = mlp(hidden[-1], (), num_actions, out_gain=1.0)
        else:
            self.net = mlp(obs_dim, hidden, num_actions, "relu", out_gain=1.0)

    def forward(self, obs: Tensor) -> Tensor:
        if not self.dueling:
            return self.net(obs)
        h = self.trunk(obs)
        adv = self.advantage(h)
        # Wang et al. 2016, eq. 9: Q(s, a) = V(s) + (A(s, a) - 1/|A| sum_a' A(s, a'))
        return self.value(h) + adv - adv.mean(-1, keepdim=True)

    def mode(self, obs: Tensor) -> Tensor:
        """The greedy action ``argmax_a Q(o, a)`` (int64 ``[B]``)."""
        return self(obs).argmax(-1)

    def epsilon_greedy(
        self, obs: Tensor, epsilon: float, generator: torch.Generator | None = None
    ) -> Tensor:
        """A uniformly random action with probability ``epsilon``, else the greedy one
        (int64 ``[B]``; draws the same numbers from ``generator`` whatever ``epsilon``)."""
        n, dev = obs.shape[0], obs.device
        explore = torch.rand(n, generator=generator, device=dev) < epsilon
        random = torch.randint(self.num_actions, (n,), generator=generator, device=dev)
        return torch.where(explore, random, self.mode(obs))

    def sample(
        self, obs: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(epsilon-greedy action [B], its log-probability [B])`` with ``self.epsilon``."""
        a = self.epsilon_greedy(obs, self.epsilon, generator)
        greedy = (a == self.mode(obs)).to(obs.dtype)
        p = self.epsilon / self.num_actions + (1.0 - self.epsilon) * greedy
        return a, p.log()


def make_agent(spec: Any, config: DQNConfig, seed: int = 0) -> Agent:
    """The online Q-network (the agent's policy) and its target network."""
    if not spec.discrete:
        raise ValueError(
            f"env: dqn needs discrete actions, but {spec.name!r} has a continuous "
            f"{spec.act_dim}-dimensional action box"
        )

    def build() -> Agent:
        def q_net() -> QNetwork:
            return QNetwork(
                spec.obs_dim, spec.num_actions, config.hidden, config.dueling, config.end_epsilon
            )

        q, q_target = q_net(), q_net()
        q_target.load_state_dict(q.state_dict())
        return Agent("dqn", spec, config, q, {"q_target": q_target})

    return seeded_init(seed, build)


# --------------------------------------------------------------------------- the update
class DQNLearner:
    """DQN's update (see the module docstring) on an agent from ``make_agent``: one Adam on
    the online network, the target network updated by ``update_target``."""

    def __init__(self, agent: Agent, cfg: DQNConfig) -> None:
        self.cfg = cfg
        self.q, self.q_target = agent.actor, agent.nets["q_target"]
        self.params = list(self.q.parameters())
        self.optimizer = adam(self.params, cfg.learning_rate)
        self.optimizers = {"q": self.optimizer}
        self.update_target = SoftUpdate([(self.q_target, self.q)], cfg.tau)
        self.loss = compiled(self.loss, cfg.compile)

    def target(self, r: Tensor, o2: Tensor, discount: Tensor) -> Tensor:
        """The regression target ``y = R + d Q'(s', a*) [B]`` (no gradient), ``d`` the
        bootstrap discount (0 at a termination)."""
        with torch.no_grad():
            q_next_target = self.q_target(o2)  # [B, num_actions]
            if self.cfg.double:
                # van Hasselt et al. 2016, Sec. 4: the online network selects,
                # the target network evaluates: Q'(s', argmax_a Q(s', a))
                a_star = self.q(o2).argmax(-1, keepdim=True)
                q_next = q_next_target.gather(-1, a_star).squeeze(-1)
            else:
                # Mnih et al. 2015: max_a Q'(s', a) of the target network
                q_next = q_next_target.max(-1).values
            # torch.where: a terminal state's value never enters (even a non-finite one)
            return r + torch.where(discount == 0, 0.0, discount * q_next)

    def loss(
        self, o: Tensor, a: Tensor, r: Tensor, o2: Tensor, discount: Tensor, weights: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(mean_B w l(Q(o, a) - y), |Q(o, a) - y| [B], mean_B Q(o, a))`` with ``l`` the
        Huber or squared error."""
        y = self.target(r, o2, discount)
        q = self.q(o).gather(-1, a[:, None]).squeeze(-1)
        if self.cfg.loss == "huber":  # Mnih et al. 2015: the error term clipped to [-1, 1]
            per_sample = F.smooth_l1_loss(q, y, reduction="none")
        else:
            per_sample = F.mse_loss(q, y, reduction="none")
        # Schaul et al. 2016, Algorithm 1, line 12: the importance-weighted TD update
        loss = (weights * per_sample).mean()
        return loss, (q - y).detach().abs(), q.detach().mean()

    def update(self, batch: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], Tensor]:
        """One gradient step on ``batch`` (``obs, actions, rewards, next_obs, discounts,
        weights``); returns the scalars for the history and ``|TD error| [B]``."""
        loss, td_abs, q = self.loss(
            batch["obs"],
            batch["actions"],
            batch["rewards"],
            batch["next_obs"],
            batch["discounts"],
            batch["weights"],
        )
        self.optimizer.zero_grad()
        loss.backward()
        if self.cfg.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm, foreach=True)
        self.optimizer.step()
        return {"loss": loss.detach(), "q": q}, td_abs


def make_learner(agent: Agent, cfg: DQNConfig) -> DQNLearner:
    return DQNLearner(agent, cfg)


# --------------------------------------------------------------------------- replay
class ReplayMemory:
    """The transitions ``(o, a, R, o', terminated)`` in a discrete ``ReplayBuffer`` (or a
    ``PrioritizedReplayBuffer`` with ``prioritized``), and the bootstrap discount of each in a
    ring beside it, written at the same positions. ``sample`` draws uniformly (or by priority)
    and returns the fields with ``discounts`` and ``weights`` (ones when uniform)."""

    def __init__(
        self, cfg: DQNConfig, obs_dim: int, device: torch.device, dtype: torch.dtype
    ) -> None:
        C = cfg.buffer_size
        if cfg.prioritized:
            self.buffer: Any = PrioritizedReplayBuffer(
                C, obs_dim, 0, device, True, alpha=cfg.alpha, eps=cfg.priority_eps, dtype=dtype
            )
        else:
            self.buffer = ReplayBuffer(C, obs_dim, 0, device, True, dtype=dtype)
        self.prioritized = cfg.prioritized
        self.discounts = torch.zeros(C, device=device, dtype=dtype)
        self.capacity, self.device, self.ptr = C, device, 0

    def __len__(self) -> int:
        return len(self.buffer)

    def add(
        self,
        o: Tensor,
        a: Tensor,
        r: Tensor,
        o2: Tensor,
        term: Tensor,
        discount: Tensor,
        check: bool,
    ) -> None:
        n = o.shape[0]  # <= capacity (the config checks buffer_size >= num_envs)
        self.buffer.add(o, a, r, o2, term, check=check)
        stop = self.ptr + n
        if stop <= self.capacity:
            self.discounts[self.ptr : stop] = discount
        else:
            first = self.capacity - self.ptr
            self.discounts[self.ptr :] = discount[:first]
            self.discounts[: n - first] = discount[first:]
        self.ptr = stop % self.capacity

    def sample(self, batch_size: int, generator: torch.Generator, beta: float) -> dict[str, Tensor]:
        if self.prioritized:
            batch = self.buffer.sample(batch_size, generator, beta)
            idx = batch["indices"]
        else:
            idx = torch.randint(
                0, len(self), (batch_size,), generator=generator, device=self.device
            )
            batch = {k: v.index_select(0, idx) for k, v in self.buffer.storage.items()}
            batch["weights"] = torch.ones(
                batch_size, device=self.device, dtype=self.discounts.dtype
            )
            batch["indices"] = idx
        batch["discounts"] = self.discounts.index_select(0, idx)
        return batch

    def update_priorities(self, indices: Tensor, td_abs: Tensor) -> None:
        if self.prioritized:
            self.buffer.update_priorities(indices, td_abs)

    def state_dict(self) -> dict[str, Any]:
        return {
            "buffer": self.buffer.state_dict(),
            "discounts": self.discounts.clone(),
            "ptr": self.ptr,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key in ("buffer", "discounts", "ptr"):
            if key not in state:
                raise ValueError(f"state: missing key {key!r}")
        d = state["discounts"]
        if not isinstance(d, Tensor) or d.shape != self.discounts.shape:
            raise ValueError(f"state['discounts']: expected shape {tuple(self.discounts.shape)}")
        self.buffer.load_state_dict(state["buffer"])
        self.discounts.copy_(d)
        self.ptr = int(state["ptr"])


class NStepWindow:
    """The last ``n`` steps of every env (time-major ``[n, N, ...]``), from which each step
    emits the n-step transition of the oldest (``diffctl.data.n_step_returns``): ``(o_t, a_t,
    R_t, s_{t+m}, terminated, gamma^m)`` with ``m <= n`` cut at the first episode end. With
    ``n = 1`` it passes the one-step transition straight through (discount ``gamma``, 0 at a
    termination)."""

    def __init__(self, n: int, gamma: float) -> None:
        self.n, self.gamma = n, gamma
        self.steps: dict[str, Tensor] = {}  # field -> [filled, N, ...]

    def push(
        self, o: Tensor, a: Tensor, r: Tensor, o2: Tensor, term: Tensor, trunc: Tensor
    ) -> tuple[Tensor, ...] | None:
        """Add one step; return the transition of the step ``n - 1`` back (``None`` until the
        window holds ``n`` steps)."""
        if self.n == 1:
            discount = torch.where(term, 0.0, torch.full_like(r, self.gamma))
            return o, a, r, o2, term, discount
        new = {"obs": o, "actions": a, "rewards": r, "next_obs": o2, "term": term, "trunc": trunc}
        self.steps = {
            k: torch.cat([self.steps[k][1 - self.n :], v[None]]) if self.steps else v[None]
            for k, v in new.items()
        }
        w = self.steps
        if w["rewards"].shape[0] < self.n:
            return None
        returns, discounts, last = n_step_returns(
            w["rewards"], w["term"], w["trunc"], self.gamma, self.n, check_finite=False
        )
        last0 = last[0]  # the step whose next state the oldest step's target bootstraps from
        env = torch.arange(last0.shape[0], device=last0.device)
        o_end, term_end = w["next_obs"][last0, env], w["term"][last0, env]
        return w["obs"][0], w["actions"][0], returns[0], o_end, term_end, discounts[0]

    def state_dict(self) -> dict[str, Any]:
        return {k: v.clone() for k, v in self.steps.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.steps = {k: v.clone() for k, v in state.items()}


def epsilon_at(cfg: DQNConfig, step: int) -> float:
    """The exploration rate after ``step`` env steps: 1 before ``learning_starts``, else the
    linear decay from ``start_epsilon`` to ``end_epsilon`` over ``exploration_fraction`` of
    the run (Mnih et al. 2015, Methods; CleanRL's / SB3's schedule)."""
    if step < cfg.learning_starts:
        return 1.0
    frac = min(1.0, step / (cfg.exploration_fraction * cfg.total_steps))
    return cfg.start_epsilon + frac * (cfg.end_epsilon - cfg.start_epsilon)


def _crossed(step: int, n: int, every: int) -> bool:
    """Whether the vector step that took ``step - n`` to ``step`` passed a multiple of
    ``every``."""
    return step // every > (step - n) // every


# --------------------------------------------------------------------------- training
def train(
    env: Any,
    config: DQNConfig | None = None,
    seed: int = 0,
    *,
    device: str | torch.device | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    resume: str | os.PathLike | None = None,
    callback: Callback | None = None,
) -> TrainResult:
    """Train DQN on a discrete-action env; arguments as ``diffctl.agents.ppo.train``."""
    runner, cfg = setup_runner(env, config, DQNConfig, default_config, seed, device)
    spec = runner.spec
    check_action_space(spec, "dqn", discrete=True, continuous=False)
    if cfg.buffer_size < runner.num_envs:
        raise ValueError(f"buffer_size: {cfg.buffer_size} is less than num_envs {runner.num_envs}")
    dev = runner.device
    agent = make_agent(spec, cfg, seed).to(dev)
    learner = make_learner(agent, cfg)
    dtype = agent.action_dtype
    memory = ReplayMemory(cfg, spec.obs_dim, dev, dtype)
    window = NStepWindow(cfg.n_step, cfg.gamma)
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    parts = {"q_optimizer": learner.optimizer, "generator": gen, "buffer": memory}
    parts.update(window=window, runner=runner)
    loop = TrainLoop(
        agent,
        runner,
        parts,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        callback=callback,
    )
    initial = {"obs": runner.reset(seed=seed), "step": 0, "n_update": 0, "iteration": 0}
    state = loop.resume(resume, initial)
    obs, step, n_update, iteration = (state[k] for k in initial)
    n = runner.num_envs
    total = (cfg.total_steps // n) * n
    q = agent.actor
    outs: list[dict[str, Tensor]] = []  # the updates' scalars since the last record
    checked = False
    with loop_mode(runner, env):
        while step < total:
            eps = epsilon_at(cfg, step)
            if step < cfg.learning_starts:  # uniform random exploration
                action = torch.randint(spec.num_actions, (n,), generator=gen, device=dev)
            else:
                action = q.epsilon_greedy(obs.to(dtype), eps, gen)
            next_obs, reward, term, trunc, info = runner.step(action)
            emitted = window.push(obs, action, reward, info["final_obs"], term, trunc)
            if emitted is not None:
                memory.add(*emitted, check=not checked)  # the first write checks its arguments
                checked = True
            obs = next_obs
            step += n
            if _crossed(step, n, cfg.target_update_interval):
                learner.update_target()
            if (
                step >= cfg.learning_starts
                and len(memory) >= cfg.batch_size
                and _crossed(step, n, cfg.train_frequency)
            ):
                # Schaul et al. 2016, Sec. 3.4: beta annealed linearly from beta0 to 1
                beta = cfg.beta0 + (1.0 - cfg.beta0) * min(1.0, step / total)
                if cfg.anneal_lr:  # linear decay to 0 over the run
                    learner.optimizer.param_groups[0]["lr"] = cfg.learning_rate * (1 - step / total)
                with torch.inference_mode(False):  # the updates differentiate
                    for _ in range(cfg.gradient_steps):
                        batch = memory.sample(cfg.batch_size, gen, beta)
                        out, td_abs = learner.update(batch)
                        memory.update_priorities(batch["indices"], td_abs)
                        outs.append(out)
                        n_update += 1
            if _crossed(step, n, cfg.log_interval) or step >= total:
                iteration += 1
                names = dict.fromkeys(k for out in outs for k in out)
                losses: dict[str, Any] = {
                    k: torch.stack([o[k] for o in outs if k in o]).mean() for k in names
                }
                losses["epsilon"] = eps
                outs = []
                state = {"obs": obs, "step": step, "n_update": n_update, "iteration": iteration}
                if not loop.log(step, iteration, losses, state=state, last=step >= total):
                    break
    return loop.result()
