"""Request (ids) files: parsing rules, merging, split checks, digests, writing."""

from __future__ import annotations

import hashlib
import io
import os
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unlearn_cli.data.ids import (
    Request,
    check_known,
    format_ids,
    id_set_digest,
    parse_ids,
    read_ids,
    read_requests,
)
from unlearn_cli.ops.digests import id_digest
from unlearn_cli.errors import BadInput, UnlearnError


def one_line_error(exc: pytest.ExceptionInfo[BadInput]) -> str:
    """The message the terminal shows, checked against the error contract: one line, no trailing period.

    IDs ride in the error's private part: ``str(exc)``, which reports and ledgers keep, names none.
    """
    message = exc.value.terminal_message()
    if exc.value.private:
        assert not any(part and part in str(exc.value) for part in exc.value.private.split(", ")
                       if part != "... (first ten shown)")
    assert "\n" not in message and "\r" not in message
    assert not message.endswith(".")
    assert exc.value.exit_code == 2
    return message


# IDs that an ids file can carry: non-empty, stripped, one line, not a comment.
valid_id = (
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
        min_size=1,
        max_size=20,
    )
    .map(str.strip)
    .filter(lambda s: s != "" and not s.startswith(("#", "\ufeff")))
)


# ---------------------------------------------------------------- parsing rules


def test_plain_file() -> None:
    req = parse_ids(b"a\nb\nc\n", "r.txt")
    assert req == Request(
        ids=("a", "b", "c"),
        duplicates=(),
        source="r.txt",
        sha256=hashlib.sha256(b"a\nb\nc\n").hexdigest(),
    )


@pytest.mark.parametrize(
    "data",
    [
        b"1\n2\n30\n",
        b"1\n2\n30",  # no trailing newline
        b"1\r\n2\r\n30\r\n",  # CRLF
        b"1\r2\r30\r",  # old Mac CR
        b"1\r\n2\n30\r",  # mixed
        b"\xef\xbb\xbf1\n2\n30\n",  # BOM
        b"  1  \n\t2\t\n 30\n",  # surrounding whitespace
        b"\n\n1\n\n   \n2\n\t\n30\n\n",  # blank and whitespace-only lines
        b"# header\n1\n  # indented comment\n2\n#30\n30\n",  # comments
        b"\xef\xbb\xbf# exported by tool\r\n1 \r\n\r\n 2\r\n30\r\n",  # all at once
        b"1\n2\n1\n30\n2\n",  # repeats collapse
    ],
)
def test_variants_give_the_same_ids(data: bytes) -> None:
    assert parse_ids(data).ids == ("1", "2", "30")


def test_internal_whitespace_kept() -> None:
    req = parse_ids(b"  Jane Doe  \nrow\t7\n")
    assert req.ids == ("Jane Doe", "row\t7")


def test_hash_inside_an_id_is_not_a_comment() -> None:
    assert parse_ids(b"a#1\n").ids == ("a#1",)


def test_only_line_breaks_split_lines() -> None:
    # A form feed or U+2028 is whitespace to str.splitlines but not a line break here.
    assert parse_ids("a\x0cb\na\u2028b\n".encode()).ids == ("a\x0cb", "a\u2028b")


def test_unicode_ids() -> None:
    assert parse_ids("Zoë\n東京\n".encode()).ids == ("Zoë", "東京")


def test_sha256_is_of_raw_bytes_bom_included() -> None:
    data = b"\xef\xbb\xbfa\r\n"
    assert parse_ids(data).sha256 == hashlib.sha256(data).hexdigest()
    assert parse_ids(data).sha256 != parse_ids(b"a\n").sha256


def test_duplicates_collapse_and_are_reported_once() -> None:
    req = parse_ids(b"b\na\nb\nc\nb\na\n")
    assert req.ids == ("b", "a", "c")
    assert req.duplicates == ("b", "a")


def test_whitespace_variants_are_duplicates() -> None:
    req = parse_ids(b"x\n x \r\nx\t\n")
    assert req.ids == ("x",)
    assert req.duplicates == ("x",)


@pytest.mark.parametrize(
    "data", [b"", b"\n\n", b"   \n\t\r\n", b"# only\n# comments\n", b"\xef\xbb\xbf"]
)
def test_no_ids_is_an_error(data: bytes) -> None:
    with pytest.raises(BadInput) as exc:
        parse_ids(data, "empty.txt")
    assert one_line_error(exc) == "empty.txt: the request holds no IDs"


