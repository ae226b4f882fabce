"""Behaviour of the dataset manifest loader (DESIGN.md "Dataset manifest")."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import save_file

from unlearn_cli.data.dataset import Dataset
from unlearn_cli.data.manifest import load_manifest
from unlearn_cli.ops.digests import file_sha256
from unlearn_cli.errors import BadInput

N = 10


def base_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    train = np.arange(N) < 7
    return {
        "x": rng.normal(size=(N, 3)).astype(np.float32),
        "y": (np.arange(N) % 2).astype(np.int64),
        "id": (np.arange(N) * 10 + 100).astype(np.int64),
        "train_mask": train,
        "test_mask": ~train,
    }


def base_manifest(path: str = "d.safetensors") -> dict:
    return {
        "name": "toy",
        "num_classes": 2,
        "data": {"path": path, "features": "x", "labels": "y", "ids": "id"},
        "splits": {"train": "train_mask", "test": "test_mask"},
        "source": "made up in a test",
        "license": "CC0",
    }


def write_manifest(tmp_path: Path, manifest: dict, name: str = "m.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(manifest), encoding="utf-8")
    return p


def write_st(tmp_path: Path, arrays: dict[str, np.ndarray], name: str = "d.safetensors") -> Path:
    p = tmp_path / name
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(p))
    return p


def st_dataset(tmp_path: Path, manifest: dict | None = None,
               arrays: dict[str, np.ndarray] | None = None) -> Dataset:
    write_st(tmp_path, base_arrays() if arrays is None else arrays)
    return load_manifest(write_manifest(tmp_path, base_manifest() if manifest is None else manifest))


CSV_TEXT = (
    "uid,a,color,b,label,is_train\n"
    " r1 ,1.5,red,10,0,true\n"
    "r2,2.5, blue,20,1,1\n"
    "r3,3.5,green,30,2,FALSE\n"
    "r4,4.5,red,40,0,0\n"
)


def csv_manifest() -> dict:
    return {
        "name": "tab",
        "num_classes": 3,
        "data": {"path": "t.csv", "labels": "label", "ids": "uid", "categorical": ["color"]},
        "splits": {"train": "is_train"},
    }


# ------------------------------------------------------------------ formats


def test_safetensors_loads_arrays_ids_and_masks(tmp_path: Path) -> None:
    arrays = base_arrays()
    ds = st_dataset(tmp_path)
    assert ds.name == "toy" and ds.num_classes == 2 and ds.n == N
    assert ds.x.dtype == np.float32 and ds.x.shape == (N, 3)
    np.testing.assert_array_equal(ds.x, arrays["x"])  # normalize defaults to none
    assert ds.y.dtype == np.int64
    np.testing.assert_array_equal(ds.y, arrays["y"])
    assert ds.ids == [str(100 + 10 * i) for i in range(N)]
    np.testing.assert_array_equal(ds.train, arrays["train_mask"])
    np.testing.assert_array_equal(ds.test, arrays["test_mask"])
    assert ds.input_shape == (3,) and ds.normalize == "none"
    assert ds.feature_names == ["f0", "f1", "f2"]
    assert ds.manifest_path == (tmp_path / "m.yaml").resolve() and ds.manifest_path.is_absolute()
    assert ds.data_path == (tmp_path / "d.safetensors").resolve()
    assert ds.data_sha256 == hashlib.sha256((tmp_path / "d.safetensors").read_bytes()).hexdigest()
    assert ds.source == "made up in a test" and ds.license == "CC0"
    assert ds.raw["data"]["features"] == "x"
    assert ds.train_indices().dtype == np.int64
    assert ds.train_indices().tolist() == list(range(7))
    assert ds.test_indices().tolist() == [7, 8, 9]
    assert ds.train_ids == ds.ids[:7] and ds.test_ids == ds.ids[7:]


def test_npz_uint8_images_with_string_ids_reshape_and_scale255(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(6, 4, 4), dtype=np.uint8)
    np.savez(tmp_path / "img.npz", images=imgs, labels=np.array([0, 1, 2, 0, 1, 2]),
             names=np.array([" a", "b ", "c", "d", "e", "f"]))
    m = {"name": "img", "num_classes": 3, "input_shape": [1, 4, 4], "normalize": "scale255",
         "data": {"path": "img.npz", "features": "images", "labels": "labels", "ids": "names"}}
    ds = load_manifest(write_manifest(tmp_path, m))
    assert ds.x.shape == (6, 1, 4, 4) and ds.x.dtype == np.float32
    np.testing.assert_allclose(ds.x[:, 0], imgs / 255.0, rtol=1e-6)
    assert ds.ids == ["a", "b", "c", "d", "e", "f"]  # strings stripped
    assert ds.input_shape == (1, 4, 4) and len(ds.feature_names) == 16
    assert ds.train.all() and not ds.test.any()  # no splits: every row is train


def test_csv_one_hot_string_ids_and_default_feature_columns(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(CSV_TEXT, encoding="utf-8")
    ds = load_manifest(write_manifest(tmp_path, csv_manifest()))
    # Default features: every column but labels, ids and the mask column, in file
    # order; categorical values sorted as strings (stripped) and one-hot encoded.
    assert ds.feature_names == ["a", "color=blue", "color=green", "color=red", "b"]
    np.testing.assert_array_equal(ds.x, np.array([
        [1.5, 0, 0, 1, 10],
        [2.5, 1, 0, 0, 20],
        [3.5, 0, 1, 0, 30],
        [4.5, 0, 0, 1, 40],
    ], dtype=np.float32))
    assert ds.ids == ["r1", "r2", "r3", "r4"]
    assert ds.y.tolist() == [0, 1, 2, 0]
    assert ds.train.tolist() == [True, True, False, False]
    assert ds.test.tolist() == [False, False, True, True]


def test_csv_explicit_feature_list_and_integer_ids(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("id,a,b,y\n7,1,2,0\n8,3,4,1\n", encoding="utf-8")
    m = {"name": "t", "num_classes": 2,
         "data": {"path": "t.csv", "features": ["b"], "labels": "y", "ids": "id"}}
    ds = load_manifest(write_manifest(tmp_path, m))
    assert ds.feature_names == ["b"]
    assert ds.x.tolist() == [[2.0], [4.0]]
    assert ds.ids == ["7", "8"]


def test_default_ids_are_row_indices(tmp_path: Path) -> None:
    m = base_manifest()
    del m["data"]["ids"]
    ds = st_dataset(tmp_path, m)
    assert ds.ids == [str(i) for i in range(N)]


# ------------------------------------------------------------------ splits


def test_only_train_mask_makes_test_the_rest(tmp_path: Path) -> None:
    m = base_manifest()
    del m["splits"]["test"]
    ds = st_dataset(tmp_path, m)
    np.testing.assert_array_equal(ds.test, ~base_arrays()["train_mask"])


def test_only_test_mask_makes_train_the_rest(tmp_path: Path) -> None:
    m = base_manifest()
    del m["splits"]["train"]
    ds = st_dataset(tmp_path, m)
    np.testing.assert_array_equal(ds.train, base_arrays()["train_mask"])


def test_both_masks_leave_rows_in_neither_unused(tmp_path: Path) -> None:
    arrays = base_arrays()
    arrays["test_mask"] = np.arange(N) >= 8  # row 7 is in neither split
    ds = st_dataset(tmp_path, arrays=arrays)
    assert ds.train_indices().tolist() == list(range(7))
    assert ds.test_indices().tolist() == [8, 9]


def test_no_splits_means_everything_is_train(tmp_path: Path) -> None:
    m = base_manifest()
    del m["splits"]
    ds = st_dataset(tmp_path, m)
    assert ds.train.all() and not ds.test.any()


def test_test_fraction_is_deterministic_and_sized(tmp_path: Path) -> None:
    m = base_manifest()
    m["splits"] = {"test": {"fraction": 0.3, "seed": 5}}
    a = st_dataset(tmp_path, m)
    b = load_manifest(tmp_path / "m.yaml")
    expected = np.sort(np.random.default_rng(5).permutation(N)[:3])
    assert a.test_indices().tolist() == expected.tolist()
    np.testing.assert_array_equal(a.test, b.test)
    np.testing.assert_array_equal(a.train, ~a.test)


def test_train_fraction_alone_leaves_rest_as_test(tmp_path: Path) -> None:
    m = base_manifest()
    m["splits"] = {"train": {"fraction": 0.8, "seed": 0}}
    ds = st_dataset(tmp_path, m)
    assert ds.train.sum() == 8 and ds.test.sum() == 2
    np.testing.assert_array_equal(ds.test, ~ds.train)


def test_two_fractions_are_disjoint_blocks_of_one_permutation(tmp_path: Path) -> None:
    m = base_manifest()
    m["splits"] = {"train": {"fraction": 0.5}, "test": {"fraction": 0.2, "seed": 3}}
    ds = st_dataset(tmp_path, m)
    perm = np.random.default_rng(3).permutation(N)
    assert ds.test_indices().tolist() == sorted(perm[:2].tolist())
    assert ds.train_indices().tolist() == sorted(perm[2:7].tolist())


# ------------------------------------------------------------------ normalisation


@pytest.mark.parametrize("mode", ["standard", "minmax"])
def test_normalize_uses_train_rows_only(tmp_path: Path, mode: str) -> None:
    arrays = base_arrays()
    arrays["x"][9] = 1e6  # outlier in a test row: must not move the statistics
    m = base_manifest()
    m["normalize"] = mode
    ds = st_dataset(tmp_path, m, arrays)
    tr = arrays["x"][:7].astype(np.float64)
    if mode == "standard":
        expected = (arrays["x"] - tr.mean(0)) / tr.std(0)
        np.testing.assert_allclose(ds.x[:7].mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(ds.x[:7].std(0), 1, atol=1e-5)
    else:
        expected = (arrays["x"] - tr.min(0)) / (tr.max(0) - tr.min(0))
        np.testing.assert_allclose(ds.x[:7].min(0), 0, atol=1e-6)
        np.testing.assert_allclose(ds.x[:7].max(0), 1, atol=1e-6)
    np.testing.assert_allclose(ds.x, expected, rtol=1e-5, atol=1e-5)
    assert ds.x.dtype == np.float32


@pytest.mark.parametrize("mode", ["standard", "minmax"])
def test_constant_feature_is_not_divided_by_zero(tmp_path: Path, mode: str) -> None:
    arrays = base_arrays()
    arrays["x"][:, 1] = 4.0
    m = base_manifest()
    m["normalize"] = mode
    ds = st_dataset(tmp_path, m, arrays)
    assert np.isfinite(ds.x).all()
    np.testing.assert_array_equal(ds.x[:, 1], 0.0)


def test_input_shape_reshapes_rows(tmp_path: Path) -> None:
    arrays = base_arrays()
    arrays["x"] = np.arange(N * 6, dtype=np.float32).reshape(N, 6)
    m = base_manifest()
    m["input_shape"] = [2, 3]
    ds = st_dataset(tmp_path, m, arrays)
    assert ds.x.shape == (N, 2, 3) and ds.input_shape == (2, 3)
    np.testing.assert_array_equal(ds.x[1], [[6, 7, 8], [9, 10, 11]])


# ------------------------------------------------------------------ sha256


def test_sha256_match_loads_and_mismatch_can_be_skipped(tmp_path: Path) -> None:
    data = write_st(tmp_path, base_arrays())
    m = base_manifest()
    m["sha256"] = file_sha256(data).upper()  # hex case does not matter
    assert load_manifest(write_manifest(tmp_path, m)).data_sha256 == file_sha256(data)
    m["sha256"] = "0" * 64
    p = write_manifest(tmp_path, m)
    with pytest.raises(BadInput, match="sha256"):
        load_manifest(p)
    ds = load_manifest(p, verify_sha256=False)
    assert ds.data_sha256 == file_sha256(data)


def test_file_sha256_streams_whole_file(tmp_path: Path) -> None:
    p = tmp_path / "blob"
    payload = bytes(range(256)) * 9000  # > 1 MiB chunk
    p.write_bytes(payload)
    assert file_sha256(p) == hashlib.sha256(payload).hexdigest()


# ------------------------------------------------------------------ Dataset methods


def test_index_of_returns_rows_in_order_and_names_unknown(tmp_path: Path) -> None:
    ds = st_dataset(tmp_path)
    assert ds.index_of(["150", "100"]).tolist() == [5, 0]
    assert ds.index_of([]).dtype == np.int64
    unknown = [f"zz{i}" for i in range(12)]
    with pytest.raises(BadInput) as err:
        ds.index_of(["100", *unknown])
    msg = str(err.value)
    assert "\n" not in msg and "12" in msg and "m.yaml" in msg
    assert "'zz9'" in msg and "'zz10'" not in msg  # at most ten are named


def test_train_id_digest_is_sha_of_sorted_train_ids(tmp_path: Path) -> None:
    ds = st_dataset(tmp_path)
    expected = hashlib.sha256("\n".join(sorted(ds.train_ids)).encode()).hexdigest()
    assert ds.train_id_digest() == expected


@pytest.mark.parametrize("as_mask", [False, True])
def test_subset_train_restricts_train_only(tmp_path: Path, as_mask: bool) -> None:
    ds = st_dataset(tmp_path)
    keep_idx = np.array([0, 2, 4, 8])  # 8 is a test row: ignored
    keep = np.isin(np.arange(N), keep_idx) if as_mask else keep_idx
    sub = ds.subset_train(keep)
    assert sub.train_indices().tolist() == [0, 2, 4]
    np.testing.assert_array_equal(sub.test, ds.test)
    assert sub.x is ds.x and sub.ids == ds.ids  # features untouched
    assert ds.train.sum() == 7  # original unchanged
    assert sub.train_id_digest() != ds.train_id_digest()
    assert sub.index_of(["140"]).tolist() == [4]


# ------------------------------------------------------------------ errors

Mutation = Callable[[Path, dict, dict], None]


def _set(path: str, value: object) -> Mutation:
    """Mutation that sets a (dotted) manifest key; value None deletes it."""
    def mutate(tmp: Path, m: dict, arrays: dict) -> None:
        *parents, leaf = path.split(".")
        node = m
        for p in parents:
            node = node[p]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    return mutate


def _arr(name: str, fn: Callable[[dict], np.ndarray]) -> Mutation:
    def mutate(tmp: Path, m: dict, arrays: dict) -> None:
        arrays[name] = fn(arrays)
    return mutate


def _csv(text: str, **data: object) -> Mutation:
    """Switch the case to a csv data file with the given text and extra data keys."""
    def mutate(tmp: Path, m: dict, arrays: dict) -> None:
        (tmp / "t.csv").write_text(text, encoding="utf-8")
        m.clear()
        m.update({"name": "tab", "num_classes": 3,
                  "data": {"path": "t.csv", "labels": "label", "ids": "uid", **data}})
        if "is_train" in text.partition("\n")[0]:
            m["splits"] = {"train": "is_train"}
    return mutate


def _dup_label_y(a: dict) -> np.ndarray:
    y = a["y"].copy()
    y[3] = 2
    return y


def _nan_x(a: dict) -> np.ndarray:
    x = a["x"].copy()
    x[2, 1] = np.nan
    return x


def _dup_ids(a: dict) -> np.ndarray:
    ids = a["id"].copy()
    ids[6] = ids[4]
    return ids


def _garbage(tmp: Path, m: dict, arrays: dict) -> None:
    m["data"]["path"] = "junk.safetensors"
    (tmp / "junk.safetensors").write_bytes(b"\xff" * 40)


ERROR_CASES: list[tuple[str, Mutation, str, str]] = [
    # (case, mutation, key the message must name, another fragment it must contain)
    ("name-missing", _set("name", None), "name", "string"),
    ("num-classes-word", _set("num_classes", "two"), "num_classes", "'two'"),
    ("num-classes-zero", _set("num_classes", 0), "num_classes", "positive"),
    ("unknown-top-key", _set("nmae", "x"), "nmae", "num_classes"),
    ("unknown-data-key", _set("data.feature", "x"), "data.feature", "features"),
    ("data-missing", _set("data", None), "data", "path"),
    ("path-missing", _set("data.path", None), "data.path", "required"),
    ("path-not-found", _set("data.path", "nope.safetensors"), "data.path", "nope.safetensors"),
    ("path-bad-suffix", _set("data.path", "d.txt"), "data.path", ".npz"),
    ("unreadable-file", _garbage, "data.path", "junk.safetensors"),
    ("features-missing", _set("data.features", None), "data.features", "required"),
    ("features-not-in-file", _set("data.features", "xx"), "data.features", "'train_mask'"),
    ("labels-missing", _set("data.labels", None), "data.labels", "required"),
    ("labels-out-of-range", _arr("y", _dup_label_y), "data.labels", "row 3"),
    ("labels-wrong-shape", _arr("y", lambda a: a["y"][:5]), "data.labels", "(10,)"),
    ("labels-float", _arr("y", lambda a: a["y"] + 0.5), "data.labels", "integer"),
    ("features-nan", _arr("x", _nan_x), "data.features", "NaN"),
    ("features-inf", _arr("x", lambda a: np.where(a["x"] > 1, np.inf, a["x"])),
     "data.features", "Inf"),
    ("ids-duplicate", _arr("id", _dup_ids), "data.ids", "'140'"),
    ("ids-float", _arr("id", lambda a: a["id"].astype(np.float32)), "data.ids", "float32"),
    ("mask-not-bool", _arr("train_mask", lambda a: a["train_mask"] * 0.5), "splits.train", "bool"),
    ("mask-wrong-length", _arr("test_mask", lambda a: a["test_mask"][:4]), "splits.test", "(10,)"),
    ("splits-overlap", _arr("test_mask", lambda a: np.arange(N) >= 5), "splits.test", "splits.train"),
    ("splits-unknown-key", _set("splits.valid", "x"), "splits.valid", "train, test"),
    ("splits-not-mapping", _set("splits", ["train"]), "splits", "mapping"),
    ("fraction-too-big", _set("splits.test", {"fraction": 1.5}), "splits.test.fraction", "1.5"),
    ("fraction-unknown-key", _set("splits.test", {"fraction": 0.2, "sed": 1}),
     "splits.test.sed", "seed"),
    ("fraction-bad-seed", _set("splits.test", {"fraction": 0.2, "seed": -1}),
     "splits.test.seed", "-1"),
    ("fractions-seeds-differ", _set("splits", {"train": {"fraction": 0.5, "seed": 1},
                                               "test": {"fraction": 0.2, "seed": 2}}),
     "splits.train.seed", "splits.test.seed"),
    ("train-empty", _arr("train_mask", lambda a: np.zeros(N, bool)), "splits.train", "empty"),
    ("input-shape-mismatch", _set("input_shape", [2, 2]), "input_shape", "3 features"),
    ("input-shape-not-list", _set("input_shape", "3"), "input_shape", "list"),
    ("normalize-unknown", _set("normalize", "zscore"), "normalize", "minmax"),
    ("sha256-mismatch", _set("sha256", "ab" * 32), "sha256", "d.safetensors"),
    ("sha256-malformed", _set("sha256", "xyz"), "sha256", "hex"),
    ("source-not-string", _set("source", {"url": "x"}), "source", "string"),
    ("categorical-not-csv", _set("data.categorical", ["x"]), "data.categorical", ".csv"),
    ("csv-bad-number", _csv("uid,a,label\nr1,1,0\nr2,oops,1\n"), "data.features", "row 1"),
    ("csv-missing-column", _csv("uid,a,label\nr1,1,0\n", features=["a", "q"]),
     "data.features", "'q'"),
    ("csv-bad-mask-value", _csv("uid,a,label,is_train\nr1,1,0,maybe\n"), "splits.train", "'maybe'"),
    ("csv-bad-label", _csv("uid,a,label\nr1,1,cat\n"), "data.labels", "'cat'"),
    ("csv-ragged-row", _csv("uid,a,label\nr1,1\n"), "data.path", "line 2"),
    ("csv-duplicate-string-id", _csv("uid,a,label\nx1,1,0\n x1 ,2,1\n"), "data.ids", "'x1'"),
    ("csv-categorical-unknown", _csv("uid,a,label\nr1,1,0\n", categorical=["color"]),
     "data.categorical", "'color'"),
    ("csv-empty", _csv(""), "data.path", "header"),
]


@pytest.mark.parametrize("mutate,key,fragment", [c[1:] for c in ERROR_CASES],
                         ids=[c[0] for c in ERROR_CASES])
def test_schema_errors_are_one_line_and_name_file_and_key(
        tmp_path: Path, mutate: Mutation, key: str, fragment: str) -> None:
    m, arrays = base_manifest(), base_arrays()
    mutate(tmp_path, m, arrays)
    write_st(tmp_path, arrays)
    p = write_manifest(tmp_path, m, name="broken.yaml")
    with pytest.raises(BadInput) as err:
        load_manifest(p)
    msg = str(err.value)
    assert "\n" not in msg
    assert "broken.yaml" in msg
    assert f"'{key}'" in msg
    assert fragment in msg
    assert err.value.exit_code == 2


@pytest.mark.parametrize("text,fragment", [
    ("name: [unclosed", "YAML"),
    ("- just\n- a list\n", "mapping"),
])
def test_malformed_manifest_names_the_file(tmp_path: Path, text: str, fragment: str) -> None:
    p = tmp_path / "broken.yaml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(BadInput) as err:
        load_manifest(p)
    msg = str(err.value)
    assert "\n" not in msg and "broken.yaml" in msg and fragment in msg


def test_missing_manifest_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="absent.yaml"):
        load_manifest(tmp_path / "absent.yaml")


def test_manifest_module_does_not_import_torch() -> None:
    import subprocess
    import sys
    code = ("import sys, unlearn_cli.data.manifest; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
