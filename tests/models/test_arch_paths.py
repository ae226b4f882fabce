"""--arch package.module:callable and --arch-opt key=value (issue #13).

A tiny package in tmp_path is put on PYTHONPATH; train records the import path
and every argument, and evaluate/forget rebuild the module with no option.
Without PYTHONPATH the checkpoint's module is not found: exit 2, one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.conftest import unlearn_cmd, write_blobs
from unlearn_cli.errors import BadInput
from unlearn_cli.models import registry

BUILDER = textwrap.dedent("""
    import math
    from torch import nn

    def build(input_shape, num_classes, width: int = 16, depth: int = 1):
        layers, size = [], math.prod(input_shape)
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.ReLU()]
            size = width
        return nn.Sequential(*layers, nn.Linear(size, num_classes))

    class Net:
        @staticmethod
        def build(input_shape, num_classes, widths: tuple[int, ...] = (8,), rate=0.5, flag: bool = False):
            return build(input_shape, num_classes, widths[0])

    def raises(input_shape, num_classes):
        raise ValueError("boom")

    def not_a_module(input_shape, num_classes):
        return 3
""")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("arch_paths")
    package = root / "pkgs" / "mypkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "mod.py").write_text(BUILDER)
    manifest = write_blobs(root / "data", n=200)
    return root, manifest


def _run(*args: object, pythonpath: Path | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200")
    env.pop("PYTHONPATH", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(unlearn_cmd() + [str(a) for a in args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def _one_line_exit_2(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def _arch(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return json.loads(handle.metadata()["unlearn"])["arch"]


def test_train_evaluate_forget_with_an_import_path(world):
    root, manifest = world
    pkgs, ckpt = root / "pkgs", root / "mine.safetensors"
    proc = _run("train", manifest, "--arch", "mypkg.mod:build", "--arch-opt", "width=32", "--epochs", "5",
                "--out", ckpt, "--quiet", pythonpath=pkgs)
    assert proc.returncode == 0, proc.stderr
    assert _arch(ckpt) == {"name": "mypkg.mod:build",
                           "kwargs": {"input_shape": [2], "num_classes": 2, "width": 32, "depth": 1}}
    evaluated = _run("evaluate", ckpt, "--json", pythonpath=pkgs)
    assert evaluated.returncode == 0, evaluated.stderr
    ids = root / "ids.txt"
    from unlearn_cli.data.manifest import load_manifest

    train_ids = [load_manifest(manifest).ids[i] for i in load_manifest(manifest).train_indices()[:5]]
    ids.write_text("\n".join(map(str, train_ids)) + "\n")
    forgot = _run("forget", ckpt, ids, "--method", "puma", "--out", root / "forgot.safetensors", "--quiet",
                  pythonpath=pkgs)
    assert forgot.returncode == 0, forgot.stderr
    assert _arch(root / "forgot.safetensors")["name"] == "mypkg.mod:build"
    # without PYTHONPATH, even from the package's own folder, the module is not imported
    for cwd in (root, pkgs):
        line = _one_line_exit_2(_run("evaluate", ckpt, cwd=cwd))
        assert "architecture 'mypkg.mod:build': no module named 'mypkg'" in line and "PYTHONPATH" in line


@pytest.mark.parametrize("args,words", [
    (["--arch", "mypkg.mod:build", "--arch-opt", "nope=1"], ["nope", "valid: width, depth"]),
    (["--arch", "mypkg.mod:build", "--arch-opt", "width=abc"], ["'width'", "int", "'abc'"]),
    (["--arch", "missing.mod:build"], ["no module named 'missing'", "PYTHONPATH"]),
    (["--arch", "mypkg.mod:nothere"], ["no attribute 'nothere'"]),
    (["--arch", "mypkg/mod.py:build"], ["not an import path"]),
    (["--arch-opt", "width"], ["key=value"]),
])
def test_bad_arch_and_options_are_exit_2_one_line(world, args, words):
    root, manifest = world
    line = _one_line_exit_2(_run("train", manifest, *args, "--out", root / "bad.safetensors",
                                 pythonpath=root / "pkgs"))
    for word in words:
        assert word in line


def test_options_are_typed_by_the_signature(world, monkeypatch):
    root, _ = world
    monkeypatch.syspath_prepend(str(root / "pkgs"))
    builder = registry.get_builder("mypkg.mod:Net.build")
    kwargs = registry.parse_arch_opts("mypkg.mod:Net.build", builder, ["widths=4,5", "rate=0.1", "flag=yes"])
    assert kwargs == {"widths": [4, 5], "rate": 0.1, "flag": True}
    assert registry.parse_arch_opts("mypkg.mod:Net.build", builder, []) == {"widths": [8], "rate": 0.5,
                                                                            "flag": False}
    with pytest.raises(BadInput, match=r"'rate' expects float, got 'x'"):
        registry.parse_arch_opts("mypkg.mod:Net.build", builder, ["rate=x"])
    with pytest.raises(BadInput, match="cannot be recorded"):
        registry.parse_arch_opts("mypkg.mod:Net.build", builder, ["widths=-1"])
    mlp = registry.get_builder("mlp")
    assert registry.parse_arch_opts("mlp", mlp, ["hidden=8"]) == {"hidden": [8], "activation": "relu"}


def test_a_builder_that_fails_or_returns_no_module_is_bad_input(world, monkeypatch):
    root, _ = world
    monkeypatch.syspath_prepend(str(root / "pkgs"))
    with pytest.raises(BadInput, match="rejects the recorded arguments"):
        registry.build(registry.make_spec("mypkg.mod:build", (2,), 2, nope=1))
    with pytest.raises(BadInput, match="failed to build from its arguments: ValueError: boom"):
        registry.build(registry.make_spec("mypkg.mod:raises", (2,), 2))
    with pytest.raises(BadInput, match="returned int, not a torch.nn.Module"):
        registry.build(registry.make_spec("mypkg.mod:not_a_module", (2,), 2))
    with pytest.raises(BadInput, match="not a callable"):
        registry.get_builder("mypkg.mod:math")


def test_metadata_accepts_import_paths_and_refuses_file_paths(tmp_path):
    from unlearn_cli.models.metadata import _check_arch

    _check_arch(tmp_path / "c.safetensors", {"name": "pkg.sub.mod:Class.build", "kwargs": {}})
    with pytest.raises(BadInput, match="arch.name"):
        _check_arch(tmp_path / "c.safetensors", {"name": "/tmp/evil.py:build", "kwargs": {}})