@pytest.mark.parametrize(
    ("data", "offset"),
    [
        (b"ok\n\xff\n", 3),
        (b"\x80", 0),
        (b"abc\xc3", 3),  # truncated sequence at the end
        (b"\xef\xbb\xbfab\xfe", 5),  # offset counts the BOM
        (b"a\n\xed\xa0\x80\n", 2),  # an encoded surrogate is not UTF-8
        (b"caf\xe9\n", 3),  # Latin-1
    ],
)
def test_non_utf8_is_an_error_with_offset(data: bytes, offset: int) -> None:
    with pytest.raises(BadInput) as exc:
        parse_ids(data, "req.txt")
    assert one_line_error(exc) == f"req.txt: not UTF-8 text (byte offset {offset})"


def test_utf16_gets_a_hint() -> None:
    with pytest.raises(BadInput) as exc:
        parse_ids("a\nb\n".encode("utf-16"), "win.txt")
    message = one_line_error(exc)
    assert message.startswith("win.txt: not UTF-8 text (byte offset 0)")
    assert "UTF-16" in message


def test_bad_input_is_an_unlearn_error() -> None:
    with pytest.raises(UnlearnError):
        parse_ids(b"")


def test_accepts_bytearray_and_memoryview() -> None:
    assert parse_ids(bytearray(b"a\n")).ids == ("a",)
    assert parse_ids(memoryview(b"a\n")).ids == ("a",)


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(valid_id, min_size=1, max_size=15), data=st.data())
def test_decorations_do_not_change_ids(ids: list[str], data: st.DataObject) -> None:
    """Any mix of BOM, line endings, padding, blanks and comments reads the same."""
    eol = data.draw(st.sampled_from(["\n", "\r\n", "\r"]), label="eol")
    pad = st.text(alphabet=" \t", max_size=3)
    parts = []
    for record_id in ids:
        if data.draw(st.booleans(), label="blank"):
            parts.append(data.draw(pad))
        if data.draw(st.booleans(), label="comment"):
            parts.append(data.draw(pad) + "# " + data.draw(st.text(max_size=10).filter(
                lambda s: "\r" not in s and "\n" not in s)))
        parts.append(data.draw(pad) + record_id + data.draw(pad))
    text = eol.join(parts) + data.draw(st.sampled_from(["", eol]))
    raw = text.encode("utf-8")
    if data.draw(st.booleans(), label="bom"):
        raw = b"\xef\xbb\xbf" + raw
    req = parse_ids(raw)
    expected = list(dict.fromkeys(ids))
    assert list(req.ids) == expected
    assert set(req.duplicates) == {i for i in ids if ids.count(i) > 1}


# ---------------------------------------------------------------- reading files


def test_read_file(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_bytes(b"7\n8\n")
    req = read_ids(path)
    assert req.ids == ("7", "8")
    assert req.source == str(path)
    assert req.sha256 == hashlib.sha256(b"7\n8\n").hexdigest()
    assert read_ids(str(path)).source == str(path)


def test_read_stdin_from_bytesio() -> None:
    req = read_ids("-", stdin=io.BytesIO(b"\xef\xbb\xbf1\r\n2\r\n"))
    assert req.ids == ("1", "2")
    assert req.source == "<stdin>"


def test_read_stdin_through_text_wrapper() -> None:
    wrapper = io.TextIOWrapper(io.BytesIO(b"x\ny\n"), encoding="utf-8")
    assert read_ids("-", stdin=wrapper).ids == ("x", "y")  # type: ignore[arg-type]


def test_read_stdin_default_is_sys_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = io.TextIOWrapper(io.BytesIO(b"q\n"), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", fake)
    assert read_ids("-").ids == ("q",)


def test_empty_stdin_is_an_error() -> None:
    with pytest.raises(BadInput) as exc:
        read_ids("-", stdin=io.BytesIO(b""))
    assert one_line_error(exc) == "<stdin>: the request holds no IDs"


def test_file_named_dash_via_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "-").write_bytes(b"f\n")
    monkeypatch.chdir(tmp_path)
    assert read_ids("./-", stdin=io.BytesIO(b"s\n")).ids == ("f",)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.txt"
    with pytest.raises(BadInput) as exc:
        read_ids(path)
    message = one_line_error(exc)
    assert message.startswith(f"{path}: ")
    assert "no such" in message


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(BadInput) as exc:
        read_ids(tmp_path)
    message = one_line_error(exc)
    assert message.startswith(f"{tmp_path}: ")
    assert "directory" in message


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions, not root"
)
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_bytes(b"1\n")
    path.chmod(0)
    try:
        with pytest.raises(BadInput) as exc:
            read_ids(path)
        assert one_line_error(exc).startswith(f"{path}: ")
    finally:
        path.chmod(0o600)


def test_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"caf\xe9\n")
    with pytest.raises(BadInput) as exc:
        read_ids(path)
    assert one_line_error(exc) == f"{path}: not UTF-8 text (byte offset 3)"


def test_odd_path_keeps_message_on_one_line(tmp_path: Path) -> None:
    with pytest.raises(BadInput) as exc:
        read_ids(tmp_path / "two\nlines.txt")
    one_line_error(exc)


