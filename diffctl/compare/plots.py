"""Plots of a comparison: return against env steps and against wall time."""

from __future__ import annotations

import os

from .runner import Row

__all__ = ["save_plots"]


def _save(fig, path: str) -> None:
    from diffctl.data import atomic_write

    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"))


def save_plots(out: str, rows: list[Row]) -> list[str]:
    """Write ``return_vs_steps.png`` and ``return_vs_wall.png`` into ``out``; return paths.

    Learners draw their learning curve (evaluation return as training goes); planners and
    model-based rows draw one point at the env steps they used (0 for true dynamics, drawn at 1
    on the log axis) and their wall time.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for key, xlabel, fname in (
        (
            "env_steps",
            "env steps used (log scale; true-dynamics planners at 1)",
            "return_vs_steps.png",
        ),
        ("wall_time", "wall time [s] (log scale)", "return_vs_wall.png"),
    ):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        methods: dict[str, list[Row]] = {}
        for r in rows:
            methods.setdefault(f"{r.env}/{r.method}", []).append(r)
        for i, (label, rs) in enumerate(sorted(methods.items())):
            color = f"C{i % 10}"
            for j, r in enumerate(rs):
                lab = label if j == 0 else None
                if r.curve:
                    xs = [max(p[key], 1.0) for p in r.curve]
                    ys = [p["return"] for p in r.curve]
                    ax.plot(xs, ys, color=color, label=lab, alpha=0.9)
                else:
                    x = max(float(getattr(r, key)), 1.0)
                    ax.errorbar(
                        [x],
                        [r.mean_return],
                        yerr=[r.std_return],
                        fmt="o",
                        color=color,
                        label=lab,
                        capsize=3,
                    )
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("episode return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
        path = os.path.join(out, fname)
        _save(fig, path)
        plt.close(fig)
        paths.append(path)
    return paths
