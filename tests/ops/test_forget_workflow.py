"""The forget workflow in-process: ledger lines, idempotency, refusals that write nothing.

Runs go through the real command (typer's CliRunner) so exit codes, the one-line
messages and the JSON report are the ones a user sees.
"""

from __future__ import annotations

import errno
import json
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import write_blobs
from forget_fixtures import Work, snapshot, template, work  # noqa: F401  (fixtures)
from unlearn_cli.ops.digests import id_digest
from unlearn_cli.methods.base import Outcome
from unlearn_cli.ops.digests import file_sha256
from unlearn_cli.models.checkpoint import load_checkpoint


def one_error_line(result, code: int, *fragments: str) -> str:
    assert result.exit_code == code, (result.exit_code, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("unlearn forget: error:")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# -- a good run -----------------------------------------------------------------

def test_ledger_line_records_the_run_without_raw_ids(work: Work):
    a = work.ids_file("a.txt", work.train_ids[:4])
    b = work.ids_file("b.txt", work.train_ids[3:6])  # one ID in both files
    res = work.invoke(work.model, a, b, "--json")
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)  # stdout holds the report and nothing else
    assert report["status"] == "ok" and report["metrics"]["forgotten"] == 6
    assert {"before", "after", "requested", "forgotten", "already_removed", "skipped_unknown"} <= set(report["metrics"])
    assert "duplicate" in res.stderr  # warnings go to stderr
    out = work.dir / "model.unlearned.safetensors"
    [line] = work.ledger_lines()
    assert line["status"] == "ok" and line["tool_version"] and line["time"].endswith("Z")
    assert line["method"] == "retrain" and isinstance(line["config"], dict)
    assert [(r["file"], r["sha256"]) for r in line["requests"]] == [
        (str(a), file_sha256(a)), (str(b), file_sha256(b))]
    assert line["ids"] == {"requested": 6, "removed": 6, "already_removed": 0, "unknown_skipped": 0}
    assert line["removed_id_sha256"] == sorted(id_digest(i) for i in work.train_ids[:6])
    assert line["input"]["sha256"] == file_sha256(work.model)
    assert line["output"] == {"path": str(out.resolve()), "sha256": file_sha256(out)}
    assert set(line["metrics"]["after"]) == {"test", "retain", "forget"}
    text = work.ledger.read_text()
    for record_id in work.train_ids[:6]:
        assert f'"{record_id}"' not in text  # never the raw ID
    lineage = load_checkpoint(out).lineage
    assert len(lineage) == 1 and lineage[0]["removed_ids_digest"] == line["removed_ids_digest"]
    assert sorted(p.name for p in work.dir.iterdir()) == [
        "a.txt", "b.txt", "blobs.safetensors", "manifest.yaml", "model.safetensors",
        "model.unlearned.safetensors", "unlearn-ledger.jsonl"]  # no lock or temp files left


def test_already_removed_ids_are_skipped_and_kept_out_of_retain(work: Work, monkeypatch):
    from unlearn_cli.methods.retrain import Retrain

    seen = []
    real = Retrain.forget

    def spy(self, request, config):
        seen.append((set(request.forget_rows.tolist()), set(request.retain_rows.tolist())))
        return real(self, request, config)

    monkeypatch.setattr(Retrain, "forget", spy)
    first, second = work.train_ids[:5], work.train_ids[3:8]
    assert work.invoke(work.model, work.ids_file("1.txt", first), "--in-place").exit_code == 0
    res = work.invoke(work.model, work.ids_file("2.txt", second), "--in-place", "--json")
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["metrics"]["forgotten"] == 3 and report["metrics"]["already_removed"] == 2
    assert "2 requested IDs were already removed" in res.stderr
    from unlearn_cli.data.manifest import load_manifest

    dataset = load_manifest(work.dir / "manifest.yaml")
    forget_rows, retain_rows = seen[1]
    assert forget_rows == set(dataset.index_of(work.train_ids[5:8]).tolist())
    assert not set(dataset.index_of(first).tolist()) & retain_rows  # removed records are not learned again
    assert len(retain_rows) == len(work.train_ids) - 8
    assert len(load_checkpoint(work.model).lineage) == 2
    lines = work.ledger_lines()
    assert lines[1]["input"]["sha256"] == lines[0]["output"]["sha256"]
    assert lines[1]["ids"]["already_removed"] == 2


