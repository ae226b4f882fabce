"""ops.queue: listing waiting requests and moving them out only when safe."""

from __future__ import annotations

import pytest

from unlearn_cli.errors import BadInput
from unlearn_cli.ops.queue import DONE, FAILED, check_queue, list_queue, settle


def test_lists_txt_files_in_name_order_skipping_hidden_ones(tmp_path):
    for name in ("b.txt", "a.txt", ".upload.txt", "notes.md"):
        (tmp_path / name).write_text("1\n")
    (tmp_path / "dir.txt").mkdir()
    assert [item.name for item in list_queue(tmp_path)] == ["a.txt", "b.txt"]


def test_settle_never_overwrites_an_earlier_file(tmp_path):
    for _ in range(3):
        (tmp_path / "r.txt").write_text("1\n")
        [item] = list_queue(tmp_path)
        settle(tmp_path, item, DONE)
    assert sorted(p.name for p in (tmp_path / DONE).iterdir()) == ["r.1.txt", "r.2.txt", "r.txt"]


def test_refused_file_gets_its_reason(tmp_path):
    (tmp_path / "r.txt").write_text("x\n")
    [item] = list_queue(tmp_path)
    moved = settle(tmp_path, item, FAILED, "r.txt: 1 requested ID is not\nin the train split")
    assert moved == tmp_path / FAILED / "r.txt"
    assert (tmp_path / FAILED / "r.txt.reason").read_text() == "r.txt: 1 requested ID is not in the train split\n"


def test_a_file_changed_since_it_was_read_stays_in_the_queue(tmp_path):
    (tmp_path / "r.txt").write_text("1\n")
    [item] = list_queue(tmp_path)
    (tmp_path / "r.txt").write_text("1\n2\n")  # the producer was still writing
    assert settle(tmp_path, item, DONE) is None
    assert (tmp_path / "r.txt").read_text() == "1\n2\n"


def test_queue_must_be_a_directory(tmp_path):
    with pytest.raises(BadInput, match="no such directory"):
        check_queue(tmp_path / "missing")
    (tmp_path / "f").write_text("")
    with pytest.raises(BadInput, match="not a directory"):
        check_queue(tmp_path / "f")
