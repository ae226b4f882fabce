"""No output may destroy an input, nothing is clobbered silently, environmental failures are exit 2.

Issue #15 (output-path safety, read-only places) and issue #14 item 1 (no
clobbering), through the harness's ``refuse``: each case asserts exit 2, one
short stderr line, no traceback, and every named file byte-identical after.

Tests run as root here, and root ignores file modes: a read-only folder is
made with ``chattr +i`` (an immutable folder: EPERM even for root); where
neither modes nor ``chattr`` can be enforced the case is skipped, saying why.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import invoke, refuse

FILES = ("blobs.safetensors", "manifest.yaml", "model.safetensors")
FAST = ("--method", "retrain")


@pytest.fixture(scope="module")
def template(blobs_checkpoint: Path, tmp_path_factory) -> Path:
    from unlearn_cli.data.manifest import load_manifest

    directory = tmp_path_factory.mktemp("outputs")
    for name in FILES:
        shutil.copy2(blobs_checkpoint.parent / name, directory / name)
    train_ids = load_manifest(directory / "manifest.yaml").train_ids
    (directory / "ids.txt").write_text("".join(f"{i}\n" for i in train_ids[:4]))
    (directory / "more.txt").write_text("".join(f"{i}\n" for i in train_ids[4:7]))
    (directory / "config.yaml").write_text("{}\n")
    return directory


class W:
    """A per-test copy of the template folder, with its paths by name."""

    def __init__(self, directory: Path):
        self.dir = directory

    def __getattr__(self, name: str) -> Path:
        return self.dir / {"model": "model.safetensors", "data": "blobs.safetensors", "manifest": "manifest.yaml",
                           "ids": "ids.txt", "more": "more.txt", "config": "config.yaml",
                           "ledger": "unlearn-ledger.jsonl"}[name]

    @property
    def inputs(self) -> list[Path]:
        return [self.model, self.data, self.manifest, self.ids, self.config]

    def link(self, name: str, target: Path) -> Path:
        path = self.dir / name
        path.symlink_to(target)
        return path

    def temps(self) -> list[str]:
        return sorted(str(p.relative_to(self.dir)) for p in self.dir.rglob("*") if p.name.endswith(".tmp"))


@pytest.fixture
def w(template: Path, tmp_path: Path) -> W:
    directory = tmp_path / "w"
    shutil.copytree(template, directory)
    return W(directory)


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` made read-only for this process: modes for a normal user, ``chattr +i`` for root."""
    if os.geteuid() != 0:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(mode)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)],
                                                        capture_output=True).returncode != 0:
        pytest.skip("running as root and chattr +i is unavailable: a read-only folder cannot be enforced")
    try:
        probe = folder / ".probe"
        try:
            probe.touch()
        except OSError:
            pass
        else:
            probe.unlink()
            pytest.skip("chattr +i did not make the folder read-only on this file system")
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)


# -- an output path that is an input, or another output: exit 2 naming both, before any work --------

def test_forget_report_is_the_input_checkpoint(w: W):
    refuse(["forget", w.model, w.ids, *FAST, "--report", w.model, "--force"], w.inputs,
           expect=f"--report {w.model} is the input checkpoint")
    assert not w.ledger.exists()  # refused before any work: no ledger line either


def test_forget_report_is_the_input_checkpoint_through_a_symlink(w: W):
    link = w.link("report.json", w.model)
    refuse(["forget", w.model, w.ids, *FAST, "--report", link, "--force"], w.inputs + [link],
           expect="is the input checkpoint")


def test_forget_report_is_the_input_checkpoint_through_a_hard_link(w: W):
    hard = w.dir / "hard.json"
    os.link(w.model, hard)
    refuse(["forget", w.model, w.ids, *FAST, "--report", hard, "--force"], w.inputs + [hard],
           expect="is the input checkpoint")


def test_forget_in_place_report_is_the_checkpoint(w: W):
    refuse(["forget", w.model, w.ids, *FAST, "--in-place", "--report", w.model, "--force"], w.inputs,
           expect="is the input checkpoint")


def test_forget_report_is_the_out(w: W):
    out = w.dir / "x.safetensors"
    refuse(["forget", w.model, w.ids, *FAST, "--out", out, "--report", out], w.inputs + [out],
           expect="is also --out")


def test_forget_report_is_the_ledger(w: W):
    refuse(["forget", w.model, w.ids, *FAST, "--report", w.ledger], w.inputs + [w.ledger],
           expect="is also the ledger")


def test_forget_report_is_the_named_ledger_through_a_symlink(w: W):
    ledger = w.dir / "audit.jsonl"
    link = w.link("report.json", ledger)
    refuse(["forget", w.model, w.ids, *FAST, "--ledger", ledger, "--report", link, "--force"], w.inputs + [ledger],
           expect="is also --ledger")