def test_a_request_of_only_removed_ids_is_nothing_to_do(work: Work):
    ids = work.ids_file("ids.txt", work.train_ids[:3])
    assert work.invoke(work.model, ids, "--in-place").exit_code == 0
    before = snapshot(work.dir)
    res = work.invoke(work.model, ids, "--in-place", "--json")
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["status"] == "nothing-to-do" and report["metrics"]["already_removed"] == 3
    after = snapshot(work.dir)
    assert after.pop("unlearn-ledger.jsonl") != before.pop("unlearn-ledger.jsonl")
    assert after == before  # the checkpoint is unchanged
    last = work.ledger_lines()[-1]
    assert last["status"] == "nothing-to-do" and last["input"]["sha256"] == last["output"]["sha256"]
    assert last["removed_id_sha256"] == []


def test_human_output_for_nothing_to_do(work: Work):
    ids = work.ids_file("ids.txt", work.train_ids[:2])
    work.invoke(work.model, ids, "--in-place")
    res = work.invoke(work.model, ids, "--in-place")
    assert res.exit_code == 0 and "nothing applied" in res.stdout


def test_output_in_another_folder_finds_its_manifest(work: Work):
    (work.dir / "sub").mkdir()
    out = work.dir / "sub" / "m.safetensors"
    assert work.invoke(work.model, work.ids_file("ids.txt", work.train_ids[:2]), "--out", out).exit_code == 0
    assert (work.dir / "sub" / "unlearn-ledger.jsonl").exists()
    # The recorded manifest is re-anchored at the output's folder, so the output works on its own.
    res = work.invoke(out, work.ids_file("more.txt", work.train_ids[2:4]), "--in-place")
    assert res.exit_code == 0, res.stderr


# -- refusals: exit 2, one line, nothing written ----------------------------------

def _bad_cases(w: Work):
    unknown = [f"u{i}" for i in range(12)]
    other = write_blobs(w.dir.parent / "other", n=200, seed=1)
    truncated = w.dir / "truncated.safetensors"
    truncated.write_bytes(w.model.read_bytes()[:-100])
    garbage = w.dir / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01 not a checkpoint")
    good = w.ids_file("good.txt", w.train_ids[:3])
    nonutf8 = w.dir / "latin1.txt"
    nonutf8.write_bytes(b"1\n2\nJos\xe9\n")
    notes = w.dir / "notes.txt"
    notes.write_text("name: not a ledger\nnum_classes: 2\n")
    (w.dir / "q").mkdir()
    (w.dir / "q2").mkdir()  # a queue holding a good request: a run-level refusal must leave it waiting
    w.ids_file("waiting.txt", w.train_ids[:3], w.dir / "q2")
    return {
        "unknown": ([w.model, w.ids_file("u.txt", unknown + w.train_ids[:1])],
                    ["12 requested IDs are not in the train split", "u0, u1", "u9, ... (first ten shown)",
                     "--ignore-unknown"]),
        "test-split": ([w.model, w.ids_file("t.txt", w.test_ids[:2] + w.train_ids[:1])],
                       ["2 requested IDs belong to the test split"]),
        "empty": ([w.model, w.ids_file("e.txt", ["# just a comment", ""])], ["the request holds no IDs"]),
        "missing-file": ([w.model, w.dir / "nope.txt"], ["no such request file"]),
        "directory": ([w.model, w.dir / "q"], ["is a directory"]),
        "non-utf8": ([w.model, nonutf8], ["not UTF-8 text (byte offset 7)"]),
        "dataset-mismatch": ([w.model, good, "--data", other], ["does not match the one model.safetensors was"]),
        "truncated": ([truncated, good], ["truncated"]),
        "garbage": ([garbage, good], ["not a safetensors checkpoint"]),
        "missing-input": ([w.dir / "none.safetensors", good], ["checkpoint not found"]),
        "out-missing-dir": ([w.model, good, "--out", w.dir / "no" / "m.safetensors"], ["does not exist"]),
        "overwrite-input": ([w.model, good, "--out", w.model], ["refusing to overwrite the input"]),
        "in-place-and-out": ([w.model, good, "--in-place", "--out", w.dir / "x.safetensors"],
                             ["cannot be combined with --out"]),
        "ledger-missing-dir": ([w.model, good, "--ledger", w.dir / "no" / "l.jsonl"], ["does not exist"]),
        "ledger-not-a-ledger": ([w.model, good, "--ledger", notes], ["not an unlearn ledger"]),
        "ledger-is-an-input": ([w.model, good, "--ledger", w.dir / "manifest.yaml"], ["is the manifest"]),
        "negative-wait": ([w.model, good, "--wait", "-1"], ["--wait must be >= 0"]),
        "queue-missing": ([w.model, "--queue", w.dir / "nq"], ["no such directory"]),
        "queue-and-files": ([w.model, good, "--queue", w.dir / "q"], ["not both"]),
        "no-requests": ([w.model], ["no request files given"]),
        "queue-corrupt-checkpoint": ([truncated, "--queue", w.dir / "q2"], ["truncated"]),
        "queue-dataset-mismatch": ([w.model, "--queue", w.dir / "q2", "--data", other], ["does not match"]),
        "bad-option": ([w.model, good, "--set", "nonsense=1"], ["unknown option nonsense"]),
    }


