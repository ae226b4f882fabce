"""The README's walkthrough runs, in order, as written; every README example uses real options.

How the story is found: a fenced code block in README.md is part of the story
when the line just before its opening fence is the HTML comment
``<!-- story -->`` (invisible when rendered). Story blocks are run top to
bottom, as one sequence, in a fresh temporary folder into which the
``sample_models/<name>/`` folders the story names are copied, so paths read
exactly as they do from the repository root and nothing is written into the
checkout.

What a story line may be (anything else fails the test, so the story stays
something a newcomer can paste):

- ``mkdir DIR``;
- ``unlearn ARGS...``, optionally ending in ``> FILE`` (stdout saved there);
- a trailing ``# comment``: ``exits N`` / ``exit N`` in it is the exit code the
  README promises (default 0); ``-> PATH`` names a file the command creates.

Each ``unlearn`` line runs in-process (typer's runner on the real app, the
same code as the console script without a new interpreter per line) and must
exit with the promised code; after a line that exits 0, every file it names
with ``--out``/``-o``/``--report``/``--plot``, ``> FILE`` or ``-> PATH`` must
exist. The story must cover the main commands, so deleting the markers fails
too. A second test checks every README example outside the story: each
``--option`` it uses must be in that command's ``--help``.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
import torch

from conftest import REPO, run_here

README = REPO / "README.md"
MARKER = "<!-- story -->"
FENCE = re.compile(r"^```")
OUTPUT_FLAGS = {"--out", "-o", "--report", "--plot"}
MAIN_COMMANDS = {"train", "evaluate", "inspect", "mark", "forget", "attack", "debug-labels", "calibrate", "ledger"}


def code_blocks(text: str) -> list[tuple[bool, int, list[str]]]:
    """Every fenced block as (is_story, first line number, lines); backslash continuations joined."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        if FENCE.match(lines[i]):
            story = i > 0 and lines[i - 1].strip() == MARKER
            start, body = i + 2, []
            i += 1
            while i < len(lines) and not FENCE.match(lines[i]):
                body.append(lines[i])
                i += 1
            joined: list[str] = []
            for line in body:
                if joined and joined[-1].endswith("\\"):
                    joined[-1] = joined[-1][:-1] + " " + line.strip()
                else:
                    joined.append(line)
            blocks.append((story, start, joined))
        i += 1
    return blocks


def split_comment(line: str) -> tuple[str, str]:
    """'cmd args   # note' -> ('cmd args', 'note'); a '#' must follow whitespace to start a comment."""
    match = re.search(r"(^|\s)#", line)
    if not match:
        return line.strip(), ""
    return line[: match.start()].strip(), line[match.end():].strip()


def story_lines() -> list[tuple[int, str, str]]:
    out = []
    for story, start, lines in code_blocks(README.read_text(encoding="utf-8")):
        if story:
            for offset, line in enumerate(lines):
                command, comment = split_comment(line)
                if command:
                    out.append((start + offset, command, comment))
    return out


def promised_exit(comment: str) -> int:
    match = re.search(r"\bexits? (\d)\b", comment)
    return int(match.group(1)) if match else 0


def created_files(argv: list[str], comment: str, redirect: str | None) -> list[str]:
    files = [argv[k + 1] for k, arg in enumerate(argv[:-1]) if arg in OUTPUT_FLAGS]
    files += [arg.split("=", 1)[1] for arg in argv if arg.split("=", 1)[0] in OUTPUT_FLAGS and "=" in arg]
    files += re.findall(r"->\s*(\S+)", comment)
    return files + ([redirect] if redirect else [])


@pytest.fixture
def story_dir(tmp_path, monkeypatch):
    """A fresh folder holding copies of the sample data sets the story names."""
    monkeypatch.delenv("UNLEARN_LEDGER_KEY_FILE", raising=False)
    monkeypatch.delenv("UNLEARN_THREADS", raising=False)
    names = {m for _, command, _ in story_lines() for m in re.findall(r"sample_models/([\w.-]+)/", command)}
    for name in sorted(names):
        assert (REPO / "sample_models" / name).is_dir(), f"README story names missing sample_models/{name}"
        shutil.copytree(REPO / "sample_models" / name, tmp_path / "sample_models" / name)
    # In-process training changes torch's global thread count and RNG: give them back afterwards.
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    yield tmp_path
    torch.set_num_threads(threads)
    torch.set_rng_state(rng)


@pytest.mark.slow
def test_the_readme_story_runs_in_order_as_written(story_dir: Path) -> None:
    lines = story_lines()
    seen: set[str] = set()
    for lineno, command, comment in lines:
        where = f"README.md line {lineno}: {command}"
        argv = shlex.split(command)
        if argv[0] == "mkdir":
            assert len(argv) == 2, f"{where}: a story mkdir takes one folder"
            (story_dir / argv[1]).mkdir()
            continue
        assert argv[0] == "unlearn", f"{where}: a story line is 'mkdir DIR' or 'unlearn ...'"
        redirect = None
        if ">" in argv:
            k = argv.index(">")
            assert k == len(argv) - 2, f"{where}: only a final '> FILE' redirect is supported"
            redirect = argv[-1]
            argv = argv[:k]
        assert not {"|", "<", ">>", "&&", ";"} & set(argv), f"{where}: no pipes or chains in the story"
        seen.add(argv[1])
        proc = run_here(*argv[1:], cwd=story_dir, env={"COLUMNS": "80"})
        expected = promised_exit(comment)
        assert proc.returncode == expected, (
            f"{where}\nexited {proc.returncode}, the README promises {expected}\n"
            f"stderr: {proc.stderr.decode(errors='replace')[-2000:]}")
        if redirect:
            (story_dir / redirect).write_bytes(proc.stdout)
        if expected == 0:
            for name in created_files(argv, comment, redirect):
                path = story_dir / name
                assert path.is_file() and path.stat().st_size > 0, f"{where}: {name} was not created"
    missing = MAIN_COMMANDS - seen
    assert not missing, f"the README story no longer runs {sorted(missing)} (or lost its {MARKER} markers)"


def example_commands() -> list[tuple[int, list[str]]]:
    """Every 'unlearn ...' command in any README code block, as argv from 'unlearn' on."""
    out = []
    for _, start, lines in code_blocks(README.read_text(encoding="utf-8")):
        for offset, line in enumerate(lines):
            command, _ = split_comment(line)
            try:
                words = shlex.split(command)
            except ValueError:
                continue
            for k, word in enumerate(words):
                if word == "unlearn" or word.endswith("/bin/unlearn"):
                    out.append((start + offset, words[k:]))
                    break
    return out


def test_every_readme_example_uses_options_its_command_has() -> None:
    examples = example_commands()
    assert len(examples) > 20
    helps: dict[tuple[str, ...], str] = {}
    for lineno, argv in examples:
        command = tuple(argv[1:3]) if argv[1:2] == ["ledger"] else tuple(argv[1:2])
        if command not in helps:
            proc = run_here(*command, "--help")
            assert proc.returncode == 0, f"README.md line {lineno}: unlearn {' '.join(command)} has no --help"
            helps[command] = proc.stdout.decode()
        for word in argv[2:]:
            if re.fullmatch(r"--[a-z][a-z-]*", word.split("=", 1)[0]):
                flag = word.split("=", 1)[0]
                assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", helps[command]), (
                    f"README.md line {lineno}: unlearn {' '.join(command)} has no {flag}")
