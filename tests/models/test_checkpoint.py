"""Checkpoint files: the DESIGN.md metadata contract, clear errors for bad files, atomic saves."""

from __future__ import annotations

import hashlib
import json
import math
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from unlearn_cli.errors import BadInput
from unlearn_cli.models import registry
from unlearn_cli.models.checkpoint import (
    FORMAT,
    META_KEY,
    checkpoint_bytes,
    load_checkpoint,
    read_header_meta,
    relative_manifest,
    save_checkpoint,
)

DESIGN_KEYS = {"format", "arch", "training", "dataset", "lineage"}


def _model(name="mlp", shape=(3,), classes=2, **kwargs):
    spec = registry.make_spec(name, shape, classes, **kwargs)
    torch.manual_seed(0)
    return spec, registry.build(spec)


def _meta(spec):
    return {
        "kind": "plain",
        "arch": spec,
        "training": {"optimizer": "adam", "lr": 0.01, "epochs": 3, "batch_size": 8,
                     "weight_decay": 1e-4, "momentum": 0.9, "seed": 0},
        "dataset": {"manifest": "manifest.yaml", "name": "toy", "data_sha256": "0" * 64,
                    "train_ids_digest": "1" * 64, "n_train": 10},
        "lineage": [],
    }


@pytest.fixture
def saved(tmp_path):
    spec, model = _model(hidden=[16, 8])
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, model.state_dict(), _meta(spec))
    return path, model, spec


def _no_temp_files(directory):
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")] == []


def _assert_one_line_bad_input(path):
    with pytest.raises(BadInput) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    # inspect reads the header only; it must reject the same files the same way.
    with pytest.raises(BadInput) as info2:
        read_header_meta(path)
    assert str(path) in str(info2.value)
    return message


# -- bad files -----------------------------------------------------------------


def test_truncated_files_are_bad_input(saved, tmp_path):
    path, _, _ = saved
    data = path.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    cuts = {
        "in-length-prefix": 5,
        "just-after-length": 8,
        "in-header": 8 + header_len // 2,
        "end-of-header": 8 + header_len,
        "middle-of-data": 8 + header_len + (len(data) - 8 - header_len) // 2,
        "one-byte-short": len(data) - 1,
    }
    for label, cut in cuts.items():
        bad = tmp_path / f"cut-{label}.safetensors"
        bad.write_bytes(data[:cut])
        message = _assert_one_line_bad_input(bad)
        assert "truncated" in message or "not a safetensors" in message, (label, message)