# ---------------------------------------------------------------- merging


def test_merge_several(tmp_path: Path) -> None:
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_bytes(b"1\n2\n2\n")
    second.write_bytes(b"3\n1\n4\n")
    req = read_requests([first, second])
    assert req.ids == ("1", "2", "3", "4")
    assert req.duplicates == ("2", "1")
    assert req.source == f"{first}, {second}"
    digests = hashlib.sha256(b"1\n2\n2\n").hexdigest() + hashlib.sha256(b"3\n1\n4\n").hexdigest()
    assert req.sha256 == hashlib.sha256(digests.encode("ascii")).hexdigest()


def test_merge_digest_depends_on_order(tmp_path: Path) -> None:
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_bytes(b"1\n")
    second.write_bytes(b"2\n")
    assert read_requests([first, second]).sha256 != read_requests([second, first]).sha256


def test_merge_of_one_is_that_file(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"5\n5\n6\n")
    assert read_requests([path]) == read_ids(path)
    assert read_requests(path) == read_ids(path)  # a bare path is one file, not characters


def test_merge_with_stdin(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"1\n")
    req = read_requests([path, "-"], stdin=io.BytesIO(b"2\n1\n"))
    assert req.ids == ("1", "2")
    assert req.duplicates == ("1",)
    assert req.source == f"{path}, <stdin>"


def test_merge_stdin_twice_is_an_error() -> None:
    with pytest.raises(BadInput) as exc:
        read_requests(["-", "-"], stdin=io.BytesIO(b"1\n"))
    one_line_error(exc)


def test_merge_nothing_is_an_error() -> None:
    with pytest.raises(BadInput) as exc:
        read_requests([])
    one_line_error(exc)


def test_merge_names_the_empty_file(tmp_path: Path) -> None:
    good, empty = tmp_path / "good.txt", tmp_path / "empty.txt"
    good.write_bytes(b"1\n")
    empty.write_bytes(b"# nothing\n")
    with pytest.raises(BadInput) as exc:
        read_requests([good, empty])
    assert one_line_error(exc) == f"{empty}: the request holds no IDs"


# ---------------------------------------------------------------- split checks

TRAIN = {str(i) for i in range(100)}
TEST = {str(i) for i in range(100, 120)}


def test_all_known() -> None:
    assert check_known(["5", "1", "9"], TRAIN, TEST) == (["5", "1", "9"], [])


def test_train_ids_as_list_or_tuple() -> None:
    assert check_known(("3",), ["1", "2", "3"]) == (["3"], [])


def test_unknown_ids_error_names_them() -> None:
    with pytest.raises(BadInput) as exc:
        check_known(["1", "x", "y"], TRAIN, TEST)
    assert one_line_error(exc) == (
        "2 requested IDs are not in the train split (--ignore-unknown skips them): x, y"
    )


def test_one_unknown_id_reads_in_the_singular() -> None:
    with pytest.raises(BadInput) as exc:
        check_known(["1", "zz"], TRAIN)
    assert one_line_error(exc) == (
        "1 requested ID is not in the train split (--ignore-unknown skips it): zz"
    )


def test_unknown_error_names_at_most_ten_and_counts_all() -> None:
    unknown = [f"u{i}" for i in range(25)]
    with pytest.raises(BadInput) as exc:
        check_known(["1", *unknown], TRAIN, TEST)
    message = one_line_error(exc)
    assert message.startswith("25 requested IDs are not in the train split (--ignore-unknown skips them): ")
    named = [u for u in unknown if f" {u}," in message]
    assert named == unknown[:10]
    assert "first ten" in message
    assert "--ignore-unknown" in message


def test_ignore_unknown_returns_skipped() -> None:
    known, skipped = check_known(["x", "1", "y", "2"], TRAIN, TEST, ignore_unknown=True)
    assert known == ["1", "2"]
    assert skipped == ["x", "y"]


def test_test_split_ids_error_even_when_ignoring_unknown() -> None:
    for ignore in (False, True):
        with pytest.raises(BadInput) as exc:
            check_known(["1", "105", "x", "110"], TRAIN, TEST, ignore_unknown=ignore)
        assert one_line_error(exc) == (
            "2 requested IDs belong to the test split, not train: 105, 110"
        )


def test_test_split_error_names_at_most_ten() -> None:
    with pytest.raises(BadInput) as exc:
        check_known(sorted(TEST), TRAIN, TEST)
    message = one_line_error(exc)
    assert message.startswith("20 requested IDs belong to the test split, not train: ")
    named = message.split(": ", 1)[1]
    assert named == ", ".join(sorted(TEST)[:10]) + ", ... (first ten shown)"


def test_one_test_id_reads_in_the_singular() -> None:
    with pytest.raises(BadInput) as exc:
        check_known(["100"], TRAIN, TEST)
    assert one_line_error(exc) == "1 requested ID belongs to the test split, not train: 100"


