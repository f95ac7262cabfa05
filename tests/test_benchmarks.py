import gzip
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from modnas_ops.benchmarks import (
    ENV_VAR,
    BenchmarkTable,
    TableError,
    evaluate_front,
    load_table,
    resolve_table_path,
    true_front,
)
from modnas_ops.devices import anchor_embedding
from modnas_ops.spaces import NB201_ANCHOR_INDICES, get_search_space

# ---- a tiny fake table with a known answer -------------------------------------------------------
# error (%) and latency on dev_a; rows 6 and 7 have error >= 90 and are dropped by the MODNAS evaluation.
FAKE_ERROR = [10.0, 20.0, 30.0, 40.0, 15.0, 50.0, 95.0, 90.0, 35.0, 60.0, 25.0, 45.0]
FAKE_LAT_A = [5.0, 3.0, 2.0, 1.0, 5.0, 4.0, 0.5, 0.8, 2.5, 6.0, 4.0, 3.5]
FAKE_FRONT_A = [3, 2, 1, 0]  # by latency
# Normalised over the kept rows (error 10..60, latency 1..6) the front is (0.6, 0), (0.4, 0.2), (0.2, 0.4),
# (0, 0.8): slabs 0.2 * 1 + 0.4 * 0.8 + 0.2 * 0.6 + 0.2 * 0.4 = 0.72.
FAKE_HV_A = 0.72

Edit = Callable[[list[str], list[list[str]], dict], None]


def write_fake_table(directory: Path, edit: Edit | None = None, name: str = "table.csv.gz") -> Path:
    """Write a 12-row NB201 table (devices dev_a: train, dev_b: test) and its devices.json; ``edit`` may
    change the header, the rows (strings) and the devices spec before they are written."""
    space = get_search_space("nb201")
    header = ["index", "arch", "cifar10_test_acc", "cifar100_test_acc", "latency_ms_dev_a", "latency_ms_dev_b"]
    rows = [
        [
            str(i),
            space.to_string(space.from_benchmark_index(i)),
            repr(100.0 - FAKE_ERROR[i]),
            repr(50.0 - i),
            repr(FAKE_LAT_A[i]),
            repr(1.0 + 0.5 * i),
        ]
        for i in range(len(FAKE_ERROR))
    ]
    spec = {"train_devices": ["dev_a"], "test_devices": ["dev_b"], "reference_arch_indices": list(range(10))}
    if edit is not None:
        edit(header, rows, spec)
    text = "\n".join(",".join(r) for r in [header, *rows]) + "\n"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    if name.endswith(".gz"):
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    (directory / "devices.json").write_text(json.dumps(spec))
    return path


def test_fake_table_loads(tmp_path):
    table = load_table(write_fake_table(tmp_path))
    assert isinstance(table, BenchmarkTable) and len(table) == 12
    space = get_search_space("nb201")
    assert table.genotypes.shape == (12, space.num_decisions)
    assert [tuple(g) for g in table.genotypes] == [space.from_benchmark_index(i) for i in range(12)]
    assert table.devices == ("dev_a", "dev_b") and table.train_devices == ("dev_a",)
    assert table.datasets == ("cifar10", "cifar100")
    np.testing.assert_allclose(table.error(), FAKE_ERROR)
    np.testing.assert_allclose(table.error("cifar100"), [50.0 + i for i in range(12)])
    np.testing.assert_array_equal(table.latency("dev_a"), FAKE_LAT_A)
    np.testing.assert_array_equal(table.anchor_latency_ms("dev_a"), FAKE_LAT_A[:10])
    np.testing.assert_array_equal(table.device_embedding("dev_a"), anchor_embedding(FAKE_LAT_A[:10]))
    assert table.device("dev_b").embedding.tolist() == pytest.approx([i / 9 for i in range(10)])
    assert table.split("dev_b") == "test"
    with pytest.raises(ValueError):
        table.latency("dev_a")[0] = 1.0  # read-only: the table is cached and shared


def test_indices_of_genotypes(tmp_path):
    table = load_table(write_fake_table(tmp_path))
    space = get_search_space("nb201")
    assert table.indices_of([space.from_benchmark_index(i) for i in (5, 0, 11)]).tolist() == [5, 0, 11]
    with pytest.raises(ValueError, match="has no row"):
        table.indices_of([space.from_benchmark_index(12)])


def test_unknown_device_and_dataset_list_known_ones(tmp_path):
    table = load_table(write_fake_table(tmp_path))
    with pytest.raises(ValueError, match="unknown device 'pixel9'.*dev_a, dev_b"):
        table.latency("pixel9")
    with pytest.raises(ValueError, match="unknown dataset 'imagenet16'.*cifar10, cifar100"):
        table.error("imagenet16")


def test_plain_csv_explicit_devices_file_and_cache(tmp_path):
    path = write_fake_table(tmp_path / "t", name="t.csv")
    moved = tmp_path / "elsewhere.json"
    (tmp_path / "t" / "devices.json").rename(moved)
    with pytest.raises(TableError, match="devices.json: no such file"):
        load_table(path)
    table = load_table(path, devices_path=moved)
    assert load_table(path, devices_path=moved) is table
    assert len(table) == 12


