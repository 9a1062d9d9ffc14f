"""Benchmarks: ``diffctl bench NAME`` runs ours and the peer on the same work in one process.

Each benchmark is a module ``diffctl/bench/<name>.py`` with ``HELP`` and
``run(argv: list[str]) -> BenchResult`` (see ``common.py``).
"""

BENCHES: dict[str, str] = {
    "envs": "envs",
    "mpc": "mpc",
    "convex": "convex",
    "ppo": "ppo",
    "sac": "sac",
    "dqn": "dqn",
    "trpo": "trpo",
    "irl": "irl",
    "mbrl": "mbrl",
    "mujoco": "mujoco",
    "humanoid": "humanoid",
    "evolution": "evolution",
}
