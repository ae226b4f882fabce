"""Fixtures for the forget workflow tests: a trained blobs model copied per test, run in-process.

In-process runs (typer's CliRunner on the real app) exercise the exact command
code path without paying the torch import per run; tests/cli drives the
installed console script for what needs a real process (locks, SIGKILL).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

FILES = ("blobs.safetensors", "manifest.yaml", "model.safetensors")
#: A cheap method: retraining the tiny MLP takes a fraction of a second in-process.
METHOD = ("--method", "retrain")


def snapshot(directory: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``directory``: sha256 and mtime, to prove nothing changed."""
    found = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            found[str(path.relative_to(directory))] = (hashlib.sha256(path.read_bytes()).hexdigest(),
                                                       path.stat().st_mtime_ns)
    return found


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


@dataclass
class Work:
    """A folder holding the data set, its manifest and a trained checkpoint."""

    dir: Path
    train_ids: list[str]
    test_ids: list[str]

    @property
    def model(self) -> Path:
        return self.dir / "model.safetensors"

    @property
    def ledger(self) -> Path:
        return self.dir / "unlearn-ledger.jsonl"

    def ids_file(self, name: str, ids, directory: Path | None = None) -> Path:
        path = (directory or self.dir) / name
        path.write_text("".join(f"{i}\n" for i in ids))
        return path

    def ledger_lines(self, path: Path | None = None) -> list[dict]:
        path = path or self.ledger
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def invoke(self, *args, method: tuple = METHOD) -> Result:
        from typer.testing import CliRunner

        from unlearn_cli.cli.app import app

        result = CliRunner().invoke(app, ["forget", *map(str, args), *method], catch_exceptions=False)
        return Result(result.exit_code, result.stdout, result.stderr)


@pytest.fixture(scope="session")
def template(blobs_checkpoint: Path, tmp_path_factory) -> Work:
    from unlearn_cli.data.manifest import load_manifest

    directory = tmp_path_factory.mktemp("forget-template")
    for name in FILES:
        shutil.copy2(blobs_checkpoint.parent / name, directory / name)
    dataset = load_manifest(directory / "manifest.yaml")
    return Work(directory, dataset.train_ids, dataset.test_ids)


@pytest.fixture
def work(template: Work, tmp_path: Path) -> Work:
    directory = tmp_path / "w"
    directory.mkdir()
    for name in FILES:
        shutil.copy2(template.dir / name, directory / name)
    return Work(directory, template.train_ids, template.test_ids)