def test_resolve_table_path(tmp_path, monkeypatch):
    path = write_fake_table(tmp_path)
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_table_path() is None
    with pytest.raises(TableError, match="set MODNAS_NB201_TABLE"):
        load_table()
    monkeypatch.setenv(ENV_VAR, str(path))
    assert resolve_table_path() == path
    assert resolve_table_path(tmp_path) == path  # a directory with one table in it
    assert load_table(tmp_path) is load_table()
    with pytest.raises(TableError, match="no such table file"):
        resolve_table_path(tmp_path / "missing.csv.gz")
    write_fake_table(tmp_path, name="second.csv")
    with pytest.raises(TableError, match="holds 2"):
        resolve_table_path(tmp_path)


def _drop_column(name: str) -> Edit:
    def edit(header, rows, spec):
        j = header.index(name)
        del header[j]
        for r in rows:
            del r[j]

    return edit


def _set_cell(row: int, column: str, value: str) -> Edit:
    def edit(header, rows, spec):
        rows[row][header.index(column)] = value

    return edit


def _swap_archs(header, rows, spec):
    rows[1][1], rows[2][1] = rows[2][1], rows[1][1]


def _no_latency(header, rows, spec):
    _drop_column("latency_ms_dev_a")(header, rows, spec)
    _drop_column("latency_ms_dev_b")(header, rows, spec)


def _spec(**changes) -> Edit:
    def edit(header, rows, spec):
        for k, v in changes.items():
            if v is None:
                del spec[k]
            else:
                spec[k] = v

    return edit


BAD_TABLES = {
    "missing arch": (_drop_column("arch"), "table.csv.gz: missing column 'arch'"),
    "missing acc": (_drop_column("cifar10_test_acc"), "missing column 'cifar10_test_acc'"),
    "no latency": (_no_latency, "no latency column"),
    "duplicate column": (lambda h, r, s: h.__setitem__(3, "arch"), "duplicate column 'arch'"),
    "ragged row": (lambda h, r, s: r[5].pop(), r"row 5 \(line 7\) has 5 fields"),
    "index order": (_set_cell(2, "index", "3"), "row 2 has index 3"),
    "index not int": (_set_cell(2, "index", "two"), "row 2: index 'two' is not an integer"),
    "bad arch": (_set_cell(4, "arch", "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|"), "row 4: .*unknown op"),
    "arch order": (_swap_archs, "row 1: arch .* has NB201 index 2, not 1"),
    "non-numeric": (_set_cell(3, "latency_ms_dev_b", "fast"), "'latency_ms_dev_b' row 3: 'fast' is not a number"),
    "empty cell": (_set_cell(3, "cifar10_test_acc", ""), "'cifar10_test_acc' row 3: '' is not a number"),
    "zero latency": (_set_cell(7, "latency_ms_dev_a", "0"), "row 7: latency 0.0 is not finite and > 0"),
    "nan latency": (_set_cell(8, "latency_ms_dev_a", "nan"), "row 8: latency nan"),
    "accuracy > 100": (_set_cell(0, "cifar100_test_acc", "101"), r"row 0: 101.0 not in \[0, 100\]"),
    "too many rows": (lambda h, r, s: r.extend([r[0]] * 15625), "more than the 15625 archs"),
    "no rows": (lambda h, r, s: r.clear(), "no data rows"),
    "unknown device": (_spec(test_devices=["dev_c"]), "devices.json: device 'dev_c' has no column"),
    "device twice": (_spec(test_devices=["dev_a"]), "device 'dev_a' is listed twice"),
    "missing key": (_spec(train_devices=None), "missing key 'train_devices'"),
    "devices not list": (_spec(test_devices="dev_b"), "'test_devices' must be a list"),
    "9 anchors": (_spec(reference_arch_indices=list(range(9))), "list of 10 integers"),
    "anchor range": (_spec(reference_arch_indices=list(range(3, 13))), "anchor index 12 is out of range 0..11"),
    "anchor dup": (_spec(reference_arch_indices=[0] * 10), "has duplicates"),
}


@pytest.mark.parametrize("case", list(BAD_TABLES))
def test_bad_tables_raise_one_line_table_error(tmp_path, case):
    edit, message = BAD_TABLES[case]
    path = write_fake_table(tmp_path, edit)
    with pytest.raises(TableError, match=message) as err:
        load_table(path)
    text = str(err.value)
    assert "\n" not in text
    assert str(path) in text or str(path.parent / "devices.json") in text


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"not gzip at all", "cannot read"), (gzip.compress(b""), "empty file")],
)
def test_unreadable_table(tmp_path, content, message):
    write_fake_table(tmp_path)
    path = tmp_path / "table.csv.gz"
    path.write_bytes(content)
    with pytest.raises(TableError, match=f"table.csv.gz: {message}"):
        load_table(path)