def test_forget_out_is_the_data_file(w: W):
    refuse(["forget", w.model, w.ids, *FAST, "--out", w.data, "--force"], w.inputs, expect="is the data file")


def test_forget_out_is_the_data_file_through_a_symlink(w: W):
    link = w.link("served.safetensors", w.data)
    refuse(["forget", w.model, w.ids, *FAST, "--out", link, "--force"], w.inputs + [link],
           expect="is the data file")


def test_forget_out_is_the_manifest(w: W):
    refuse(["forget", w.model, w.ids, *FAST, "--out", w.manifest, "--force"], w.inputs, expect="is the manifest")


def test_forget_out_is_the_ids_file(w: W):
    refuse(["forget", w.model, w.ids, *FAST, "--out", w.ids, "--force"], w.inputs, expect="is the ids file")


def test_forget_report_is_the_config_file(w: W):
    refuse(["forget", w.model, w.ids, *FAST, "--config", w.config, "--report", w.config, "--force"], w.inputs,
           expect="is the --config file")


def test_forget_ledger_is_the_ids_file(w: W):
    refuse(["forget", w.model, w.ids, w.more, *FAST, "--ledger", w.more, "--out", w.dir / "o.safetensors"],
           w.inputs + [w.more], expect="is the ids file")


def test_forget_out_is_the_data_file_from_a_subprocess(w: W):
    refuse(["forget", w.model, w.ids, *FAST, "--out", w.data, "--force"], w.inputs, subprocess_run=True,
           expect="is the data file")


def test_train_out_is_the_manifest(w: W):
    refuse(["train", w.manifest, "--out", w.manifest, "--force", "--epochs", "1"], w.inputs, expect="is the manifest")


def test_train_out_is_the_data_file_through_a_symlink(w: W):
    link = w.link("new.safetensors", w.data)
    refuse(["train", w.manifest, "--out", link, "--force", "--epochs", "1"], w.inputs + [link],
           expect="is the data file")


def test_train_report_is_the_out(w: W):
    out = w.dir / "new.safetensors"
    refuse(["train", w.manifest, "--out", out, "--report", out, "--epochs", "1"], w.inputs + [out],
           expect="is also --out")


def test_train_report_is_the_data_file(w: W):
    refuse(["train", w.manifest, "--out", w.dir / "n.safetensors", "--report", w.data, "--force"], w.inputs,
           expect="is the data file")


def test_mark_out_is_the_manifest(w: W):
    refuse(["mark", w.manifest, "--strategy", "random", "--fraction", "0.1", "--out", w.manifest, "--force"],
           w.inputs, expect="is the manifest")


def test_mark_out_is_the_data_file_through_a_symlink(w: W):
    link = w.link("marked.txt", w.data)
    refuse(["mark", w.manifest, "--strategy", "random", "--fraction", "0.1", "--out", link, "--force"],
           w.inputs + [link], expect="is the data file")


def test_mark_out_is_the_checkpoint_it_follows(w: W):
    refuse(["mark", w.manifest, "--strategy", "ordered", "--fraction", "0.1", "--checkpoint", w.model,
            "--out", w.model, "--force"], w.inputs, expect="is the --checkpoint")


def test_mark_report_is_the_out(w: W):
    out = w.dir / "marked.txt"
    refuse(["mark", w.manifest, "--strategy", "random", "--fraction", "0.1", "--out", out, "--report", out],
           w.inputs + [out], expect="is also --out")


def test_calibrate_out_is_the_data_file(w: W):
    refuse(["calibrate", w.model, "--out", w.data, "--force"], w.inputs, expect="is the data file")


def test_calibrate_report_is_the_input_checkpoint(w: W):
    refuse(["calibrate", w.model, "--report", w.model, "--force"], w.inputs, expect="is the input checkpoint")


def test_calibrate_ledger_is_the_out(w: W):
    out = w.dir / "cal.safetensors"
    refuse(["calibrate", w.model, "--out", out, "--ledger", out], w.inputs + [out], expect="is also the output")


def test_debug_labels_out_is_the_checkpoint(w: W):
    refuse(["debug-labels", w.model, "--out", w.model, "--force"], w.inputs, expect="is the input checkpoint")


def test_debug_labels_out_is_the_data_file_through_a_symlink(w: W):
    link = w.link("suspects.txt", w.data)
    refuse(["debug-labels", w.model, "--out", link, "--force"], w.inputs + [link], expect="is the data file")


def test_debug_labels_report_is_the_out(w: W):
    out = w.dir / "suspects.txt"
    refuse(["debug-labels", w.model, "--out", out, "--report", out], w.inputs + [out], expect="is also --out")


