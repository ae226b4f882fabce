"""ops.ledger: one whole fsynced line per run, torn lines tolerated, journal recovery."""

from __future__ import annotations

import errno
import json
import os

import pytest

from unlearn_cli.errors import BadInput
from unlearn_cli.ops import ledger as ledger_mod
from unlearn_cli.ops.ledger import (
    LEDGER_FORMAT, append_line, journal_path, read_ledger, recover_journal, write_journal,
)


def entry(n: int, status: str = "ok", inp: str = "a", out: str = "b", removed=()) -> dict:
    return {"ledger": LEDGER_FORMAT, "run_id": f"r{n}", "status": status, "input": {"sha256": inp},
            "output": {"sha256": out}, "removed_id_sha256": list(removed), "note": "é ✓"}


def test_append_writes_one_ascii_line_per_entry(tmp_path):
    path = tmp_path / "ledger.jsonl"
    append_line(path, entry(1))
    append_line(path, entry(2))
    raw = path.read_bytes()
    assert raw.count(b"\n") == 2 and raw.endswith(b"\n")
    raw.decode("ascii")  # non-ASCII is escaped: no byte of a line can be mistaken for a newline
    assert [e["run_id"] for e in read_ledger(path).lines] == ["r1", "r2"]
    assert read_ledger(path).lines[0]["note"] == "é ✓"


def test_each_entry_is_one_write_call(tmp_path, monkeypatch):
    calls = []
    real_write = os.write
    monkeypatch.setattr(ledger_mod.os, "write", lambda fd, data: calls.append(data) or real_write(fd, data))
    append_line(tmp_path / "l.jsonl", entry(1))
    assert len(calls) == 1 and calls[0].endswith(b"\n") and json.loads(calls[0])["run_id"] == "r1"


def test_missing_ledger_is_empty(tmp_path):
    assert read_ledger(tmp_path / "none.jsonl").lines == []


def test_reader_skips_a_torn_last_line_and_writer_ends_it_first(tmp_path):
    path = tmp_path / "ledger.jsonl"
    append_line(path, entry(1))
    with open(path, "ab") as fh:
        fh.write(b'{"ledger": 1, "run_id": "torn", "sta')  # a crash mid-write
    warnings = []
    parsed = read_ledger(path, warnings.append)
    assert [e["run_id"] for e in parsed.lines] == ["r1"] and parsed.damaged == 1
    assert "unfinished last line" in warnings[0]
    append_line(path, entry(2))
    lines = path.read_bytes().split(b"\n")
    assert lines[1] == b'{"ledger": 1, "run_id": "torn", "sta'  # kept for the auditor, but ended
    assert json.loads(lines[2])["run_id"] == "r2"
    assert [e["run_id"] for e in read_ledger(path).lines] == ["r1", "r2"]