CASES = ["unknown", "test-split", "empty", "missing-file", "directory", "non-utf8", "dataset-mismatch",
         "truncated", "garbage", "missing-input", "out-missing-dir", "overwrite-input", "in-place-and-out",
         "ledger-missing-dir", "ledger-not-a-ledger", "ledger-is-an-input", "negative-wait", "queue-missing", "queue-and-files",
         "no-requests", "bad-option", "queue-corrupt-checkpoint", "queue-dataset-mismatch"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(work: Work, case: str):
    args, fragments = _bad_cases(work)[case]
    before = snapshot(work.dir.parent)
    res = work.invoke(*args)
    one_error_line(res, 2, *fragments)
    assert snapshot(work.dir.parent) == before


def test_ignore_unknown_skips_them_with_a_warning(work: Work):
    ids = work.ids_file("u.txt", ["nope-1", "nope-2"] + work.train_ids[:2])
    res = work.invoke(work.model, ids, "--ignore-unknown", "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["metrics"]["skipped_unknown"] == 2
    assert "skipped 2 IDs" in res.stderr
    assert work.ledger_lines()[0]["ids"]["unknown_skipped"] == 2


def test_non_finite_weights_are_refused(work: Work, monkeypatch):
    from unlearn_cli.methods.retrain import Retrain

    def nan_method(self, request, config):
        state = {k: v.clone() for k, v in request.checkpoint.state.items()}
        first = next(k for k, v in state.items() if v.is_floating_point())
        state[first].view(-1)[0] = float("nan")
        return Outcome(state=state)

    monkeypatch.setattr(Retrain, "forget", nan_method)
    ids = work.ids_file("ids.txt", work.train_ids[:3])
    before = snapshot(work.dir)
    one_error_line(work.invoke(work.model, ids), 2, "non-finite weights", "nothing was written")
    one_error_line(work.invoke(work.model, ids, "--in-place"), 2, "non-finite weights")
    assert snapshot(work.dir) == before


def test_a_method_refusing_its_own_result_is_exit_3(work: Work, monkeypatch):
    from unlearn_cli.methods.retrain import Retrain

    monkeypatch.setattr(Retrain, "check", lambda self, request, config, outcome: "accuracy collapsed")
    ids = work.ids_file("ids.txt", work.train_ids[:3])
    before = snapshot(work.dir)
    one_error_line(work.invoke(work.model, ids), 3, "refused its own result: accuracy collapsed")
    assert snapshot(work.dir) == before


def test_disk_full_removes_the_temp_file_and_keeps_the_old_output(work: Work, monkeypatch):
    from unlearn_cli.ops import atomic

    ids = work.ids_file("ids.txt", work.train_ids[:3])
    assert work.invoke(work.model, ids, "--in-place").exit_code == 0  # a previous output and ledger exist
    real_open = open

    class FullDisk:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            self.fh.write(data[: len(data) // 3])
            self.fh.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def __getattr__(self, name):
            return getattr(self.fh, name)

    def full_open(path, mode="r", *args, **kwargs):
        fh = real_open(path, mode, *args, **kwargs)
        return FullDisk(fh) if "w" in mode else fh

    monkeypatch.setattr(atomic, "open", full_open, raising=False)
    more = work.ids_file("more.txt", work.train_ids[3:6])
    before = snapshot(work.dir)
    one_error_line(work.invoke(work.model, more, "--in-place"), 2, "no space left on device", "free some space")
    assert snapshot(work.dir) == before  # temp file removed, checkpoint and ledger untouched


# -- the queue, in-process ---------------------------------------------------------

def test_queue_refuses_bad_files_alone_and_applies_the_rest(work: Work):
    q = work.dir / "queue"
    q.mkdir()
    work.ids_file("a.txt", work.train_ids[:3], q)
    (q / "b.txt").write_bytes(b"\xff\xfe1\x002\x00")  # UTF-16: refused
    work.ids_file("c.txt", work.test_ids[:1], q)   # a test-split ID: refused
    work.ids_file(".partial.txt", work.train_ids[10:12], q)  # still being written: ignored
    (q / "notes.md").write_text("not a request")
    res = work.invoke(work.model, "--queue", q, "--in-place", "--json")
    one_error_line(res, 2, "refused 2 request file(s)")
    report = json.loads(res.stdout)
    assert report["status"] == "ok" and report["metrics"]["forgotten"] == 3
    assert sorted(p.name for p in q.iterdir()) == [".partial.txt", "done", "failed", "notes.md"]
    assert sorted(p.name for p in (q / "done").iterdir()) == ["a.txt"]
    assert sorted(p.name for p in (q / "failed").iterdir()) == ["b.txt", "b.txt.reason", "c.txt", "c.txt.reason"]
    assert "UTF-16" in (q / "failed" / "b.txt.reason").read_text()
    assert "test split" in (q / "failed" / "c.txt.reason").read_text()
    [line] = work.ledger_lines()
    assert [r["file"] for r in line["requests"]] == ["a.txt"]
    assert [r["file"] for r in line["rejected"]] == ["b.txt", "c.txt"]


def test_empty_queue_is_nothing_to_do(work: Work):
    q = work.dir / "queue"
    q.mkdir()
    res = work.invoke(work.model, "--queue", q, "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["status"] == "nothing-to-do"
    assert [line["status"] for line in work.ledger_lines(work.dir / "unlearn-ledger.jsonl")] == ["nothing-to-do"]
    assert not (work.dir / "model.unlearned.safetensors").exists()


def test_queue_with_out_continues_from_its_own_output(work: Work):
    q = work.dir / "queue"
    q.mkdir()
    out = work.dir / "served.safetensors"
    work.ids_file("a.txt", work.train_ids[:3], q)
    assert work.invoke(work.model, "--queue", q, "--out", out).exit_code == 0
    work.ids_file("b.txt", work.train_ids[3:5], q)
    res = work.invoke(work.model, "--queue", q, "--out", out)
    assert res.exit_code == 0, res.stderr
    assert "continuing from" in res.stderr
    lineage = load_checkpoint(out).lineage
    assert [e["count"] for e in lineage] == [3, 2]  # the first night's removals are kept
    assert lineage[0]["parent_sha256"] == file_sha256(work.model)


# -- request-file content, generated -----------------------------------------------

ITEMS = st.sampled_from(["train", "train", "train", "test", "unknown", "comment", "blank", "spaces"])


@st.composite
def request_bytes(draw, train: list[str], test: list[str]):
    if draw(st.booleans()):
        return draw(st.binary(max_size=64))
    lines = []
    for kind in draw(st.lists(ITEMS, max_size=8)):
        if kind == "train":
            lines.append(draw(st.sampled_from(train[:40])))
        elif kind == "test":
            lines.append(draw(st.sampled_from(test)))
        elif kind == "unknown":
            lines.append(draw(st.text(min_size=1, max_size=6)))
        elif kind == "comment":
            lines.append("# " + draw(st.text(max_size=5)))
        elif kind == "blank":
            lines.append("")
        else:
            lines.append("  " + draw(st.sampled_from(train[:40])) + "\t")
    sep = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    data = sep.join(lines).encode("utf-8", errors="surrogatepass")
    return (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + data


@pytest.fixture(scope="module")
def hypothesis_home(template: Work, tmp_path_factory):
    return template, tmp_path_factory.mktemp("hyp")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_request_file_succeeds_or_fails_cleanly(hypothesis_home, data):
    from unlearn_cli.data.ids import check_known, parse_ids
    from unlearn_cli.errors import BadInput

    template_work, root = hypothesis_home
    raw = data.draw(request_bytes(template_work.train_ids, template_work.test_ids))
    directory = root / f"case{len(list(root.iterdir()))}"
    shutil.copytree(template_work.dir, directory)
    w = Work(directory, template_work.train_ids, template_work.test_ids)
    ids = directory / "ids.txt"
    ids.write_bytes(raw)
    try:  # the rules of DESIGN.md, as the ids library states them
        expected = check_known(parse_ids(raw).ids, w.train_ids, w.test_ids)[0]
    except BadInput:
        expected = None
    event("refused" if expected is None else "applied")
    before = snapshot(directory)
    res = w.invoke(w.model, ids, "--json")
    assert "Traceback" not in res.stderr
    if expected is None:
        one_error_line(res, 2)
        assert snapshot(directory) == before
        assert json.loads(res.stdout)["status"] == "failed"
    else:
        assert res.exit_code == 0, res.stderr
        [line] = w.ledger_lines()
        assert line["removed_id_sha256"] == sorted(id_digest(i) for i in set(expected))
        assert load_checkpoint(directory / "model.unlearned.safetensors").lineage[0]["count"] == len(set(expected))
    shutil.rmtree(directory)


def test_ledger_digests_map_back_to_exactly_the_removed_records(work: Work):
    ids = work.ids_file("ids.txt", work.train_ids[:4])
    assert work.invoke(work.model, ids, "--in-place").exit_code == 0
    [line] = work.ledger_lines()
    digests = set(line["removed_id_sha256"])
    assert {i for i in work.train_ids if id_digest(i) in digests} == set(work.train_ids[:4])
    assert np.all([len(d) == 64 for d in digests])
