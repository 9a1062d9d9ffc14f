"""save_model / load_model: round trips, atomic writes, validation naming file and field."""

from __future__ import annotations

import os

import pytest
import torch
from diffctl.envs import make

from diffctl import __version__
from diffctl.models import (
    EnsembleDynamics,
    GreyBoxModel,
    LinearModel,
    MLPDynamics,
    load_model,
    save_model,
)


def trained_like(model):
    """Give every floating parameter and buffer non-default values (and reverse an ensemble's
    elite order)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for t in (*model.parameters(), *model.buffers()):
            if t.is_floating_point():
                t.add_(0.1 * torch.rand(t.shape, generator=g, dtype=t.dtype))
            else:
                t.copy_(t.flip(0))
    return model


MODELS = {
    "linear": lambda: LinearModel(2, 1, ridge=0.5, operating_point=([0.1, 0.0], [0.0])),
    "mlp": lambda: MLPDynamics(2, 1, hidden=(8, 4), activation="tanh", angle_dims=(0,)),
    "ensemble": lambda: EnsembleDynamics(2, 1, num_members=3, hidden=(8,)),
    "greybox": lambda: GreyBoxModel(make("pendulum", m=1.2), ["l"], init={"l": 0.9}),
    "greybox-cartpole": lambda: GreyBoxModel(
        make("cartpole-continuous", swing_up=True), ["masspole"]
    ),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_round_trip_predicts_identically(tmp_path, name):
    model = trained_like(MODELS[name]())
    path = tmp_path / "model.pt"
    save_model(path, model, {"env": "pendulum", "note": [1, 2]})
    assert os.listdir(tmp_path) == ["model.pt"]  # no temporary file left behind
    loaded = load_model(path)
    assert type(loaded) is type(model) and loaded.init_kwargs() == model.init_kwargs()
    nx = model.state_dim
    x, u = torch.randn(5, nx), torch.rand(5, 1)
    torch.testing.assert_close(loaded(x, u), model(x, u))
    assert loaded.meta["env"] == "pendulum" and loaded.meta["note"] == [1, 2]
    assert loaded.meta["diffctl_version"] == __version__


def test_checkpoint_records_kind_dims_and_normaliser(tmp_path):
    model = MLPDynamics(2, 1, hidden=(4,))
    model.prepare(torch.randn(50, 2), torch.randn(50, 1), torch.randn(50, 2))
    save_model(tmp_path / "m.pt", model)
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    assert (ckpt["kind"], ckpt["state_dim"], ckpt["act_dim"]) == ("mlp", 2, 1)
    assert ckpt["normalizer"]["out_norm"]["std"] == model.out_norm.std.tolist()
    assert ckpt["diffctl_version"] == __version__


def test_overwrite_is_atomic_and_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    save_model(path, LinearModel(2, 1))
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save_model(path, LinearModel(2, 1, ridge=3.0))
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.pt"]


def corrupt(tmp_path, edit):
    path = tmp_path / "bad.pt"
    save_model(path, MLPDynamics(2, 1, hidden=(4,)))
    ckpt = torch.load(path, weights_only=True)
    edit(ckpt)
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda c: c.pop("kind"), "field 'kind' is missing"),
        (lambda c: c.update(kind="transformer"), "field 'kind' is 'transformer'"),
        (lambda c: c.update(format="other"), "field 'format'"),
        (lambda c: c.update(format_version=99), "field 'format_version'"),
        (lambda c: c.update(state_dim=3), "'state_dim'/'act_dim'"),
        (lambda c: c["init_kwargs"].update(hidden=[5]), r"state_dict.net.0.weight' has shape"),
        (lambda c: c["state_dict"].pop("out_norm.std"), r"missing \['out_norm.std'\]"),
        (lambda c: c["init_kwargs"].update(activation="nope"), "'init_kwargs' is invalid"),
        (lambda c: c["state_dict"]["net.0.bias"].fill_(float("nan")), "NaN"),
    ],
)
def test_corrupt_checkpoints_name_file_and_field(tmp_path, edit, match):
    path = corrupt(tmp_path, edit)
    with pytest.raises(ValueError, match=match) as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_unreadable_and_missing_files(tmp_path):
    bad = tmp_path / "junk.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: not a readable"):
        load_model(bad)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_model(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError, match="folder"):
        save_model(tmp_path / "no" / "dir.pt", LinearModel(2, 1))
    with pytest.raises(TypeError, match="model"):
        save_model(tmp_path / "x.pt", torch.nn.Linear(2, 2))
