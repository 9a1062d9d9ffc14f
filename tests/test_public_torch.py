"""The library uses public torch APIs only: no ``torch._*``, ``torch.ops.aten``, version counters
or ``.data`` assignment anywhere in ``diffctl/`` or ``envs/``."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]

PRIVATE = {
    "a private torch name": re.compile(r"\btorch\._[A-Za-z]"),
    "torch.ops": re.compile(r"\btorch\.ops\."),
    "a tensor version counter": re.compile(r"\._version\b"),
    # (a tensor's .data; an object's own attribute "self.data" is not one)
    "a .data assignment": re.compile(r"(?<!self)\.data\s*=(?!=)"),
    "a private multi-tensor op": re.compile(r"\b_foreach_"),
}


def _sources() -> list[pathlib.Path]:
    return sorted([*(ROOT / "diffctl").rglob("*.py"), *(ROOT / "envs").rglob("*.py")])


def private_uses(text: str) -> list[str]:
    """``"line: what"`` for each private torch use in ``text``."""
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        for what, pattern in PRIVATE.items():
            if pattern.search(line):
                found.append(f"{n}: {what}: {line.strip()}")
    return found


def test_the_checker_finds_each_kind() -> None:
    text = (
        "torch._fused_adam_(x)\ntorch.ops.aten.tanh_backward\nx._version\np.data = q\n_foreach_add_"
    )
    assert len(private_uses(text)) == 5
    fine = "torch.__version__\nif p.data == q: pass\ntorch.compile(f)\nself.data = mujoco.MjData(m)"
    assert private_uses(fine) == []


def test_no_private_torch_in_the_library() -> None:
    sources = _sources()
    assert len(sources) > 50
    bad = {
        str(p.relative_to(ROOT)): uses
        for p in sources
        if (uses := private_uses(p.read_text(encoding="utf-8")))
    }
    assert not bad, f"private torch APIs: {bad}"