def test_evaluate_report_is_the_manifest(w: W):
    refuse(["evaluate", w.model, "--report", w.manifest, "--force"], w.inputs, expect="is the manifest")


def test_attack_report_is_the_ids_file(w: W):
    refuse(["attack", w.model, "--ids", w.ids, "--attack", "loss", "--report", w.ids, "--force"], w.inputs,
           expect="is the --ids file")


def test_inspect_report_is_the_checkpoint(w: W):
    refuse(["inspect", w.model, "--report", w.model, "--force"], w.inputs, expect="is the input checkpoint")


# -- an existing output is refused without --force, and left byte-identical ----------------------------

@pytest.fixture
def existing(w: W) -> Path:
    path = w.dir / "existing.out"
    path.write_bytes(b"precious: not to be overwritten\n")
    return path


@pytest.mark.parametrize("command", ["train", "mark", "calibrate", "debug-labels", "forget", "forget-report",
                                     "methods-report", "evaluate-report"])
def test_an_existing_output_is_refused_without_force(w: W, existing: Path, command: str):
    args = {
        "train": ["train", w.manifest, "--out", existing, "--epochs", "1"],
        "mark": ["mark", w.manifest, "--strategy", "random", "--fraction", "0.1", "--out", existing],
        "calibrate": ["calibrate", w.model, "--out", existing],
        "debug-labels": ["debug-labels", w.model, "--out", existing],
        "forget": ["forget", w.model, w.ids, *FAST, "--out", existing],
        "forget-report": ["forget", w.model, w.ids, *FAST, "--report", existing],
        "methods-report": ["methods", "--report", existing],
        "evaluate-report": ["evaluate", w.model, "--report", existing],
    }[command]
    refuse(args, w.inputs + [existing], expect="already exists; pass --force")
    assert not w.ledger.exists()


def test_forget_refuses_an_existing_default_output(w: W):
    out = w.dir / "model.unlearned.safetensors"
    shutil.copy2(w.model, out)
    refuse(["forget", w.model, w.ids, *FAST], w.inputs + [out],
           expect=f"the output {out} already exists; pass --force")


def test_a_queue_run_refuses_an_existing_output_it_did_not_make(w: W):
    out = w.dir / "served.safetensors"
    shutil.copy2(w.model, out)  # a checkpoint, but not one made from the input: continuing would be wrong
    queue = w.dir / "queue"
    queue.mkdir()
    shutil.copy2(w.ids, queue / "a.txt")
    refuse(["forget", w.model, "--queue", queue, "--out", out, *FAST], w.inputs + [out, queue / "a.txt"],
           expect="already exists; pass --force")


def test_a_dangling_symlink_as_output_is_refused_without_force(w: W):
    link = w.link("dangling.txt", w.dir / "nowhere" / "x")
    refuse(["mark", w.manifest, "--strategy", "random", "--fraction", "0.1", "--out", link], w.inputs + [link],
           expect="already exists")


# -- places the user has to fix: exit 2, one line naming the path -----------------------------------------

def test_a_missing_output_folder(w: W):
    refuse(["train", w.manifest, "--out", w.dir / "nope" / "m.safetensors"], w.inputs, expect="does not exist")


def test_a_missing_report_folder(w: W):
    refuse(["forget", w.model, w.ids, *FAST, "--report", w.dir / "nope" / "r.json"], w.inputs,
           expect="does not exist")


def test_a_read_only_output_folder_for_train(w: W):
    ro = w.dir / "ro"
    ro.mkdir()
    with read_only(ro):
        refuse(["train", w.manifest, "--out", ro / "m.safetensors", "--epochs", "1"], w.inputs,
               expect="cannot write in")
    assert list(ro.iterdir()) == []


def test_a_read_only_output_folder_for_forget(w: W):
    ro = w.dir / "ro"
    ro.mkdir()
    with read_only(ro):
        refuse(["forget", w.model, w.ids, *FAST, "--out", ro / "m.safetensors"], w.inputs, expect="cannot write in")


def test_a_read_only_report_folder(w: W):
    ro = w.dir / "ro"
    ro.mkdir()
    with read_only(ro):
        refuse(["mark", w.manifest, "--strategy", "random", "--fraction", "0.1", "--out", w.dir / "m.txt",
                "--report", ro / "r.json"], w.inputs, expect="cannot write in")
    assert not (w.dir / "m.txt").exists()


