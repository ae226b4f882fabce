"""--help that reads well, a readable ``inspect``, ``mark --count`` and shell completion (issue 14).

Every command's --help starts (after the usage line) with examples of that
command, and no help shows typer's placeholders (``{manifest}``,
``<list[str]>``, ``<path>``): ``cli/options.py`` renders them once for all
commands. Help and ``inspect`` are checked at 80 columns, as a terminal shows
them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import REPO, SAMPLES, run_cli, unlearn_cmd

MOONS = SAMPLES / "moons" / "manifest.yaml"
MOONS_MODEL = SAMPLES / "moons" / "model.safetensors"

#: (command words, what each example line starts with)
COMMANDS = [
    ([], "unlearn "),
    (["train"], "unlearn train"),
    (["forget"], "unlearn forget"),
    (["evaluate"], "unlearn evaluate"),
    (["inspect"], "unlearn inspect"),
    (["methods"], "unlearn methods"),
    (["mark"], "unlearn mark"),
    (["attack"], "unlearn attack"),
    (["debug-labels"], "unlearn debug-labels"),
    (["calibrate"], "unlearn calibrate"),
    (["ledger"], "unlearn ledger"),
    (["ledger", "check"], "unlearn ledger check"),
]
#: what typer shows without a readable metavar
PLACEHOLDER = re.compile(r"[{}]|<list\[|<(?:path|str|int|float|bool|file|directory)>")


def run_at(width: int, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    """The installed command with a terminal of ``width`` columns (stdout is a pipe, as in CI)."""
    full = dict(os.environ, COLUMNS=str(width), **(env or {}))
    return subprocess.run(unlearn_cmd() + [str(a) for a in args], capture_output=True, env=full, timeout=120)


def text(proc) -> str:
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout.decode()


@pytest.fixture(scope="module")
def helps() -> dict[str, str]:
    with ThreadPoolExecutor(max_workers=6) as pool:
        procs = {" ".join(words): pool.submit(run_at, 80, *words, "--help") for words, _ in COMMANDS}
        return {name: text(f.result()) for name, f in procs.items()}


# -- help -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("words, prefix", COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_help_starts_with_examples_of_the_command(helps, words, prefix) -> None:
    lines = helps[" ".join(words)].splitlines()
    assert lines[0].startswith("Usage: unlearn"), lines[0]
    body = [line.strip() for line in lines[1:]]
    first = next(i for i, line in enumerate(body) if line)
    assert body[first] == "Examples:", helps[" ".join(words)]
    examples = []
    for line in body[first + 1:]:
        if not line:
            break
        examples.append(line)
    starting = [line for line in examples if line.startswith(prefix)]
    assert len(starting) >= 2, examples


@pytest.mark.parametrize("words, prefix", COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_help_names_parameters_readably(helps, words, prefix) -> None:
    out = helps[" ".join(words)]
    assert not PLACEHOLDER.search(out), PLACEHOLDER.search(out).group(0) + "\n" + out


def test_sample_paths_in_examples_exist(helps) -> None:
    """Examples name shipped files: each sample_models/ path in any help is in the repository."""
    named = {m.group(0).rstrip(".,;)") for out in helps.values() for m in re.finditer(r"sample_models/\S+", out)}
    assert named
    missing = sorted(p for p in named if not (REPO / p).exists())
    assert missing == []


def test_command_list_shows_summaries_not_examples(helps) -> None:
    commands = helps[""].split("Commands:")[1]
    assert "Examples" not in commands
    assert re.search(r"^\s+train\s+Train a classifier", commands, re.M), commands
    assert re.search(r"^\s+check\s+Which runs removed", helps["ledger"].split("Commands:")[1], re.M)


def test_options_that_do_nothing_are_not_offered(helps) -> None:
    for command in ("inspect", "methods", "ledger check", "mark"):
        assert "--device" not in helps[command], command
    for command in ("inspect", "methods", "ledger check"):
        assert "--seed" not in helps[command], command
    assert "--seed" in helps["mark"]           # random and cluster draw with it
    assert "--device" in helps["train"] and "--seed" in helps["train"]
    assert "--count N" in helps["mark"] and "--fraction F" in helps["mark"]


def test_methods_shows_what_each_method_needs() -> None:
    out = text(run_at(200, "methods"))
    methods_table = out.split("└")[0]  # the first table lists the methods; the plugin kinds follow
    rows = {line.split()[1]: line for line in methods_table.splitlines() if line.startswith("│")}
    assert "needs" in out
    assert "train --sisa-shards" in rows["sisa"]
    assert "train --track-updates" in rows["amnesiac"]
    assert "any checkpoint" in rows["puma"]
    assert "needs: train --sisa-shards" in text(run_at(200, "methods", "sisa"))


# -- inspect ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lineage_ckpt(tmp_path_factory) -> tuple[Path, dict]:
    """The moons sample model with a two-step lineage written into its header (no training)."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    if not MOONS_MODEL.exists():
        pytest.skip("sample_models/moons/model.safetensors is missing")
    with safe_open(str(MOONS_MODEL), framework="numpy") as fh:
        header = dict(fh.metadata())
        state = {k: fh.get_tensor(k) for k in fh.keys()}
    meta = json.loads(header["unlearn"])
    meta["lineage"] = [
        {"method": "puma", "config": {"damping": 0.01, "solver": "exact"}, "count": 1234,
         "parent_sha256": "ab" * 32, "time": "2026-01-02T03:04:05Z", "removed_ids_digest": "cd" * 32},
        {"method": "calibrate", "config": {"baseline": "temperature"}, "count": 28,
         "parent_sha256": "ef" * 32, "time": "2026-01-03T03:04:05Z", "removed_ids_digest": None},
    ]
    header["unlearn"] = json.dumps(meta)
    out = tmp_path_factory.mktemp("inspect") / "with-lineage.safetensors"
    save_file(state, str(out), metadata=header)
    return out, meta


