"""Polyak averaging of target networks."""

from __future__ import annotations

import torch

from diffctl.agents.networks import ValueCritic
from diffctl.agents.offpolicy import soft_update


def test_soft_update_of_several_pairs() -> None:
    torch.manual_seed(0)
    src = [ValueCritic(3), ValueCritic(3)]
    tgt = [ValueCritic(3), ValueCritic(3)]
    before = [[p.detach().clone() for p in t.parameters()] for t in tgt]
    soft_update(list(zip(tgt, src)), 0.25)
    for t, s, b in zip(tgt, src, before):
        for p, q, p0 in zip(t.parameters(), s.parameters(), b):
            torch.testing.assert_close(p, 0.75 * p0 + 0.25 * q)