def test_a_read_only_queue_with_in_place(w: W):
    queue = w.dir / "queue"
    queue.mkdir()
    shutil.copy2(w.ids, queue / "a.txt")
    with read_only(queue):
        refuse(["forget", w.model, "--queue", queue, "--in-place", *FAST], w.inputs + [queue / "a.txt"],
               subprocess_run=True, expect="cannot write in")
    assert sorted(p.name for p in queue.iterdir()) == ["a.txt"]


def test_permission_denied_while_writing_is_exit_2(w: W, monkeypatch):
    import tempfile

    from unlearn_cli.ops import atomic

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", denied)
    try:
        refuse(["mark", w.manifest, "--strategy", "random", "--fraction", "0.1", "--out", w.dir / "m.txt"],
               w.inputs, expect="permission denied")
    finally:
        monkeypatch.setattr(atomic.tempfile, "mkstemp", tempfile.mkstemp)


def test_an_unexpected_os_error_in_a_command_is_mapped_to_exit_2():
    from unlearn_cli.cli.errors import fail

    for code in (1, 13, 28, 30):
        exc = OSError(code, os.strerror(code))
        exc.filename = "/srv/out/model.safetensors"
        assert fail("train", exc, False).exit_code == 2


# -- what does work: --force replaces atomically, a queue continues, the cache is optional -------------

def test_force_replaces_each_output_atomically(w: W, existing: Path):
    report = w.dir / "report.json"
    report.write_text("old report\n")
    res = invoke(["mark", w.manifest, "--strategy", "random", "--fraction", "0.1", "--out", existing,
                  "--report", report, "--force", "--quiet"])
    assert res.code == 0, res.stderr
    assert existing.read_text().startswith("#") and b"precious" not in existing.read_bytes()
    assert json.loads(report.read_text())["outputs"]["ids"]["path"] == str(existing)
    assert w.temps() == []


def test_train_force_replaces_the_checkpoint(w: W):
    from unlearn_cli.models.checkpoint import load_checkpoint

    out = w.dir / "new.safetensors"
    out.write_bytes(b"not a checkpoint")
    res = invoke(["train", w.manifest, "--out", out, "--epochs", "1", "--force", "--quiet"])
    assert res.code == 0, res.stderr
    assert load_checkpoint(out).training["epochs"] == 1
    assert w.temps() == []


def test_forget_force_replaces_the_output_and_keeps_the_input(w: W):
    from unlearn_cli.models.checkpoint import load_checkpoint

    out = w.dir / "served.safetensors"
    out.write_bytes(b"stale")
    model = w.model.read_bytes()
    res = invoke(["forget", w.model, w.ids, *FAST, "--out", out, "--force", "--quiet"])
    assert res.code == 0, res.stderr
    assert len(load_checkpoint(out).lineage) == 1 and w.model.read_bytes() == model
    assert w.temps() == []


def test_a_queue_run_continues_its_own_output_without_force(w: W):
    from unlearn_cli.models.checkpoint import load_checkpoint

    queue = w.dir / "queue"
    queue.mkdir()
    out = w.dir / "served.safetensors"
    for name, source in (("a.txt", w.ids), ("b.txt", w.more)):
        shutil.copy2(source, queue / name)
        res = invoke(["forget", w.model, "--queue", queue, "--out", out, *FAST, "--quiet"])
        assert res.code == 0, res.stderr
    assert [step["count"] for step in load_checkpoint(out).lineage] == [4, 3]  # earlier removals kept


def test_stale_reason_temp_files_are_swept_by_the_next_queue_run(w: W):
    queue = w.dir / "queue"
    (queue / "failed").mkdir(parents=True)
    stale = queue / "failed" / ".bad.txt.reason.k1ll3d.tmp"
    stale.write_text("half a reas")
    keep = queue / "failed" / "bad.txt.reason"
    keep.write_text("a real reason\n")
    shutil.copy2(w.ids, queue / "a.txt")
    res = invoke(["forget", w.model, "--queue", queue, "--in-place", *FAST, "--quiet"])
    assert res.code == 0, res.stderr
    assert not stale.exists() and keep.read_text() == "a real reason\n"


def test_a_read_only_cache_folder_is_a_warning_not_a_failure(w: W):
    src = w.dir / "ro"
    src.mkdir()
    for name in FILES:
        shutil.move(str(w.dir / name), src / name)
    out = w.dir / "out"
    out.mkdir()
    with read_only(src):
        res = invoke(["forget", src / "model.safetensors", w.ids, "--method", "puma", "--set", "solver=ekfac",
                      "--out", out / "m.safetensors", "--json"])
    assert res.code == 0, res.stderr
    assert "curvature cache not saved" in res.stderr and len(res.stderr.strip().splitlines()) >= 1
    assert (out / "m.safetensors").exists()
    assert sorted(p.name for p in src.iterdir()) == sorted(FILES)  # nothing written beside the input