def test_inspect_is_a_readable_summary_at_80_columns(lineage_ckpt) -> None:
    path, meta = lineage_ckpt
    out = text(run_at(80, "inspect", path))
    assert "{'" not in out and '{"' not in out and "…" not in out, out
    assert max(len(line) for line in out.splitlines()) <= 80, out
    rows = [line for line in out.splitlines() if line.startswith("│")]
    for fact in ("architecture", "options", "parameters", "training", "data set", "lineage"):
        assert any(line.split("│")[1].strip() == fact for line in rows), fact
    assert "hidden 64,32" in out and "2,338 in 6 tensors" in out
    assert "adam, lr 0.01" in out
    assert "2 steps, 1,234 records removed" in out
    # the lineage table: one row per step, numbers and digests whole
    steps = [[cell.strip() for cell in line.split("│")[1:-1]] for line in rows if re.match(r"│ [12] │", line)]
    assert steps == [["1", "puma", "1,234", "2026-01-02T03:04:05Z", "ab" * 6],
                     ["2", "calibrate", "28 patched", "2026-01-03T03:04:05Z", "ef" * 6]], out


def test_inspect_quiet_prints_the_key_facts_on_one_line(lineage_ckpt) -> None:
    path, _ = lineage_ckpt
    lines = text(run_at(80, "inspect", path, "--quiet")).splitlines()
    assert len(lines) == 1, lines
    for fact in (str(path), "mlp (hidden 64,32", "2,338 parameters", "trained on moons (400 records, 100 epochs)",
                 "lineage: 2 steps, 1,234 records removed"):
        assert fact in lines[0], (fact, lines[0])


def test_inspect_json_is_the_raw_object(lineage_ckpt) -> None:
    path, meta = lineage_ckpt
    for extra in ([], ["--quiet"]):
        report = json.loads(text(run_at(80, "inspect", path, "--json", *extra)))
        assert report["command"] == "inspect" and report["status"] == "ok"
        assert report["metrics"]["lineage"] == meta["lineage"]
        assert report["metrics"]["arch"] == meta["arch"]
        assert report["metrics"]["parameters"] == 2338


# -- mark --count -------------------------------------------------------------------------------------


def test_mark_count_marks_that_many(tmp_path) -> None:
    if not MOONS.exists():
        pytest.skip("sample_models/moons/manifest.yaml is missing")
    by_count = run_cli("mark", MOONS, "--strategy", "random", "--count", "20", "--seed", "3",
                       "--out", tmp_path / "count.txt", "--json")
    report = json.loads(text(by_count))
    assert report["metrics"]["marked"] == 20
    assert report["config"] == {"strategy": "random", "count": 20, "label": None, "seed": 3}
    lines = (tmp_path / "count.txt").read_text().splitlines()
    assert lines[0] == "# unlearn mark --strategy random count=20 seed=3"
    # --count 20 of moons' 400 train records marks what --fraction 0.05 marks
    run_cli("mark", MOONS, "--strategy", "random", "--fraction", "0.05", "--seed", "3",
            "--out", tmp_path / "fraction.txt", "--quiet", check=True)
    ids = [line for line in lines if not line.startswith("#")]
    assert ids == [line for line in (tmp_path / "fraction.txt").read_text().splitlines() if not line.startswith("#")]


@pytest.mark.parametrize("args, fragment", [
    (["--count", "20", "--fraction", "0.1"], "give --fraction F or --count N, not both"),
    (["--count", "401"], "--count 401 is more than the 400 train records"),
    (["--count", "0"], "--count must be >= 1"),
])
def test_mark_count_bad_input_is_exit_2(tmp_path, args, fragment) -> None:
    if not MOONS.exists():
        pytest.skip("sample_models/moons/manifest.yaml is missing")
    proc = run_cli("mark", MOONS, "--strategy", "random", *args, "--out", tmp_path / "x.txt")
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.strip().splitlines() == [f"unlearn mark: error: {err.split('error: ', 1)[1].strip()}"]
    assert fragment in err
    assert not (tmp_path / "x.txt").exists()


# -- shell completion -----------------------------------------------------------------------------------


def test_completion_is_on_and_prints_a_bash_script() -> None:
    # --show-completion detects the shell from the process tree (sh under make, which Typer
    # does not support), so ask for the bash script the way the installed hook does.
    assert "--install-completion" in text(run_at(80, "--help"))
    out = text(run_at(80, env={"_UNLEARN_COMPLETE": "source_bash"}))
    assert "_UNLEARN_COMPLETE=complete_bash" in out
    assert "complete -o default -F _unlearn_completion unlearn" in out


def test_completion_completes_commands_and_options() -> None:
    def complete(words: str, cword: int) -> list[str]:
        env = {"_UNLEARN_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
        return text(run_at(80, env=env)).split()

    assert complete("unlearn tr", 1) == ["train"]
    assert complete("unlearn mark x --cou", 3) == ["--count"]
    assert complete("unlearn ledger ch", 2) == ["check"]