def test_nothing_known_after_skipping() -> None:
    with pytest.raises(BadInput) as exc:
        check_known(["x", "y"], TRAIN, TEST, ignore_unknown=True)
    assert one_line_error(exc) == "none of the requested IDs is in the train split"


def test_check_known_collapses_repeats() -> None:
    assert check_known(["1", "1", "x", "x"], TRAIN, ignore_unknown=True) == (["1"], ["x"])


def test_odd_ids_are_quoted_in_messages() -> None:
    with pytest.raises(BadInput) as exc:
        check_known(["1", "a, b", "tab\there\x0b"], TRAIN)
    message = one_line_error(exc)
    assert "'a, b'" in message
    assert repr("tab\there\x0b") in message


def test_integer_train_ids_are_refused_not_silently_mismatched() -> None:
    with pytest.raises(TypeError):
        check_known(["1"], {1, 2, 3})  # type: ignore[arg-type]


def test_request_feeds_check_known() -> None:
    req = parse_ids(b"3\n4\n3\n")
    assert check_known(req.ids, TRAIN, TEST) == (["3", "4"], [])


# ---------------------------------------------------------------- digests


def test_id_digest() -> None:
    assert id_digest("42") == hashlib.sha256(b"42").hexdigest()
    assert id_digest("Zoë") == hashlib.sha256("Zoë".encode()).hexdigest()


def test_id_set_digest_known_value() -> None:
    assert id_set_digest(["b", "a", "c", "a"]) == hashlib.sha256(b"a\nb\nc").hexdigest()
    assert id_set_digest([]) == hashlib.sha256(b"").hexdigest()


def test_id_set_digest_sorts_as_strings() -> None:
    # "10" < "9" as strings: the digest is defined on strings, not numbers.
    assert id_set_digest(["9", "10"]) == hashlib.sha256(b"10\n9").hexdigest()


@settings(max_examples=50, deadline=None)
@given(
    ids=st.lists(st.text(min_size=1, max_size=8).filter(lambda s: "\n" not in s), max_size=20),
    rng=st.randoms(),
)
def test_id_set_digest_ignores_order_and_repeats(ids: list[str], rng: random.Random) -> None:
    shuffled = list(ids) + list(ids[:3])
    rng.shuffle(shuffled)
    assert id_set_digest(shuffled) == id_set_digest(ids)
    assert id_set_digest(iter(ids)) == id_set_digest(ids)


def test_id_set_digest_differs_for_different_sets() -> None:
    assert id_set_digest(["1", "2"]) != id_set_digest(["1", "3"])
    assert id_set_digest(["1", "2"]) != id_set_digest(["12"])


# ---------------------------------------------------------------- writing


def test_format_plain() -> None:
    assert format_ids(["3", "1", "2"]) == "3\n1\n2\n"


def test_format_with_header() -> None:
    text = format_ids(["1"], header="made by unlearn mark\n\nstrategy: random")
    assert text == "# made by unlearn mark\n#\n# strategy: random\n1\n"
    assert parse_ids(text.encode()).ids == ("1",)


def test_format_writes_repeats_once() -> None:
    assert format_ids(["a", "b", "a"]) == "a\nb\n"


def test_format_integer_ids_in_decimal() -> None:
    assert format_ids([3, 10, "x"]) == "3\n10\nx\n"  # type: ignore[list-item]
    with pytest.raises(TypeError):
        format_ids([1.5])  # type: ignore[list-item]


@pytest.mark.parametrize(
    "bad",
    [" lead", "trail ", "two\nlines", "cr\rhere", "#comment", "", "\ufeffbom", "\ud800"],
)
def test_format_refuses_ids_that_would_not_round_trip(bad: str) -> None:
    with pytest.raises(BadInput) as exc:
        format_ids(["ok", bad])
    assert repr(bad) in one_line_error(exc)


def test_format_nothing_is_an_error() -> None:
    with pytest.raises(BadInput) as exc:
        format_ids([], header="empty")
    one_line_error(exc)


@settings(max_examples=100, deadline=None)
@given(
    ids=st.lists(valid_id, min_size=1, max_size=25),
    header=st.none() | st.text(max_size=30),
)
def test_format_parse_round_trip(ids: list[str], header: str | None) -> None:
    text = format_ids(ids, header=header)
    assert text.endswith("\n")
    req = parse_ids(text.encode("utf-8"))
    assert list(req.ids) == list(dict.fromkeys(ids))
    assert req.duplicates == ()


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    ids = ["Jane Doe", "東京", "a#b", "7"]
    path = tmp_path / "out.txt"
    path.write_text(format_ids(ids, header="test"), encoding="utf-8")
    assert read_ids(path).ids == tuple(ids)
