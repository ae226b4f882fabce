"""Unattended forget, driven through the installed `unlearn` like cron would: queue, ledger, locks, crashes.

The crash test stops runs with SIGKILL at every step between two durable
writes (UNLEARN_TEST_KILL_AT, see unlearn_cli/ops/faults.py) and at random
times, then checks that nothing was lost, corrupted or applied twice.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import run_cli, unlearn_cmd
from unlearn_cli.data.manifest import load_manifest
from unlearn_cli.ops.digests import file_sha256
from unlearn_cli.models.checkpoint import load_checkpoint
from unlearn_cli.ops.ledger import read_ledger
from unlearn_cli.ops.locking import hold_locks

FILES = ("blobs.safetensors", "manifest.yaml", "model.safetensors")
CHEAP = ("--method", "retrain")


@pytest.fixture(scope="module")
def base(blobs_checkpoint: Path, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("unattended")
    for name in FILES:
        shutil.copy2(blobs_checkpoint.parent / name, directory / name)
    return directory


def copy_of(base: Path, target: Path) -> Path:
    shutil.copytree(base, target)
    return target


def train_ids(directory: Path) -> list[str]:
    return load_manifest(directory / "manifest.yaml").train_ids


def write_ids(path: Path, ids) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))
    return path


def in_process(directory: Path, command: list[str]):
    """The same command run inside the test process, from ``directory`` (saves a torch import)."""
    from typer.testing import CliRunner

    from unlearn_cli.cli.app import app

    old = os.getcwd()
    os.chdir(directory)
    try:
        return CliRunner().invoke(app, [str(a) for a in command], catch_exceptions=False)
    finally:
        os.chdir(old)


def ledger_lines(path: Path) -> list[dict]:
    ledger = read_ledger(path)
    assert ledger.damaged == 0
    return ledger.lines


def leftovers(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*")
                  if p.name.endswith((".tmp", ".lock", ".pending")))


def test_the_same_queue_twice_is_nothing_to_do(base: Path, tmp_path: Path):
    work = copy_of(base, tmp_path / "w")
    ids = train_ids(work)
    q = work / "queue"
    requests = {"alice.txt": ids[:4], "bob.txt": ids[4:7]}
    for name, chunk in requests.items():
        write_ids(q / name, chunk)
    cron = ["forget", work / "model.safetensors", "--queue", q, "--in-place", "--json", "--method", "puma"]

    first = run_cli(*cron)
    assert first.returncode == 0, first.stderr.decode()
    report = json.loads(first.stdout)  # with --json, stdout is the report alone
    assert report["status"] == "ok" and report["metrics"]["forgotten"] == 7
    assert sorted(p.name for p in q.iterdir()) == ["done"]
    assert sorted(p.name for p in (q / "done").iterdir()) == ["alice.txt", "bob.txt"]
    checkpoint = (work / "model.safetensors").read_bytes()
    ledger_before = (work / "unlearn-ledger.jsonl").read_bytes()

    for name, chunk in requests.items():  # the same requests arrive again
        write_ids(q / name, chunk)
    second = run_cli(*cron)
    assert second.returncode == 0, second.stderr.decode()
    report = json.loads(second.stdout)
    assert report["status"] == "nothing-to-do" and report["metrics"]["already_removed"] == 7
    assert (work / "model.safetensors").read_bytes() == checkpoint
    ledger_after = (work / "unlearn-ledger.jsonl").read_bytes()
    assert ledger_after.startswith(ledger_before)  # append-only
    new_lines = ledger_after[len(ledger_before):].decode().splitlines()
    assert len(new_lines) == 1
    line = json.loads(new_lines[0])
    assert line["status"] == "nothing-to-do" and line["ids"]["already_removed"] == 7
    assert line["input"]["sha256"] == line["output"]["sha256"] == file_sha256(work / "model.safetensors")
    assert sorted(p.name for p in (q / "done").iterdir()) == ["alice.1.txt", "alice.txt", "bob.1.txt", "bob.txt"]
    assert leftovers(work) == []


PHASES = ["method-done", "verified", "journaled", "published", "ledgered", "moved-one"]


def test_sigkill_at_any_point_loses_nothing_and_applies_once(base: Path, tmp_path: Path):
    # A previous batch made the served output; tonight's batch (a.txt, b.txt) is waiting.
    prepared = copy_of(base, tmp_path / "prepared")
    ids = train_ids(prepared)
    q = prepared / "queue"
    write_ids(q / "earlier.txt", ids[:3])
    command = ["forget", "model.safetensors", "--queue", "queue", "--out", "served.safetensors", *CHEAP]
    assert in_process(prepared, command).exit_code == 0
    write_ids(q / "a.txt", ids[3:6])
    write_ids(q / "b.txt", ids[6:8])
    model = (prepared / "model.safetensors").read_bytes()
    served = (prepared / "served.safetensors").read_bytes()
    ledger = (prepared / "unlearn-ledger.jsonl").read_bytes()
    base_lineage = load_checkpoint(prepared / "served.safetensors").lineage

    rng = random.Random(7)
    delays = {f"timer-{i}": rng.uniform(0.5, 6.0) for i in range(2)}
    procs = {}
    t0 = time.monotonic()
    for case in PHASES + list(delays):
        work = copy_of(prepared, tmp_path / case)
        env = dict(os.environ, COLUMNS="200")
        if case in PHASES:
            env["UNLEARN_TEST_KILL_AT"] = case
        procs[case] = (work, subprocess.Popen(unlearn_cmd() + [str(a) for a in command], cwd=work, env=env,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for case, delay in sorted(delays.items(), key=lambda kv: kv[1]):
        time.sleep(max(0.0, t0 + delay - time.monotonic()))
        procs[case][1].send_signal(signal.SIGKILL)
    codes = {case: proc.wait(timeout=300) for case, (_, proc) in procs.items()}
    for phase in PHASES:
        assert codes[phase] == -signal.SIGKILL, (phase, codes[phase])

    for case, (work, _) in procs.items():
        completed = codes[case] == 0
        assert (work / "model.safetensors").read_bytes() == model, case  # the input is never touched
        now = (work / "served.safetensors").read_bytes()
        if now != served:  # the new output is only ever whole and verified
            lineage = load_checkpoint(work / "served.safetensors").lineage
            assert lineage[:-1] == base_lineage and lineage[-1]["count"] == 5, case
        ledger_now = (work / "unlearn-ledger.jsonl").read_bytes()
        assert ledger_now.startswith(ledger), case
        lines = ledger_lines(work / "unlearn-ledger.jsonl")
        waiting = {p.name for p in (work / "queue").glob("*.txt")}
        done = {p.name for p in (work / "queue" / "done").glob("*.txt")}
        assert waiting | done == {"a.txt", "b.txt", "earlier.txt"} and not waiting & done, case
        if done - {"earlier.txt"}:  # a request leaves the queue only once its run is durable
            assert lines[-1]["status"] == "ok" and lines[-1]["output"]["sha256"] == file_sha256(
                work / "served.safetensors"), case
        if not completed and case not in ("moved-one",):
            assert waiting == {"a.txt", "b.txt"}, case

    # The next (cron) run finishes or redoes whatever the killed one left (run in-process: no torch import).
    for case, (work, _) in procs.items():
        rerun = in_process(work, command)
        assert rerun.exit_code == 0, (case, rerun.stderr)
        lineage = load_checkpoint(work / "served.safetensors").lineage
        assert lineage[:-1] == base_lineage and lineage[-1]["count"] == 5, case  # applied exactly once
        lines = ledger_lines(work / "unlearn-ledger.jsonl")
        applied = [line for line in lines[1:] if line["status"] == "ok"]
        assert len(applied) == 1, (case, [line["status"] for line in lines])
        assert applied[0]["output"]["sha256"] == file_sha256(work / "served.safetensors"), case
        # Killed after the rename but before its ledger line: the journal put the line in afterwards.
        assert applied[0].get("recovered", False) == (case == "published"), case
        assert not list((work / "queue").glob("*.txt")), case
        assert {p.name for p in (work / "queue" / "done").glob("*.txt")} == {"a.txt", "b.txt", "earlier.txt"}
        assert leftovers(work) == [], case


def test_a_held_lock_is_exit_4_naming_the_holder(base: Path, tmp_path: Path):
    work = copy_of(base, tmp_path / "w")
    ids = write_ids(work / "ids.txt", train_ids(work)[:3])
    out = work / "model.unlearned.safetensors"
    before = sorted(p.name for p in work.iterdir())
    with hold_locks([work / "model.unlearned.safetensors.lock"]):
        proc = run_cli("forget", work / "model.safetensors", ids, *CHEAP)
    assert proc.returncode == 4
    err = proc.stderr.decode().strip().splitlines()
    assert len(err) == 1 and f"(PID {os.getpid()})" in err[0] and "--wait" in err[0], err
    assert not out.exists() and sorted(p.name for p in work.iterdir()) == before


def test_a_second_run_exits_4_naming_the_first_and_a_waiting_one_gets_its_turn(base: Path, tmp_path: Path):
    work = copy_of(base, tmp_path / "w")
    ids = write_ids(work / "ids.txt", train_ids(work)[:3])
    model = work / "model.safetensors"
    with hold_locks([work / "unlearn-ledger.jsonl.lock"]):
        first = subprocess.Popen(unlearn_cmd() + ["forget", str(model), str(ids), "--in-place", "--wait", "120",
                                                  *CHEAP], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        own_lock = work / "model.safetensors.lock"  # taken first (sorted order), then it waits for ours
        deadline = time.monotonic() + 120
        while not (own_lock.exists() and own_lock.read_text().strip() == str(first.pid)):
            assert first.poll() is None, first.stderr.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        before = model.read_bytes()
        second = run_cli("forget", model, ids, "--in-place", *CHEAP)
        assert second.returncode == 4
        err = second.stderr.decode().strip().splitlines()
        assert len(err) == 1 and f"(PID {first.pid})" in err[0], err
        assert model.read_bytes() == before
        assert first.poll() is None  # still waiting for the ledger lock we hold
    assert first.wait(timeout=120) == 0, first.stderr.read().decode()
    assert len(load_checkpoint(model).lineage) == 1
    assert [line["status"] for line in ledger_lines(work / "unlearn-ledger.jsonl")] == ["ok"]
    assert leftovers(work) == []


def test_two_runs_on_one_checkpoint_are_serialised(base: Path, tmp_path: Path):
    work = copy_of(base, tmp_path / "w")
    ids = train_ids(work)
    a = write_ids(work / "a.txt", ids[:3])
    b = write_ids(work / "b.txt", ids[2:6])
    procs = [subprocess.Popen(unlearn_cmd() + ["forget", str(work / "model.safetensors"), str(path), "--in-place",
                                               "--wait", "120", "--json", *CHEAP],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for path in (a, b)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e.decode() for _, e in outs]
    lines = ledger_lines(work / "unlearn-ledger.jsonl")
    assert [line["status"] for line in lines] == ["ok", "ok"]
    assert lines[1]["input"]["sha256"] == lines[0]["output"]["sha256"]  # the second saw the first's result
    assert lines[1]["output"]["sha256"] == file_sha256(work / "model.safetensors")
    assert sum(line["ids"]["removed"] for line in lines) == 6  # the shared ID was removed once
    assert sum(line["ids"]["already_removed"] for line in lines) == 1
    assert len(load_checkpoint(work / "model.safetensors").lineage) == 2
    assert leftovers(work) == []