def test_invalid_devices_json(tmp_path):
    path = write_fake_table(tmp_path)
    (tmp_path / "devices.json").write_text("{train_devices: [")
    with pytest.raises(TableError, match="devices.json: invalid JSON"):
        load_table(path)


def test_unlisted_latency_column_is_kept_with_a_warning(tmp_path, caplog):
    path = write_fake_table(tmp_path, _spec(test_devices=[]))
    table = load_table(path)
    assert table.devices == ("dev_a",) and table.split("dev_b") == "other"
    assert "not listed" in caplog.text and "dev_b" in caplog.text


# ---- MODNAS evaluation on the fake table --------------------------------------------------------


def test_true_front_of_fake_table(tmp_path):
    table = load_table(write_fake_table(tmp_path))
    result = true_front(table, "dev_a")
    assert result.indices.tolist() == FAKE_FRONT_A
    assert result.error.tolist() == [40.0, 30.0, 20.0, 10.0]
    assert result.latency_ms.tolist() == [1.0, 2.0, 3.0, 5.0]
    np.testing.assert_allclose(result.normalised, [[0.6, 0.0], [0.4, 0.2], [0.2, 0.4], [0.0, 0.8]])
    assert result.hv == pytest.approx(FAKE_HV_A, abs=1e-12)
    assert result.normaliser.lo == (10.0, 1.0) and result.normaliser.hi == (60.0, 6.0)
    rows = result.rows()
    assert rows[0]["nb201_index"] == 3 and rows[0]["arch"] == table.archs[3]
    assert set(rows[0]) == {"nb201_index", "arch", "error", "latency_ms", "error_norm", "latency_norm"}


def test_evaluate_front_of_a_subset(tmp_path):
    table = load_table(write_fake_table(tmp_path))
    # Rows 6 and 7 (error >= 90) are dropped, row 4 is dominated by row 0, duplicates are merged.
    result = evaluate_front(table, "dev_a", [6, 7, 4, 0, 0, 2])
    assert result.indices.tolist() == [2, 0]
    # (0.4, 0.2) and (0, 0.8): 0.2 * 1 + 0.6 * 0.6.
    assert result.hv == pytest.approx(0.2 + 0.36, abs=1e-12)
    assert evaluate_front(table, "dev_a", [6, 7]).hv == 0.0
    assert evaluate_front(table, "dev_a", []).indices.tolist() == []
    with pytest.raises(ValueError, match="0..11"):
        evaluate_front(table, "dev_a", [12])


# ---- the real table -----------------------------------------------------------------------------

# Hypervolumes of the true fronts reported for MODNAS's evaluation protocol (4 decimals).
REFERENCE_HV = {"1080ti_1": 0.9458, "samsung_a50": 0.9925, "fpga": 0.9742}


@pytest.fixture(scope="module")
def real_table(nb201_table_path):
    return load_table(nb201_table_path)


def test_real_table_shape_and_devices(real_table, nb201_table_path):
    space = get_search_space("nb201")
    assert len(real_table) == space.num_architectures
    assert len(real_table.train_devices) == 13 and len(real_table.test_devices) == 6
    assert set(real_table.latency_ms) == set(real_table.devices)
    assert real_table.datasets == ("cifar10", "cifar100", "imagenet16")
    assert real_table.anchor_indices == NB201_ANCHOR_INDICES
    rng = np.random.default_rng(0)
    for i in rng.integers(0, len(real_table), size=50):
        assert tuple(real_table.genotypes[i]) == space.from_benchmark_index(int(i))
        assert real_table.archs[i] == space.to_string(space.from_benchmark_index(int(i)))
    assert load_table(nb201_table_path.parent) is real_table  # directory form, cached
    for device in real_table.devices:
        emb = real_table.device_embedding(device)
        assert emb.shape == (10,) and emb.min() == 0.0 and emb.max() == 1.0


@pytest.mark.parametrize("device", list(REFERENCE_HV))
def test_real_true_front_hypervolume(real_table, device):
    result = true_front(real_table, device)
    assert result.hv == pytest.approx(REFERENCE_HV[device], abs=5e-5)
    # The front by definition: no kept arch dominates a front point, every other kept arch is dominated.
    error, latency = real_table.error(), real_table.latency(device)
    keep = np.flatnonzero(error < 90.0)
    F = np.stack([error[keep], latency[keep]], axis=1)  # (n, 2)
    P = np.stack([result.error, result.latency_ms], axis=1)  # (p, 2)
    leq = np.all(F[:, None, :] <= P[None, :, :], axis=2)  # (n, p): F_i <= P_j
    lt = np.any(F[:, None, :] < P[None, :, :], axis=2)
    assert not np.any(leq & lt)
    others = np.setdiff1d(keep, result.indices)
    G = np.stack([error[others], latency[others]], axis=1)
    dominated = np.any(
        np.all(P[None, :, :] <= G[:, None, :], axis=2) & np.any(P[None, :, :] < G[:, None, :], axis=2), axis=1
    )
    assert dominated.all()