def test_failed_write_leaves_the_ledger_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "ledger.jsonl"
    append_line(path, entry(1))
    before = path.read_bytes()

    def half_then_enospc(fd, data):
        os.pwrite(fd, data[: len(data) // 2], os.fstat(fd).st_size)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ledger_mod.os, "write", half_then_enospc)
    with pytest.raises(OSError) as info:
        append_line(path, entry(2))
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == before


def test_a_file_that_is_not_a_ledger_is_refused(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello\nworld\n")
    with pytest.raises(BadInput, match="not an unlearn ledger"):
        read_ledger(path)
    with pytest.raises(BadInput, match="is a directory"):
        read_ledger(tmp_path)


def test_removed_ids_follow_the_lineage_only(tmp_path):
    path = tmp_path / "ledger.jsonl"
    append_line(path, entry(1, inp="base", out="c1", removed=["d1"]))
    append_line(path, entry(2, inp="c1", out="c2", removed=["d2"]))
    append_line(path, entry(3, inp="base", out="other", removed=["d3"]))      # a sibling branch
    append_line(path, entry(4, status="nothing-to-do", inp="c2", out="c2", removed=["d4"]))
    ledger = read_ledger(path)
    lineage = [{"parent_sha256": "base"}, {"parent_sha256": "c1"}]
    assert ledger.removed_on_the_way_to("c2", lineage).by_key == {None: {"d1", "d2"}}
    assert not ledger.removed_on_the_way_to("base", [])
    assert ledger.unrecorded_steps("c2", lineage) == 0
    assert ledger.unrecorded_steps("c3", lineage + [{"parent_sha256": "c2"}]) == 1


def test_journal_is_appended_when_the_output_was_published(tmp_path):
    ledger, out = tmp_path / "ledger.jsonl", tmp_path / "out.bin"
    out.write_bytes(b"published")
    write_journal(ledger, entry(7, out="sha-of-published"), out)
    warnings = []
    recovered = recover_journal(ledger, lambda p: "sha-of-published" if p == out else None, warnings.append)
    assert recovered["recovered"] is True
    assert [(e["run_id"], e.get("recovered")) for e in read_ledger(ledger).lines] == [("r7", True)]
    assert not journal_path(ledger).exists()
    # Recovering twice never duplicates the line.
    write_journal(ledger, entry(7, out="sha-of-published"), out)
    recover_journal(ledger, lambda p: "sha-of-published", warnings.append)
    assert len(read_ledger(ledger).lines) == 1


def test_journal_is_dropped_when_the_output_was_not_published(tmp_path):
    ledger, out = tmp_path / "ledger.jsonl", tmp_path / "out.bin"
    write_journal(ledger, entry(8, out="never"), out)
    warnings = []
    assert recover_journal(ledger, lambda p: None, warnings.append) is None
    assert not ledger.exists() and not journal_path(ledger).exists()
    assert "interrupted before publishing" in warnings[0]
    journal_path(ledger).write_text("{garbage")
    recover_journal(ledger, lambda p: None, warnings.append)
    assert not journal_path(ledger).exists()


# -- keyed digests -------------------------------------------------------------

def _line(n, ids, key, inp="a", out="b"):
    from unlearn_cli.ops.ledger import digest_fields

    plain = {k: v for k, v in entry(n, inp=inp, out=out).items() if k != "removed_id_sha256"}
    return {**plain, **digest_fields(ids, key)}


def _key(tmp_path, name="key", secret=b"0123456789abcdef0123456789abcdef"):
    from unlearn_cli.ops.digests import load_key

    path = tmp_path / name
    path.write_bytes(secret + b"\n")
    return load_key(path)


def test_keyed_digest_is_hmac_and_the_key_id_is_not_the_key(tmp_path):
    import hashlib
    import hmac

    from unlearn_cli.ops.digests import id_digest, set_digest

    key = _key(tmp_path)
    assert key.secret == b"0123456789abcdef0123456789abcdef"  # the trailing newline is not part of the key
    assert id_digest("alice@example.com", key) == hmac.new(key.secret, b"alice@example.com", "sha256").hexdigest()
    assert id_digest("alice@example.com", key) != hashlib.sha256(b"alice@example.com").hexdigest()
    assert id_digest("a") == hashlib.sha256(b"a").hexdigest()
    assert key.key_id == hmac.new(key.secret, b"unlearn key id", "sha256").hexdigest()[:16]
    assert "0123456789abcdef" not in repr(key)
    assert set_digest(["b", "a", "a"], key) == set_digest(["a", "b"], key) != set_digest(["a", "b"])


@pytest.mark.parametrize("content, fragment", [(b"short", "at least 16"), (b"x" * 5000, "at most 4096")])
def test_bad_key_files_are_refused(tmp_path, content, fragment):
    from unlearn_cli.ops.digests import load_key

    path = tmp_path / "key"
    path.write_bytes(content)
    with pytest.raises(BadInput, match=fragment):
        load_key(path)
    with pytest.raises(BadInput, match="not a regular file"):
        load_key(tmp_path)
    with pytest.raises(BadInput, match="no such key file"):
        load_key(tmp_path / "missing")


def test_key_comes_from_the_environment_when_no_option(tmp_path, monkeypatch):
    from unlearn_cli.ops.digests import KEY_ENV, resolve_key

    key = _key(tmp_path)
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert resolve_key(None) is None
    monkeypatch.setenv(KEY_ENV, str(tmp_path / "key"))
    assert resolve_key(None).key_id == key.key_id


def test_keyed_lines_are_recognised_only_under_the_same_key(tmp_path):
    key, other = _key(tmp_path), _key(tmp_path, "other", b"another-secret-of-enough-bytes")
    path = tmp_path / "ledger.jsonl"
    append_line(path, _line(1, ["x", "y"], key, "base", "c1"))
    append_line(path, _line(2, ["plain"], None, "c1", "c2"))
    line = read_ledger(path).lines[0]
    assert line["key_id"] == key.key_id and "removed_id_sha256" not in line
    removed = read_ledger(path).removed_on_the_way_to("c2", [{"parent_sha256": "base"}, {"parent_sha256": "c1"}])
    removed.require_comparable(key, "c2")
    assert removed.holds("x", key) and removed.holds("plain", key) and not removed.holds("z", key)
    with pytest.raises(BadInput, match="cannot be compared"):
        removed.require_comparable(other, "c2")
    with pytest.raises(BadInput, match="no ledger key"):
        removed.require_comparable(None, "c2")
    assert not removed.holds("x", None)


def test_runs_removing_finds_the_lines_of_one_id(tmp_path):
    from unlearn_cli.ops.digests import id_digest

    key = _key(tmp_path)
    path = tmp_path / "ledger.jsonl"
    append_line(path, _line(1, ["x"], key))
    append_line(path, _line(2, ["x", "y"], None))
    append_line(path, _line(3, ["y"], key))
    ledger = read_ledger(path)
    runs, other = ledger.runs_removing({None: id_digest("x"), key.key_id: id_digest("x", key)})
    assert [r["run_id"] for r in runs] == ["r1", "r2"] and other == 0
    runs, other = ledger.runs_removing({None: id_digest("y")})
    assert [r["run_id"] for r in runs] == ["r2"] and other == 2
