"""Hostile input files (issue #15, part 1): each is refused with exit 2 and one short line.

Checkpoints, manifests, data files, request (ids) files and ``--config`` files
that are FIFOs, devices, directories, symlink loops, alias bombs, oversized,
deeply nested, malformed or not what they claim to be. Every case goes through
``harness.refuse``: exit 2, one stderr line under 300 characters, no
traceback, no raw control character, inputs byte-identical. Cases that could
block (FIFOs, /dev/zero, alias bombs) run as a subprocess under a 5-second
limit; the others run in-process so the module stays fast.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from harness import refuse

SECRET = "hunter2-do-not-print-this-line"

# -- building hostile files ---------------------------------------------------------


def split_checkpoint(path: Path) -> tuple[dict[str, Any], bytes]:
    """(safetensors header, tensor bytes) of a checkpoint file."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def join_checkpoint(path: Path, header: dict[str, Any], body: bytes) -> Path:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # safetensors pads the header to 8 bytes
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)
    return path


def raw_header(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def with_meta(src: Path, dst: Path, mutate: Callable[[dict[str, Any]], Any] | None = None,
              raw: str | None = None) -> Path:
    """A copy of ``src`` whose ``unlearn`` metadata is mutated (or replaced by ``raw`` text)."""
    header, body = split_checkpoint(src)
    if raw is None:
        meta = json.loads(header["__metadata__"]["unlearn"])
        mutate(meta)
        raw = json.dumps(meta)
    header["__metadata__"]["unlearn"] = raw
    return join_checkpoint(dst, header, body)


def with_weight(src: Path, dst: Path, value: float) -> Path:
    """A copy of ``src`` with one element of its first float tensor set to ``value``."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as fh:
        meta = fh.metadata()
        state = {k: fh.get_tensor(k) for k in fh.keys()}
    name = sorted(k for k, v in state.items() if v.is_floating_point())[0]
    state[name] = state[name].clone()
    state[name].view(-1)[0] = value
    save_file(state, str(dst), metadata=meta)
    return dst


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def symlink(path: Path, target: str | Path) -> Path:
    os.symlink(target, path)
    return path


def loop(path: Path) -> Path:
    """A symlink loop: path -> path.other -> path."""
    other = path.with_name(path.name + ".other")
    os.symlink(other.name, path)
    os.symlink(path.name, other)
    return path


def alias_bomb() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [{', '.join(['*' + prev] * 9)}]")
    return "\n".join(lines) + "\n"


def nested_yaml(depth: int) -> str:
    return "name: x\nnum_classes: " + "[" * depth + "]" * depth + "\n"


# -- the cases ---------------------------------------------------------------------


@dataclass
class Env:
    tmp: Path
    manifest: Path   # the shared blobs manifest (read only)
    model: Path      # the shared trained checkpoint (read only)
    inputs: list[Path] = field(default_factory=list)

    def file(self, name: str, content: str | bytes) -> Path:
        p = self.tmp / name
        p.write_bytes(content.encode() if isinstance(content, str) else content)
        return p

    def ckpt(self, mutate: Callable[[dict], Any] | None = None, raw: str | None = None) -> Path:
        return with_meta(self.model, self.tmp / "bad.safetensors", mutate, raw)

    def manifest_with(self, text_or_mutation: str | Callable[[str], str]) -> Path:
        """A manifest beside a copy of the blobs data file."""
        shutil.copy(self.manifest.parent / "blobs.safetensors", self.tmp / "blobs.safetensors")
        base = self.manifest.read_text()
        text = text_or_mutation(base) if callable(text_or_mutation) else text_or_mutation
        return self.file("m.yaml", text)

    def evaluate(self, ckpt: Path, data: bool = True) -> list[str]:
        return ["evaluate", ckpt, *(["--data", self.manifest] if data else []), "--quiet"]

    def inspect(self, ckpt: Path) -> list[str]:
        """A checkpoint command that does not import torch: quick as a subprocess."""
        return ["inspect", ckpt]

    def mark(self, manifest: Path) -> list[str]:
        """A manifest command that does not import torch: quick as a subprocess."""
        return ["mark", manifest, "--out", self.tmp / "marked.txt", "--strategy", "random", "--fraction", "0.1"]

    def train(self, manifest: Path) -> list[str]:
        return ["train", manifest, "--out", self.tmp / "out.safetensors", "--epochs", "1", "--quiet"]

    def forget(self, ids: Path | str, *extra: Any) -> list[str]:
        return ["forget", self.model, ids, "--method", "puma", "--data", self.manifest,
                "--out", self.tmp / "out.safetensors", "--quiet", *extra]

    def config(self, path: Path) -> list[str]:
        good = self.file("ok-ids.txt", "0\n")
        return self.forget(good, "--config", path)


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def mutate(meta: dict) -> None:
        *parents, last = path.split(".")
        node = meta
        for key in parents:
            node = node[key]
        node[last] = value
    return mutate


def _data_path(kind: str) -> Callable[[Env], tuple[list, Path]]:
    """A manifest whose data.path is a FIFO / loop / dangling link / /dev/zero link."""
    def build(env: Env) -> tuple[list, Path]:
        m = env.manifest_with(lambda t: t.replace("path: blobs.safetensors", "path: hostile.safetensors"))
        target = env.tmp / "hostile.safetensors"
        {"fifo": fifo, "loop": loop, "dangling": lambda p: symlink(p, "gone.safetensors"),
         "zero": lambda p: symlink(p, "/dev/zero"), "dir": lambda p: p.mkdir()}[kind](target)
        return env.mark(m), m
    return build


# Each case: (id, build(env) -> (args, hostile path), expected fragment or None, subprocess?)
Case = tuple[str, Callable[[Env], tuple[list, Path]], str | None, bool]

CHECKPOINT_CASES: list[Case] = [
    ("ckpt-fifo", lambda e: (e.evaluate(p := fifo(e.tmp / "c.safetensors")), p), "FIFO", True),
    ("ckpt-fifo-inspect", lambda e: (e.inspect(p := fifo(e.tmp / "c.safetensors")), p), "FIFO", True),
    ("ckpt-dev-zero", lambda e: (e.inspect(Path("/dev/zero")), Path("/dev/zero")), "character device", True),
    ("ckpt-link-to-dev-zero", lambda e: (e.inspect(p := symlink(e.tmp / "c.safetensors", "/dev/zero")), p),
     "character device", True),
    ("ckpt-link-to-dev-zero-in-process",
     lambda e: (e.evaluate(p := symlink(e.tmp / "c.safetensors", "/dev/zero")), p), "character device", False),
    ("ckpt-directory", lambda e: (e.evaluate(p := e.tmp), p), "directory", False),
    ("ckpt-symlink-loop", lambda e: (e.evaluate(p := loop(e.tmp / "c.safetensors")), p), "loop", False),
    ("ckpt-dangling-link", lambda e: (e.evaluate(p := symlink(e.tmp / "c.safetensors", "gone")), p),
     "dangling", False),
    ("ckpt-empty", lambda e: (e.evaluate(p := e.file("c.safetensors", b"")), p), "0 bytes", False),
    ("ckpt-truncated", lambda e: (e.evaluate(p := e.file("c.safetensors", e.model.read_bytes()[:-100])), p),
     "truncated", False),
    ("ckpt-garbage", lambda e: (e.evaluate(p := e.file("c.safetensors", os.urandom(4096))), p), None, False),
    ("ckpt-huge-header-length",
     lambda e: (e.evaluate(p := e.file("c.safetensors", struct.pack("<Q", 1 << 62) + b"{}")), p), None, False),
    ("ckpt-header-nested", lambda e: (e.evaluate(p := e.file("c.safetensors", raw_header(
        b'{"t": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"))), p), "nested", False),
    ("ckpt-header-entry-bad-shape", lambda e: (e.evaluate(p := join_checkpoint(e.tmp / "c.safetensors", {
        "t": {"dtype": "F32", "shape": [-1, "x"], "data_offsets": [0, 0]}}, b"")), p), "corrupt", False),
    ("meta-nested-100k", lambda e: (e.evaluate(p := e.ckpt(raw="[" * 100_000 + "]" * 100_000)), p),
     "nested", False),
    ("meta-nested-50", lambda e: (e.evaluate(p := e.ckpt(_set("training.x", json.loads("[" * 50 + "]" * 50)))), p),
     "nested", False),
    ("meta-not-json", lambda e: (e.evaluate(p := e.ckpt(raw="{not json")), p), "JSON", False),
    ("meta-not-object", lambda e: (e.evaluate(p := e.ckpt(raw="[1, 2]")), p), "arch", False),
    ("meta-format-text", lambda e: (e.evaluate(p := e.ckpt(_set("format", "one"))), p), "format", False),
    ("meta-format-future", lambda e: (e.evaluate(p := e.ckpt(_set("format", 99))), p), "newer", False),
    ("meta-arch-not-object", lambda e: (e.evaluate(p := e.ckpt(_set("arch", "mlp"))), p), "'arch'", False),
    ("meta-arch-name-number", lambda e: (e.evaluate(p := e.ckpt(_set("arch.name", 7))), p), "arch.name", False),
    ("meta-arch-kwargs-list", lambda e: (e.evaluate(p := e.ckpt(_set("arch.kwargs", [1]))), p),
     "arch.kwargs", False),
    ("meta-negative-width", lambda e: (e.evaluate(p := e.ckpt(_set("arch.kwargs.hidden", [8, -4]))), p),
     "arch.kwargs.hidden[1]", False),
    ("meta-absurd-width", lambda e: (e.evaluate(p := e.ckpt(_set("arch.kwargs.hidden", [10**12]))), p),
     "arch.kwargs.hidden[0]", False),
    ("meta-wide-but-plausible", lambda e: (e.evaluate(p := e.ckpt(_set("arch.kwargs.hidden", [60000, 60000]))),
                                           p), "do not fit", False),
    ("meta-num-classes-huge", lambda e: (e.evaluate(p := e.ckpt(_set("arch.kwargs.num_classes", 10**7))), p),
     "num_classes", False),
    ("meta-input-shape-zero", lambda e: (e.evaluate(p := e.ckpt(_set("arch.kwargs.input_shape", [0]))), p),
     "input_shape", False),
    ("meta-kwarg-nan", lambda e: (e.evaluate(p := e.ckpt(_set("arch.kwargs.reduction", float("nan")))), p),
     "finite", False),
    ("meta-training-not-object", lambda e: (e.evaluate(p := e.ckpt(_set("training", "sgd"))), p),
     "'training'", False),
    ("meta-lineage-not-list", lambda e: (e.evaluate(p := e.ckpt(_set("lineage", {"method": "puma"}))), p),
     "'lineage'", False),
    ("meta-lineage-entry-text", lambda e: (e.evaluate(p := e.ckpt(_set("lineage", ["puma"]))), p),
     "lineage[0]", False),
    ("meta-dataset-not-object", lambda e: (e.evaluate(p := e.ckpt(_set("dataset", 3))), p), "'dataset'", False),
    ("meta-manifest-not-string", lambda e: (e.evaluate(p := e.ckpt(_set("dataset.manifest", 12)), data=False), p),
     "dataset.manifest", False),
    ("meta-n-train-negative", lambda e: (e.evaluate(p := e.ckpt(_set("dataset.n_train", -1))), p),
     "dataset.n_train", False),
    ("meta-n-train-text", lambda e: (e.evaluate(p := e.ckpt(_set("dataset.n_train", "many"))), p),
     "dataset.n_train", False),
    ("meta-missing", lambda e: (e.evaluate(p := join_checkpoint(
        e.tmp / "c.safetensors", {"__metadata__": {"format": "pt"}}, b"")), p), "unlearn", False),
    ("weights-nan", lambda e: (e.evaluate(p := with_weight(e.model, e.tmp / "c.safetensors", float("nan"))),
                               p), "weights hold NaN/inf", False),
    ("weights-inf", lambda e: (e.evaluate(p := with_weight(e.model, e.tmp / "c.safetensors", float("-inf"))),
                               p), "weights hold NaN/inf", False),
    ("recorded-manifest-loop", lambda e: (e.evaluate(e.ckpt(_set("dataset.manifest", "ml.yaml")),
                                                     data=False), loop(e.tmp / "ml.yaml")), "loop", False),
]

MANIFEST_CASES: list[Case] = [
    ("manifest-fifo", lambda e: (e.mark(p := fifo(e.tmp / "m.yaml")), p), "FIFO", True),
    ("manifest-dev-zero-link", lambda e: (e.mark(p := symlink(e.tmp / "m.yaml", "/dev/zero")), p),
     "character device", True),
    ("manifest-alias-bomb", lambda e: (e.mark(p := e.file("m.yaml", alias_bomb())), p), "alias", True),
    ("manifest-alias-bomb-train", lambda e: (e.train(p := e.file("m.yaml", alias_bomb())), p), "alias", False),
    ("manifest-alias-bomb-as-data", lambda e: (["evaluate", e.model, "--data", p := e.file("m.yaml", alias_bomb()),
                                               "--quiet"], p), "alias", False),
    ("manifest-oversized", lambda e: (e.train(p := e.file("m.yaml", "name: x\n" + "# pad\n" * 400_000)), p),
     "limit", False),
    ("manifest-nested", lambda e: (e.train(p := e.file("m.yaml", nested_yaml(5000))), p), "nested", False),
    ("manifest-directory", lambda e: (e.train(p := e.tmp), p), "directory", False),
    ("manifest-loop", lambda e: (e.train(p := loop(e.tmp / "m.yaml")), p), "loop", False),
    ("manifest-dangling", lambda e: (e.train(p := symlink(e.tmp / "m.yaml", "gone.yaml")), p), "dangling", False),
    ("manifest-empty", lambda e: (e.train(p := e.file("m.yaml", "")), p), "mapping", False),
    ("manifest-binary", lambda e: (e.train(p := e.file("m.yaml", b"\x89PNG\r\n\x1a\n\xff\xfe" + os.urandom(300))),
                                   p), "UTF-8", False),
    ("manifest-num-classes-huge", lambda e: (e.train(p := e.manifest_with(
        lambda t: t.replace("num_classes: 2", f"num_classes: {10**12}"))), p), "num_classes", False),
    ("manifest-timestamp", lambda e: (e.train(p := e.manifest_with(
        lambda t: t + "source: 2020-13-45\n")), p), "YAML", False),
    ("data-fifo", _data_path("fifo"), "FIFO", True),
    ("data-dev-zero-link", _data_path("zero"), "character device", True),
    ("data-loop", _data_path("loop"), "loop", False),
    ("data-dangling", _data_path("dangling"), "dangling", False),
    ("data-directory", _data_path("dir"), "directory", False),
    ("csv-long-cell", lambda e: (e.train(e.manifest_with(
        "name: c\nnum_classes: 2\ndata:\n  path: d.csv\n  labels: y\n")), e.file(
        "d.csv", "a,y\n1,0\n" + "z" * 100_000 + ",1\n")), "data.features", False),
    ("csv-huge-field", lambda e: (e.train(e.manifest_with(
        "name: c\nnum_classes: 2\ndata:\n  path: d.csv\n  labels: y\n")), e.file(
        "d.csv", "a,y\n" + "9" * 300_000 + ",1\n")), "data.path", False),
]

IDS_CASES: list[Case] = [
    ("ids-fifo", lambda e: (e.forget(p := fifo(e.tmp / "ids.txt")), p), "FIFO", True),
    ("ids-dev-zero", lambda e: (e.forget("/dev/zero"), Path("/dev/zero")), "character device", True),
    ("ids-dev-zero-link", lambda e: (e.forget(p := symlink(e.tmp / "ids.txt", "/dev/zero")), p),
     "character device", True),
    ("ids-directory", lambda e: (e.forget(p := e.tmp), p), "directory", False),
    ("ids-loop", lambda e: (e.forget(p := loop(e.tmp / "ids.txt")), p), "loop", False),
    ("ids-dangling", lambda e: (e.forget(p := symlink(e.tmp / "ids.txt", "gone.txt")), p), "dangling", False),
    ("ids-10mb-line", lambda e: (e.forget(p := e.file("ids.txt", "0\n" + "7" * 10_000_000 + "\n")), p),
     "line 2", False),
    ("ids-binary", lambda e: (e.forget(p := e.file("ids.txt", b"\x00\xff\xfe" + os.urandom(200))), p),
     "UTF-8", False),
    ("ids-empty", lambda e: (e.forget(p := e.file("ids.txt", "")), p), "no IDs", False),
    ("ids-long-unknown", lambda e: (e.forget(p := e.file("ids.txt", "".join(
        f"{'q' * 1000}{i}\n" for i in range(20)))), p), "not in the train split", False),
]

CONFIG_CASES: list[Case] = [
    ("config-fifo", lambda e: (e.config(p := fifo(e.tmp / "c.yaml")), p), "FIFO", True),
    ("config-dev-zero", lambda e: (e.config(Path("/dev/zero")), Path("/dev/zero")), "character device", True),
    ("config-dev-zero-link", lambda e: (e.config(p := symlink(e.tmp / "c.yaml", "/dev/zero")), p),
     "character device", True),
    ("config-alias-bomb", lambda e: (e.config(p := e.file("c.yaml", alias_bomb())), p), "alias", True),
    ("config-oversized", lambda e: (e.config(p := e.file("c.yaml", "eta: 0.1\n" + "#\n" * 700_000)), p),
     "limit", False),
    ("config-nested", lambda e: (e.config(p := e.file("c.yaml", "eta: " + "[" * 3000 + "]" * 3000)), p),
     "nested", False),
    ("config-directory", lambda e: (e.config(p := e.tmp), p), "directory", False),
    ("config-loop", lambda e: (e.config(p := loop(e.tmp / "c.yaml")), p), "loop", False),
    ("config-list", lambda e: (e.config(p := e.file("c.yaml", "- eta\n- 0.1\n")), p), "mapping", False),
    ("config-binary", lambda e: (e.config(p := e.file("c.yaml", b"\xff\xd8\xff" + os.urandom(100))), p),
     "UTF-8", False),
    ("config-key-not-string", lambda e: (e.config(p := e.file("c.yaml", "[1, 2]: 3\n")), p), None, False),
    ("config-secret-syntax", lambda e: (e.config(p := e.file("c.yaml", f"token: {SECRET}: x\n")), p),
     "line 1", False),
]

ALL = CHECKPOINT_CASES + MANIFEST_CASES + IDS_CASES + CONFIG_CASES


@pytest.fixture
def env(tmp_path: Path, blobs_manifest: Path, blobs_checkpoint: Path) -> Env:
    work = tmp_path / "work"
    work.mkdir()
    return Env(work, blobs_manifest, blobs_checkpoint)


@pytest.mark.parametrize("build,expect,slow", [c[1:] for c in ALL], ids=[c[0] for c in ALL])
def test_hostile_input_is_refused(env: Env, build, expect: str | None, slow: bool) -> None:
    args, hostile = build(env)
    inputs = [hostile, env.model, env.manifest, *sorted(env.tmp.glob("*"))]
    out = refuse(args, inputs, subprocess_run=slow, expect=expect)
    assert SECRET not in out.stderr


def _secret_case(env: Env, secret_text: str) -> tuple[list, list[Path]]:
    """A checkpoint whose recorded manifest is ../outside/secret.txt."""
    outside = env.tmp / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text(secret_text)
    inner = env.tmp / "inner"
    inner.mkdir()
    ckpt = with_meta(env.model, inner / "c.safetensors", _set("dataset.manifest", "../outside/secret.txt"))
    return ["evaluate", ckpt, "--quiet"], [secret, ckpt]


@pytest.mark.parametrize("text", [
    f"password: {SECRET}: and more\n",             # a YAML syntax error on the secret's line
    f"api_token: {SECRET}\n",                      # a valid mapping: unknown key, and its value
    f"name: {SECRET}\nnum_classes: {SECRET}\n",    # known keys with wrong values
    f"{SECRET}\n" * 3,                             # plain text: one string
    f"- {SECRET}\n",                               # a list
], ids=["syntax-error", "unknown-key", "bad-values", "plain-text", "list"])
def test_recorded_manifest_never_echoes_the_file(env: Env, text: str) -> None:
    args, inputs = _secret_case(env, text)
    out = refuse(args, inputs)
    assert SECRET not in out.stderr
    assert "password" not in out.stderr and "api_token" not in out.stderr


def test_stdin_with_one_huge_line_is_one_short_line(env: Env) -> None:
    refuse(env.forget("-"), [env.model], stdin=b"5\n" + b"x" * 2_000_000 + b"\n", expect="line 2")


def test_a_sound_checkpoint_and_manifest_still_load(env: Env) -> None:
    """The checks refuse nothing that unlearn itself writes."""
    from harness import invoke

    out = invoke(["evaluate", env.model, "--data", env.manifest, "--quiet"])
    assert out.code == 0, out.stderr
    copy = with_meta(env.model, env.tmp / "same.safetensors", lambda meta: None)
    assert invoke(["evaluate", copy, "--data", env.manifest, "--quiet"]).code == 0
