"""ops.atomic: the one place that writes files, atomically or not at all."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from unlearn_cli.errors import BadInput
from unlearn_cli.ops.atomic import atomic_path, write_bytes, write_text


def _names(directory):
    return sorted(p.name for p in directory.iterdir())


def test_write_bytes_creates_and_returns_sha256(tmp_path):
    target = tmp_path / "out.bin"
    digest = write_bytes(target, b"hello")
    assert target.read_bytes() == b"hello"
    assert digest == hashlib.sha256(b"hello").hexdigest()
    assert _names(tmp_path) == ["out.bin"]


def test_write_bytes_replaces_existing_content(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old content that is longer than the new one")
    write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert _names(tmp_path) == ["out.bin"]


def test_replacement_is_a_rename_not_an_in_place_rewrite(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    # A reader holding the old file keeps seeing the old bytes: the new content
    # arrives as a different inode renamed over the name.
    with open(target, "rb") as reader:
        old_inode = os.fstat(reader.fileno()).st_ino
        write_bytes(target, b"new")
        assert reader.read() == b"old"
    assert target.stat().st_ino != old_inode
    assert target.read_bytes() == b"new"


def test_target_is_untouched_until_the_block_succeeds(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent  # same file system, so the rename is atomic
        assert tmp != target
        assert tmp.name.endswith(".tmp")
        tmp.write_text("new")
        assert target.read_text() == "old"
    assert target.read_text() == "new"
    assert not tmp.exists()
    assert _names(tmp_path) == ["out.txt"]


def test_exception_inside_atomic_path_removes_temp_and_keeps_old(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    seen = {}
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            seen["tmp"] = tmp
            tmp.write_text("half-written")
            raise RuntimeError("boom")
    assert not seen["tmp"].exists()
    assert target.read_text() == "old"
    assert _names(tmp_path) == ["out.txt"]


def test_exception_with_no_previous_file_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "new.txt") as tmp:
            tmp.write_text("partial")
            raise KeyboardInterrupt
    assert _names(tmp_path) == []


def test_failed_verify_publishes_nothing(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    seen = []

    def verify(path):
        seen.append(path.read_bytes())
        raise BadInput("rejected")

    with pytest.raises(BadInput, match="rejected"):
        write_bytes(target, b"new", verify=verify)
    assert seen == [b"new"]  # verify sees the complete new bytes before the rename
    assert target.read_bytes() == b"old"
    assert _names(tmp_path) == ["out.bin"]


def test_passing_verify_publishes(tmp_path):
    target = tmp_path / "out.bin"
    write_bytes(target, b"data", verify=lambda p: None)
    assert target.read_bytes() == b"data"


def test_missing_directory_is_bad_input(tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "out.bin"
    with pytest.raises(BadInput) as info:
        write_bytes(target, b"x")
    assert str(target) in str(info.value)
    assert "does not exist" in str(info.value)
    with pytest.raises(BadInput):
        with atomic_path(target):
            pytest.fail("the block must not run")
    assert _names(tmp_path) == []


def test_relative_target_in_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_text("report.json", "{}\n")
    assert (tmp_path / "report.json").read_text() == "{}\n"
    assert _names(tmp_path) == ["report.json"]


def test_write_text_is_utf8(tmp_path):
    target = tmp_path / "t.txt"
    digest = write_text(target, "héllo ✓")
    assert target.read_bytes() == "héllo ✓".encode("utf-8")
    assert digest == hashlib.sha256("héllo ✓".encode("utf-8")).hexdigest()


def test_published_file_respects_umask(tmp_path):
    old = os.umask(0o022)
    try:
        target = tmp_path / "out.bin"
        write_bytes(target, b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
