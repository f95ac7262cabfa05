"""Latency tables of any space (modnas_ops.latency_table): the OFA table read through $MODNAS_MBV3_TABLE (skipped
without it), the NB201 table through the same reader, and one clear error per malformed input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from modnas_ops.benchmarks import TableError
from modnas_ops.latency_table import load_latency_table, table_env_var
from modnas_ops.predictor import measurements_from_table
from modnas_ops.spaces import get_search_space

OFA = os.environ.get("MODNAS_MBV3_TABLE", "")
needs_ofa = pytest.mark.skipif(
    not (OFA and Path(OFA).is_file()), reason="MODNAS_MBV3_TABLE does not name the OFA table"
)


def test_env_var_names_follow_the_space() -> None:
    assert table_env_var("mbv3") == "MODNAS_MBV3_TABLE" and table_env_var("nb201") == "MODNAS_NB201_TABLE"


@needs_ofa
def test_the_ofa_table_parses_with_its_devices_and_anchors() -> None:
    t = load_latency_table("mbv3")
    assert len(t) == 5000 and len(t.train_devices) == 8 and t.test_devices == ("titan_rtx_64",)
    space = get_search_space("mbv3")
    assert [tuple(t.genotypes[i]) for i in t.anchor_indices] == space.anchors()
    devices = measurements_from_table(t)
    assert [d.split for d in devices].count("test") == 1
    rtx = next(d for d in devices if d.name == "titan_rtx_64")
    assert 8.8 < rtx.values["latency_ms"].min() < rtx.values["latency_ms"].max() < 54.9  # the README's range
    assert np.all(rtx.embedding >= 0) and np.all(rtx.embedding <= 1) and rtx.embedding.shape == (10,)


def _write_toy_table(tmp_path: Path, anchors: list[int] | None = None, arch_override: str | None = None) -> Path:
    space = get_search_space("toy")
    genotypes = list(space.canonical_genotypes())
    rows = ["index,arch,latency_ms_a,latency_ms_b"]
    for i, g in enumerate(genotypes):
        arch = arch_override if (arch_override and i == 3) else space.to_string(g)
        rows.append(f"{i},{arch},{1 + i},{2 + 0.5 * i}")
    path = tmp_path / "toy.csv"
    path.write_text("\n".join(rows) + "\n")
    anchor_rows = anchors if anchors is not None else [genotypes.index(space.canonical(a)) for a in space.anchors()]
    (tmp_path / "devices.json").write_text(json.dumps(
        {"train_devices": ["a"], "test_devices": ["b"], "reference_arch_indices": anchor_rows}
    ))  # fmt: skip
    return path


def test_a_table_of_the_toy_space_reads_through_the_generic_reader(tmp_path) -> None:
    t = load_latency_table("toy", _write_toy_table(tmp_path))
    assert len(t) == 15 and t.devices == ("a", "b")
    np.testing.assert_allclose(t.latency("a"), 1 + np.arange(15))


def test_malformed_tables_get_one_line_naming_the_problem(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MODNAS_TOY_TABLE", raising=False)
    with pytest.raises(TableError, match=r"no latency table given \(pass a path or set \$MODNAS_TOY_TABLE\)"):
        load_latency_table("toy")
    with pytest.raises(TableError, match="anchor row 1 is .* but toy's anchor 0 is"):
        load_latency_table("toy", _write_toy_table(tmp_path, anchors=[1, 2, 3, 4, 5]))
    with pytest.raises(TableError, match="toy.csv: row 3: toy: choice 8 of decision 0"):
        load_latency_table("toy", _write_toy_table(tmp_path, arch_override="d9-k1"))
    with pytest.raises(TableError, match="no such table file"):
        load_latency_table("toy", tmp_path / "missing.csv")
