"""Bring your own model: examples/own_model/ trained by its own script, imported, forgotten, attacked.

The README's "Bring your own model" block (the fenced block after the HTML
comment ``<!-- own-model -->``) runs as one ``bash -e`` script, as written, in
a fresh folder holding copies of ``examples/own_model/`` and
``sample_models/breast-cancer/``, with the virtual environment first on
``PATH`` (so ``python`` and ``unlearn`` are this checkout's). A README edit
that breaks a command fails here. The "Python API" block after
``<!-- own-model-api -->`` then runs in the same folder. The other tests use
what the block left: the imported checkpoint's accuracies against the
script's own ``metrics.json``, both forgotten models attacked, and the Python
API's reports against the commands' ``--json`` ones.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, SAMPLES

pytestmark = pytest.mark.slow

README = REPO / "README.md"
FENCE = re.compile(r"^```")


def readme_block(marker: str) -> str:
    """The fenced block right after the line ``marker`` in README.md (fails if there is none)."""
    lines = README.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.strip() == marker and FENCE.match(lines[i + 1]):
            body = []
            for inner in lines[i + 2:]:
                if FENCE.match(inner):
                    return "\n".join(body) + "\n"
                body.append(inner)
    pytest.fail(f"README.md has no fenced block after {marker}")


def env_for(folder: Path) -> dict[str, str]:
    """The venv first on PATH, the example's module importable (as the README's export does)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return dict(os.environ, PATH=path, PYTHONPATH=str(folder / "examples" / "own_model"), COLUMNS="200")


def run(args: list[str], folder: Path, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=folder, env=env_for(folder), capture_output=True, text=True, timeout=600, **kw)
    assert proc.returncode == 0, f"{args[:3]} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


def unlearn_json(folder: Path, *args: str) -> dict:
    exe = shutil.which("unlearn", path=str(Path(sys.executable).parent)) or "unlearn"
    return json.loads(run([exe, *args, "--json"], folder).stdout)