def test_random_bytes_are_bad_input(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(5):
        bad = tmp_path / f"random{i}.safetensors"
        bad.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
        _assert_one_line_bad_input(bad)
    # A plausible length prefix followed by garbage: the header is not JSON.
    bad = tmp_path / "garbage-header.safetensors"
    bad.write_bytes(struct.pack("<Q", 16) + b"\xff\xfe{not json!!" + b"\0" * 64)
    assert "JSON" in _assert_one_line_bad_input(bad)
    bad = tmp_path / "list-header.safetensors"
    bad.write_bytes(struct.pack("<Q", 2) + b"[]")
    _assert_one_line_bad_input(bad)


def test_empty_file_is_bad_input(tmp_path):
    bad = tmp_path / "empty.safetensors"
    bad.write_bytes(b"")
    assert "0 bytes" in _assert_one_line_bad_input(bad)


def test_plain_safetensors_without_unlearn_metadata(tmp_path):
    _, model = _model()
    plain = tmp_path / "plain.safetensors"
    save_file(model.state_dict(), str(plain))
    assert "unlearn" in _assert_one_line_bad_input(plain)
    other = tmp_path / "other-meta.safetensors"
    save_file(model.state_dict(), str(other), metadata={"format": "pt"})
    assert "unlearn" in _assert_one_line_bad_input(other)


def test_bad_unlearn_metadata(tmp_path):
    _, model = _model()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    cases = {
        "not-json": "{arch",
        "no-arch": json.dumps({"format": 1}),
        "future-format": json.dumps({"format": FORMAT + 1, "arch": {"name": "mlp", "kwargs": {}}}),
    }
    for label, value in cases.items():
        bad = tmp_path / f"{label}.safetensors"
        save_file(state, str(bad), metadata={META_KEY: value})
        _assert_one_line_bad_input(bad)


def test_directory_is_bad_input(tmp_path):
    directory = tmp_path / "a-directory.safetensors"
    directory.mkdir()
    assert "directory" in _assert_one_line_bad_input(directory)


def test_missing_file_is_bad_input(tmp_path):
    missing = tmp_path / "nope.safetensors"
    assert "not found" in _assert_one_line_bad_input(missing)


def test_weights_that_do_not_fit_the_architecture(tmp_path):
    spec, model = _model(hidden=[8])
    state = dict(model.state_dict())
    state["extra.weight"] = torch.zeros(2)
    path = tmp_path / "extra.safetensors"
    save_checkpoint(path, state, _meta(spec))
    with pytest.raises(BadInput, match="do not fit"):
        load_checkpoint(path).build_model()


def test_weights_of_the_wrong_shape_are_bad_input(tmp_path):
    _, model = _model(hidden=[8])
    other_spec, _ = _model(hidden=[16])
    path = tmp_path / "mismatch.safetensors"
    save_checkpoint(path, model.state_dict(), _meta(other_spec))
    with pytest.raises(BadInput):
        load_checkpoint(path).build_model()


def test_hand_crafted_header_with_odd_metadata_is_bad_input(tmp_path):
    arch = {"name": "mlp", "kwargs": {"input_shape": [2], "num_classes": 2}}
    for label, value in {
        "meta-object": {"arch": arch},                            # not a JSON string
        "format-text": json.dumps({"format": "one", "arch": arch}),  # format not an int
    }.items():
        header = json.dumps({"__metadata__": {META_KEY: value}}).encode()
        bad = tmp_path / f"crafted-{label}.safetensors"
        bad.write_bytes(struct.pack("<Q", len(header)) + header)
        _assert_one_line_bad_input(bad)


# -- metadata ------------------------------------------------------------------


def test_metadata_has_the_design_keys_and_round_trips(saved):
    path, model, spec = saved
    ckpt = load_checkpoint(path)
    assert DESIGN_KEYS <= set(ckpt.meta)
    assert ckpt.meta["format"] == FORMAT
    assert ckpt.arch == spec
    assert ckpt.training == _meta(spec)["training"]
    assert ckpt.dataset == _meta(spec)["dataset"]
    assert ckpt.lineage == []
    assert ckpt.kind == "plain"
    assert ckpt.path == path
    assert ckpt.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert set(ckpt.state) == set(model.state_dict())
    # The metadata is one JSON object under one key of the safetensors header.
    (header_len,) = struct.unpack("<Q", path.read_bytes()[:8])
    header = json.loads(path.read_bytes()[8 : 8 + header_len])
    assert set(header["__metadata__"]) == {META_KEY}
    assert json.loads(header["__metadata__"][META_KEY]) == ckpt.meta


def test_read_header_meta_agrees_with_load(saved):
    path, model, _ = saved
    info = read_header_meta(path)
    ckpt = load_checkpoint(path)
    assert info["meta"] == ckpt.meta
    assert info["sha256"] == ckpt.sha256
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert info["tensors"] == {k: list(v.shape) for k, v in model.state_dict().items()}


def test_read_header_meta_counts_only_trainable_parameters_of_a_batchnorm_model(tmp_path):
    spec, model = _model("densenet", (1, 12, 12), 3)
    path = tmp_path / "dn.safetensors"
    save_checkpoint(path, model.state_dict(), _meta(spec))
    info = read_header_meta(path)
    trainable = sum(p.numel() for p in model.parameters())
    # BN running mean/var are floating buffers, not parameters: not counted.
    assert info["parameters"] == trainable
    assert any(k.endswith("num_batches_tracked") for k in info["tensors"])


def test_manifest_path_resolves_relative_to_the_checkpoint(tmp_path):
    spec, model = _model()
    (tmp_path / "data").mkdir()
    (tmp_path / "models").mkdir()
    manifest = tmp_path / "data" / "manifest.yaml"
    out = tmp_path / "models" / "m.safetensors"
    meta = _meta(spec)
    meta["dataset"]["manifest"] = relative_manifest(manifest, out)
    assert meta["dataset"]["manifest"] == "../data/manifest.yaml"
    save_checkpoint(out, model.state_dict(), meta)
    assert load_checkpoint(out).manifest_path() == manifest.resolve()


def test_checkpoint_bytes_are_deterministic():
    spec, model = _model()
    assert checkpoint_bytes(model.state_dict(), _meta(spec)) == checkpoint_bytes(model.state_dict(), _meta(spec))


# -- atomic save ---------------------------------------------------------------


def test_save_returns_sha256_and_leaves_no_temp_files(tmp_path):
    spec, model = _model()
    path = tmp_path / "m.safetensors"
    digest = save_checkpoint(path, model.state_dict(), _meta(spec))
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_failed_verify_keeps_the_previous_file(saved):
    path, model, spec = saved
    before = path.read_bytes()
    for bad_value in (math.nan, math.inf):
        state = {k: v.clone() for k, v in model.state_dict().items()}
        first = next(iter(state))
        state[first].view(-1)[0] = bad_value
        with pytest.raises(BadInput, match="non-finite"):
            save_checkpoint(path, state, _meta(spec))
        assert path.read_bytes() == before
        assert _no_temp_files(path.parent)
        assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_failed_verify_with_no_previous_file_writes_nothing(tmp_path):
    spec, model = _model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    next(iter(state.values())).view(-1)[0] = math.nan
    with pytest.raises(BadInput):
        save_checkpoint(tmp_path / "new.safetensors", state, _meta(spec))
    assert list(tmp_path.iterdir()) == []


def test_save_over_an_existing_checkpoint_replaces_it(saved):
    path, model, spec = saved
    new_state = {k: v + 1 for k, v in model.state_dict().items()}
    save_checkpoint(path, new_state, _meta(spec))
    loaded = load_checkpoint(path).state
    assert all(torch.equal(loaded[k], new_state[k]) for k in new_state)
    assert _no_temp_files(path.parent)


def test_save_into_a_missing_directory_is_bad_input(tmp_path):
    spec, model = _model()
    target = tmp_path / "missing" / "m.safetensors"
    with pytest.raises(BadInput, match="does not exist"):
        save_checkpoint(target, model.state_dict(), _meta(spec))
    assert not (tmp_path / "missing").exists()
