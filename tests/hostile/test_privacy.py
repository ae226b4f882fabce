"""Hostile input, part 4 (issue #15): messages cannot inject, no raw or guessable ID in any file, keyed digests,
``unlearn ledger check``.

The data set here has e-mail addresses as IDs (``user007@example.org``), so a
raw ID is a byte string no digest, number or timestamp can contain by chance:
every file a run writes is grepped for each ID of the request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import unlearn_cmd
from harness import invoke, refuse

from unlearn_cli.errors import BadInput, MAX_MESSAGE, name_some, one_line

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e]")
SISA = ("--method", "sisa")
N = 120


def user(i: int) -> str:
    return f"user{i:03d}@example.org"


@pytest.fixture(autouse=True)
def _no_key_from_the_environment(monkeypatch):
    monkeypatch.delenv("UNLEARN_LEDGER_KEY_FILE", raising=False)


@pytest.fixture(scope="module")
def people(tmp_path_factory) -> Path:
    """A CSV data set keyed by e-mail address, a plain MLP and a 2x2 SISA ensemble trained on it."""
    directory = tmp_path_factory.mktemp("people")
    rng = np.random.default_rng(0)
    rows = ["id,x1,x2,y"]
    for i in range(N):
        x = rng.normal(0, 0.6, 2) + (2 * (i % 2) - 1)
        rows.append(f"{user(i)},{x[0]:.4f},{x[1]:.4f},{i % 2}")
    (directory / "d.csv").write_text("\n".join(rows) + "\n")
    (directory / "manifest.yaml").write_text(
        "name: people\nnum_classes: 2\ndata:\n  path: d.csv\n  features: [x1, x2]\n  labels: y\n  ids: id\n"
        "splits:\n  test: {fraction: 0.25, seed: 0}\nnormalize: standard\n")
    for out, extra in (("model.safetensors", ()), ("sisa.safetensors", ("--sisa-shards", "2", "--sisa-slices", "2"))):
        res = invoke(["train", directory / "manifest.yaml", "--out", directory / out, "--epochs", "4", "--quiet",
                      *extra])
        assert res.code == 0, res.stderr
    return directory


@pytest.fixture(scope="module")
def splits(people: Path) -> tuple[list[str], list[str]]:
    from unlearn_cli.data.manifest import load_manifest

    dataset = load_manifest(people / "manifest.yaml")
    return list(dataset.train_ids), list(dataset.test_ids)


@pytest.fixture
def work(people: Path, tmp_path: Path) -> Path:
    directory = tmp_path / "w"
    directory.mkdir()
    for path in people.iterdir():  # data, manifest, both checkpoints and the SISA slice sidecar
        if path.is_file():
            shutil.copy2(path, directory / path.name)
    return directory


def key_file(directory: Path, secret: bytes = b"correct horse battery staple 42", name: str = "key") -> Path:
    path = directory / name
    path.write_bytes(secret + b"\n")
    return path


def written_files(directory: Path, inputs: set[str]) -> list[Path]:
    """Every file under ``directory`` that a run wrote (not the data set, not a request file)."""
    found = []
    for path in sorted(directory.rglob("*")):
        if not path.is_file() or path.name in inputs:
            continue
        if path.parent.name in ("done", "failed") and not path.name.endswith(".reason"):
            continue  # the request files themselves: the operator's own input, moved
        if path.parent.name == "q":
            continue
        found.append(path)
    return found


def meta_of(path: Path) -> dict:
    from unlearn_cli.models.checkpoint import read_header_meta

    return read_header_meta(path)["meta"]


def stderr_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# -- messages: escaped, one line, capped ------------------------------------------------

@pytest.mark.parametrize("raw, shown", [("a\nb", "a\\nb"), ("\x1b[2J", "\\x1b[2J"), ("x\x7fy", "x\\x7fy"),
                                        ("\x9b31m", "\\x9b31m"), ("r\u202eevil", "r\\u202eevil"),
                                        ("p\u2028q", "p\\u2028q"), ("c\rd", "c\\rd")])
def test_one_line_escapes_every_control_character(raw, shown):
    line = one_line(f"queue file {raw}.txt refused")
    assert shown in line and not CONTROL.search(line) and len(line.splitlines()) == 1


def test_one_line_caps_long_messages_and_name_some_counts_the_rest():
    line = one_line("x" * 10_000_000)
    assert len(line) <= MAX_MESSAGE and "10000000 chars, cut" in line
    assert one_line("a" * 300 + " use --wait").endswith("use --wait")  # the end (what to do) survives
    assert one_line("while parsing\n  in 'a.yaml', line 3") == "while parsing in 'a.yaml', line 3"
    assert name_some([f"f{i}" for i in range(12)], 3) == "f0, f1, f2 (and 9 more)"


def test_private_detail_reaches_the_terminal_only():
    exc = BadInput("2 requested IDs belong to the test split, not train (lines 3, 7 of ids.txt)",
                   private="a@example.org, b@example.org")
    assert "a@example.org" not in str(exc) and "a@example.org" in exc.terminal_message()


@pytest.mark.parametrize("char", ["\n", "\x1b[31m", "\x07", "\x9b", "\u202e"])
def test_queue_file_names_with_control_characters_give_one_clean_line_per_problem(work, splits, char):
    train, test = splits
    queue = work / "q"
    queue.mkdir()
    (queue / f"bad{char}one.txt").write_text(f"{train[0]}\n{test[0]}\n")
    (queue / f"also{char}bad.txt").write_text("nobody@example.org\n")
    res = invoke(["forget", work / "model.safetensors", "--queue", queue, "--in-place", "--method", "retrain"])
    lines = stderr_lines(res.stderr)
    assert res.code == 2, res.stderr
    assert len(lines) == 3, lines  # one warning per refused file, then the one error line
    for line in lines:
        assert not CONTROL.search(line), repr(line)
        assert len(line) < 300
    assert test[0] not in "".join(p.read_text() for p in (queue / "failed").glob("*.reason"))
    for reason in (queue / "failed").glob("*.reason"):
        text = reason.read_text()
        assert text.count("\n") == 1 and not CONTROL.search(text[:-1]), repr(text)


def test_a_long_list_of_long_unknown_ids_is_one_capped_line(work):
    ids = work / "ids.txt"
    ids.write_text("".join(f"{'z' * 200}{i}@example.org\n" for i in range(50)))
    refuse(["forget", work / "model.safetensors", ids, "--method", "retrain"], [ids, work / "model.safetensors"],
           expect="50 requested IDs are not in the train split")


def test_stderr_names_the_ids_but_the_report_file_does_not(work, splits):
    _, test = splits
    ids = work / "ids.txt"
    ids.write_text(f"{test[3]}\n")
    report = work / "report.json"
    refuse(["forget", work / "model.safetensors", ids, "--method", "retrain", "--report", report], [ids],
           expect=test[3])
    text = report.read_text()
    assert json.loads(text)["status"] == "failed" and test[3] not in text


@pytest.mark.parametrize("which", ["test-split", "unknown"])
def test_an_attack_refused_for_its_ids_names_them_on_stderr_only(work, splits, which):
    _, test = splits
    record = test[3] if which == "test-split" else "nobody@example.org"
    ids = work / "ids.txt"
    ids.write_text(f"{record}\n")
    report = work / "attack.json"
    refuse(["attack", work / "model.safetensors", "--ids", ids, "--attack", "loss", "--report", report], [ids],
           expect=record)
    text = report.read_text()
    assert json.loads(text)["status"] == "failed" and record not in text


# -- no raw ID in any file a run writes ---------------------------------------------------

def _queue_of_hostile_requests(work: Path, train: list[str], test: list[str]) -> tuple[Path, list[str]]:
    queue = work / "q"
    queue.mkdir()
    (queue / "good.txt").write_text(f"{train[0]}\n{train[1]}\n{train[2]}\n")
    (queue / "test-split.txt").write_text(f"# comment\n{train[5]}\n{test[0]}\n{test[1]}\n")
    (queue / "unknown.txt").write_text("nobody@example.org\nghost@example.org\n")
    return queue, [train[0], train[1], train[2], train[5], test[0], test[1], "nobody@example.org",
                   "ghost@example.org"]


@pytest.mark.parametrize("with_key", [False, True])
def test_no_file_a_queue_run_writes_holds_a_raw_id(work, splits, with_key):
    train, test = splits
    queue, requested = _queue_of_hostile_requests(work, train, test)
    key = ["--ledger-key", key_file(work)] if with_key else []
    res = invoke(["forget", work / "sisa.safetensors", "--queue", queue, "--in-place", *SISA, *key,
                  "--report", work / "report.json"])
    assert res.code == 2, res.stderr  # two files refused, the third applied
    assert len(list((queue / "done").iterdir())) == 1 and len(list((queue / "failed").glob("*.reason"))) == 2
    reasons = sorted(p.read_text() for p in (queue / "failed").glob("*.reason"))
    assert any("lines 3, 4 of test-split.txt" in r for r in reasons), reasons
    files = written_files(work, {"d.csv", "manifest.yaml", "key"})
    names = {p.name for p in files}
    assert {"sisa.safetensors", "unlearn-ledger.jsonl", "report.json"} <= names
    assert any("sisa-slices" in n for n in names), names  # the sidecar is among the files checked
    for path in files:
        data = path.read_bytes()
        for record_id in requested:
            assert record_id.encode() not in data, (path, record_id)
    assert ("no ledger key" in res.stderr) is (not with_key)


def test_a_journal_left_by_a_killed_run_holds_no_raw_id(work, splits):
    train, _ = splits
    ids = work / "ids.txt"
    ids.write_text(f"{train[7]}\n{train[8]}\n")
    env = dict(os.environ, UNLEARN_TEST_KILL_AT="journaled")
    proc = subprocess.run(unlearn_cmd() + ["forget", str(work / "model.safetensors"), str(ids), "--method", "retrain",
                                           "--in-place", "--quiet"], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    journal = work / "unlearn-ledger.jsonl.pending"
    assert journal.exists()
    leftovers = [p for p in work.iterdir() if p.is_file() and p.name not in ("d.csv", "manifest.yaml", "ids.txt")]
    for path in leftovers:
        assert train[7].encode() not in path.read_bytes() and train[8].encode() not in path.read_bytes(), path


# -- keyed digests ------------------------------------------------------------------------

def test_with_a_key_no_digest_is_the_plain_sha256_of_a_removed_id(work, splits):
    train, _ = splits
    key = key_file(work)
    removed = [train[10], train[11], train[40]]
    ids = work / "ids.txt"
    ids.write_text("".join(f"{i}\n" for i in removed))
    res = invoke(["forget", work / "sisa.safetensors", ids, "--in-place", *SISA, "--ledger-key", key])
    assert res.code == 0, res.stderr
    secret = key.read_bytes().strip()
    plain = {hashlib.sha256(i.encode()).hexdigest() for i in removed}
    plain.add(hashlib.sha256("\n".join(sorted(removed)).encode()).hexdigest())
    keyed = {hmac.new(secret, i.encode(), "sha256").hexdigest() for i in removed}
    key_id = hmac.new(secret, b"unlearn key id", "sha256").hexdigest()[:16]

    line = json.loads((work / "unlearn-ledger.jsonl").read_text().splitlines()[-1])
    meta = meta_of(work / "sisa.safetensors")
    lineage, sisa = meta["lineage"][-1], meta["sisa"]
    assert line["key_id"] == lineage["key_id"] == sisa["removed_key_id"] == key_id
    assert set(line["removed_id_hmac"]) == keyed == set(sisa["removed_digests"])
    assert "removed_id_sha256" not in line and "removed" not in sisa and sisa["removed_count"] == 3
    digests = [*line["removed_id_hmac"], line["removed_ids_digest"], lineage["removed_ids_digest"],
               *sisa["removed_digests"]]
    assert not plain & set(digests)
    for path in work.iterdir():  # the key itself is written nowhere
        if path.name != "key" and path.is_file():
            assert secret not in path.read_bytes(), path


def test_same_key_is_idempotent_and_evaluate_needs_no_key(work, splits):
    train, _ = splits
    key = key_file(work)
    ids = work / "ids.txt"
    ids.write_text(f"{train[20]}\n{train[21]}\n")
    first = invoke(["forget", work / "sisa.safetensors", ids, "--in-place", *SISA, "--ledger-key", key, "--json"])
    assert first.code == 0, first.stderr
    again = invoke(["forget", work / "sisa.safetensors", ids, "--in-place", *SISA, "--ledger-key", key, "--json"])
    assert again.code == 0 and json.loads(again.stdout)["status"] == "nothing-to-do", again.stderr
    more = work / "more.txt"
    more.write_text(f"{train[20]}\n{train[30]}\n")  # one already removed, one new: a further exact SISA step
    third = invoke(["forget", work / "sisa.safetensors", more, "--in-place", *SISA, "--ledger-key", key, "--json"])
    report = json.loads(third.stdout)
    assert third.code == 0 and report["metrics"]["already_removed"] == 1 and report["metrics"]["forgotten"] == 1
    assert meta_of(work / "sisa.safetensors")["sisa"]["removed_count"] == 3
    evaluate = invoke(["evaluate", work / "sisa.safetensors", "--json"])  # live shards from the stored counts
    assert evaluate.code == 0, evaluate.stderr


@pytest.mark.parametrize("second_key", ["other", "none"])
def test_a_different_key_or_none_is_refused_not_fooled(work, splits, second_key):
    train, _ = splits
    ids = work / "ids.txt"
    ids.write_text(f"{train[25]}\n")
    res = invoke(["forget", work / "model.safetensors", ids, "--in-place", "--method", "retrain",
                  "--ledger-key", key_file(work)])
    assert res.code == 0, res.stderr
    other = ["--ledger-key", key_file(work, b"a completely different secret!!", "other")] \
        if second_key == "other" else []
    out = refuse(["forget", work / "model.safetensors", ids, "--in-place", "--method", "retrain", *other],
                 [work / "model.safetensors", work / "unlearn-ledger.jsonl"], expect="ledger key id")
    assert "cannot be compared" in out.stderr


def test_old_sisa_checkpoints_with_positions_keep_working(work, splits):
    """A checkpoint written before digests (``sisa.removed`` positions) evaluates and forgets further."""
    from unlearn_cli.models.checkpoint import load_checkpoint, save_checkpoint

    train, _ = splits
    ids = work / "ids.txt"
    ids.write_text(f"{train[3]}\n")
    assert invoke(["forget", work / "sisa.safetensors", ids, "--in-place", *SISA]).code == 0
    ckpt = load_checkpoint(work / "sisa.safetensors")
    sisa = {k: v for k, v in ckpt.meta["sisa"].items() if not k.startswith("removed")}
    old = work / "old.safetensors"
    save_checkpoint(old, ckpt.state, {**ckpt.meta, "sisa": {**sisa, "removed": [0]}})  # train[3] is not row 0:
    assert invoke(["evaluate", old, "--json"]).code == 0                          # only the format matters here
    more = work / "more.txt"
    more.write_text(f"{train[50]}\n")
    res = invoke(["forget", old, more, "--method", "sisa", "--out", work / "new.safetensors", "--ledger",
                  work / "other-ledger.jsonl"])
    assert res.code == 0, res.stderr
    sealed = meta_of(work / "new.safetensors")["sisa"]
    assert "removed" not in sealed and sealed["removed_count"] == 2


# -- unlearn ledger check -----------------------------------------------------------------

def test_ledger_check_finds_each_removed_ids_run_and_not_found_for_others(work, splits):
    train, test = splits
    key = key_file(work)
    a, b = work / "a.txt", work / "b.txt"
    a.write_text(f"{train[60]}\n{train[61]}\n")
    b.write_text(f"{train[62]}\n")
    runs = []
    for ids in (a, b):
        res = invoke(["forget", work / "model.safetensors", ids, "--in-place", "--method", "retrain",
                      "--ledger-key", key, "--json"])
        assert res.code == 0, res.stderr
        runs.append(json.loads(res.stdout)["ledger"]["run_id"])
    ledger, report = work / "unlearn-ledger.jsonl", work / "audit.json"
    asked = [train[60], train[62], train[63]]
    res = invoke(["ledger", "check", ledger, *asked, "--ledger-key", key, "--checkpoint", work / "model.safetensors",
                  "--report", report])
    assert res.code == 3, res.stderr
    assert "1 of 3 IDs not removed" in res.stderr and train[63] in res.stdout  # the table shows the IDs
    answer = json.loads(report.read_text())
    by_arg = {item["arg"]: item for item in answer["ids"]}
    assert [r["run_id"] for r in by_arg[1]["runs"]] == [runs[0]]
    assert [r["run_id"] for r in by_arg[2]["runs"]] == [runs[1]]
    assert by_arg[1]["runs"][0]["output"]["path"] == str(work / "model.safetensors")
    assert by_arg[3]["status"] == "not found" and by_arg[3]["runs"] == []
    assert by_arg[1]["status"] == "removed" and by_arg[1]["checkpoints"][0]["holds"] is False
    assert by_arg[1]["checkpoints"][0]["lineage_confirms"] is True
    assert by_arg[3]["checkpoints"][0]["holds"] is True
    for record_id in asked:
        assert record_id not in report.read_text()
    ok = invoke(["ledger", "check", ledger, train[60], train[61], "--ledger-key", key, "--json"])
    assert ok.code == 0 and json.loads(ok.stdout)["metrics"]["summary"]["removed"] == 2, ok.stderr
    keyless = invoke(["ledger", "check", ledger, train[60], "--json"])  # keyed lines cannot be searched
    assert keyless.code == 3 and "pass --ledger-key" in keyless.stderr


def test_ledger_check_sees_sisa_checkpoints_that_no_longer_hold_an_id(work, splits):
    train, _ = splits
    key = key_file(work)
    ids = work / "ids.txt"
    ids.write_text(f"{train[70]}\n")
    original = work / "sisa-original.safetensors"
    shutil.copy2(work / "sisa.safetensors", original)
    assert invoke(["forget", work / "sisa.safetensors", ids, "--in-place", *SISA, "--ledger-key", key]).code == 0
    res = invoke(["ledger", "check", work / "unlearn-ledger.jsonl", train[70], "--ledger-key", key,
                  "--checkpoint", work / "sisa.safetensors", "--checkpoint", original, "--json"])
    assert res.code == 3, res.stderr  # the original still holds it
    verdicts = json.loads(res.stdout)["ids"][0]["checkpoints"]
    assert verdicts[0]["holds"] is False and verdicts[0]["sisa_lists_removed"] is True
    assert verdicts[1]["holds"] is True


@pytest.mark.parametrize("case", ["missing-ledger", "short-key", "key-is-a-directory", "no-ids"])
def test_ledger_check_bad_input_is_one_line_exit_2(work, case):
    ledger = work / "unlearn-ledger.jsonl"
    ledger.write_text("")
    short = work / "short"
    short.write_text("abc")
    args = {
        "missing-ledger": ["ledger", "check", work / "none.jsonl", "x@example.org"],
        "short-key": ["ledger", "check", ledger, "x@example.org", "--ledger-key", short],
        "key-is-a-directory": ["ledger", "check", ledger, "x@example.org", "--ledger-key", work],
        "no-ids": ["ledger", "check", ledger],
    }[case]
    refuse(args, [ledger, short])