@pytest.fixture(scope="module")
def story(tmp_path_factory) -> Path:
    """A folder in which the README's "Bring your own model" block ran, as written."""
    folder = tmp_path_factory.mktemp("own-model")
    shutil.copytree(REPO / "examples" / "own_model", folder / "examples" / "own_model",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(SAMPLES / "breast-cancer", folder / "sample_models" / "breast-cancer",
                    ignore=shutil.ignore_patterns(".unlearn-cache"))
    script = readme_block("<!-- own-model -->")
    assert "unlearn import" in script and "--method retrain" in script and "unlearn attack" in script
    env = env_for(folder)
    env.pop("PYTHONPATH")  # the block's own export must be enough
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"README block failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return folder


def test_the_readme_block_writes_what_it_says(story: Path) -> None:
    own = story / "own"
    for name in ("model.safetensors", "recipe.yaml", "metrics.json", "imported.safetensors", "ids.txt",
                 "puma.safetensors", "retrained.safetensors"):
        assert (own / name).is_file(), name
    assert len([line for line in (own / "ids.txt").read_text().splitlines() if not line.startswith("#")]) == 20
    ledger = [json.loads(line) for line in (own / "unlearn-ledger.jsonl").read_text().splitlines()]
    assert [e.get("method") for e in ledger] == ["puma", "retrain"]


def test_the_imported_accuracies_are_the_scripts_own(story: Path) -> None:
    own_metrics = json.loads((story / "own" / "metrics.json").read_text())
    report = unlearn_json(story, "evaluate", "own/imported.safetensors")
    for split in ("train", "test"):
        assert report["metrics"][split]["n"] == own_metrics[split]["n"]
        assert report["metrics"][split]["accuracy"] == pytest.approx(own_metrics[split]["accuracy"], abs=1e-9)
    imported = unlearn_json(story, "import", "own/model.safetensors", "--arch", "model:build", "--arch-opt",
                            "width=32", "--data", "sample_models/breast-cancer/manifest.yaml", "--recipe",
                            "own/recipe.yaml", "--out", "own/again.safetensors")
    assert json.dumps(imported["metrics"]).count("accuracy") >= 2
    for split in ("train", "test"):
        found = imported["metrics"].get(split) or imported["metrics"]["splits"][split]
        assert found["accuracy"] == pytest.approx(own_metrics[split]["accuracy"], abs=1e-9)


def test_both_forgotten_models_are_attacked(story: Path) -> None:
    report = unlearn_json(story, "attack", "own/puma.safetensors", "--ids", "own/ids.txt", "--attack", "loss",
                          "--reference", "own/retrained.safetensors")
    target, reference = report["metrics"]["loss"], report["metrics"]["reference"]["loss"]
    assert target["forget"]["n"] == reference["forget"]["n"] == 20
    for result in (target, reference):
        assert 0.0 <= result["forget"]["member_rate"] <= 1.0
    retrained = unlearn_json(story, "inspect", "own/retrained.safetensors")
    assert "model:build" in json.dumps(retrained)  # the import path travels with the lineage


API_KEYS = """
import json, sys, unlearn_cli
model = unlearn_cli.load("own/imported.safetensors")
ids = [str(i) for i in model.dataset.train_ids[20:25]]
open("own/api-ids.txt", "w").write("".join(i + "\\n" for i in ids))
forget = unlearn_cli.unlearn("own/imported.safetensors", ids, method="puma", out="own/api-puma.safetensors")
attack = unlearn_cli.attack("own/api-puma.safetensors", "own/api-ids.txt", attack="loss")
json.dump({"module": type(model.module).__name__, "test": model.evaluate()["test"], "meta": sorted(model.meta),
           "forget": forget, "attack": attack}, sys.stdout)
"""


def test_the_python_api_gives_the_commands_reports(story: Path) -> None:
    run([sys.executable, "-"], story, input=readme_block("<!-- own-model-api -->"))
    api = json.loads(run([sys.executable, "-c", API_KEYS], story).stdout)
    assert api["module"] == "Sequential" and "arch" in api["meta"]
    assert api["forget"]["status"] == "ok" and api["forget"]["metrics"]["forgotten"] == 5
    cli_forget = unlearn_json(story, "forget", "own/imported.safetensors", "own/api-ids.txt", "--method", "puma",
                              "--out", "own/cli-puma.safetensors")
    cli_attack = unlearn_json(story, "attack", "own/api-puma.safetensors", "--ids", "own/api-ids.txt",
                              "--attack", "loss")
    ignore = {"warnings"}
    assert set(api["forget"]) - ignore == set(cli_forget) - ignore
    assert set(api["forget"]["metrics"]) == set(cli_forget["metrics"])
    assert set(api["attack"]) - ignore == set(cli_attack) - ignore
    assert set(api["attack"]["metrics"]["loss"]) == set(cli_attack["metrics"]["loss"])
    # the same numbers, up to float rounding: the thread count follows the machine's load (ops/threads.py)
    # and a parallel reduction may add in another order
    api_forget, cli_forget_rates = api["attack"]["metrics"]["loss"]["forget"], cli_attack["metrics"]["loss"]["forget"]
    assert set(api_forget) == set(cli_forget_rates)
    for key, value in api_forget.items():
        other = cli_forget_rates[key]
        if isinstance(value, (float, list)):
            assert value == pytest.approx(other, rel=1e-4, abs=1e-12), key
        else:
            assert value == other, key


def test_importing_the_package_leaves_torch_unimported() -> None:
    code = ("import sys, unlearn_cli; assert 'torch' not in sys.modules, 'torch imported'; "
            "assert {'load', 'unlearn', 'attack'} <= set(unlearn_cli.__all__); "
            "assert callable(unlearn_cli.unlearn) and 'torch' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_unlearn_stays_callable_after_the_forget_package_is_imported() -> None:
    import unlearn_cli
    import unlearn_cli.forget.run  # noqa: F401 - binds unlearn_cli.forget to the package

    assert callable(unlearn_cli.unlearn) and callable(unlearn_cli.load) and callable(unlearn_cli.attack)
