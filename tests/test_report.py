"""report.html: self-contained, every section there, parsed back."""

from __future__ import annotations

import base64
from html.parser import HTMLParser

import numpy as np
import pandas as pd

from modnas_ops.report import ZERO_SHOT, ReportInput, render_report


class Page(HTMLParser):
    """Images, table cells and ids of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.ids: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.links: list[str] = []
        self._table = ""
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "img":
            self.images.append(a["src"])
        if tag in ("link", "script") and (a.get("href") or a.get("src")):
            self.links.append(a.get("href") or a.get("src"))
        if tag == "table":
            self._table = a["class"]
            self.tables[self._table] = []
        if tag == "tr":
            self.tables[self._table].append([])
        if tag in ("td", "th"):
            self._cell = []

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[self._table][-1].append("".join(self._cell or []))
            self._cell = None


def _input() -> ReportInput:
    fronts = pd.DataFrame({
        "device": ["a", "a", "a", "z"], "arch": ["x1", "x2", "x3", "x1"],
        "pref_0": [0.8, 0.2, 0.5, 0.5], "pref_1": [0.2, 0.8, 0.5, 0.5], "on_front": [True, True, False, True],
        "pred_error": [10.0, 20.0, 15.0, 10.0], "pred_latency_ms": [2.0, 1.0, 1.5, 3.0],
        "true_error": [11.0, 19.0, 16.0, 12.0], "true_latency_ms": [2.1, 0.9, 1.4, 2.9],
    })  # fmt: skip
    history = [{"epoch": e, "hv/a": 0.5 + 0.1 * e, "hv/z": 0.4 + 0.1 * e} for e in range(3)]
    return ReportInput(
        title="MODNAS search: test", summary={"mode": "benchmark", "space": "nb201"},
        devices=[("a", "train"), ("z", "test")], objectives=("error", "latency_ms"), fronts=fronts,
        metrics={"hv/a": 0.7, "hv/z": 0.6, "hv_ratio/a": 0.99, "measurements/a": 5.0}, history=history,
        cost={"accuracy queries": 100, "anchor measurements": 20}, reference={"a": np.array([[30.0, 3.0]])},
    )  # fmt: skip


def test_report_is_self_contained_and_shows_every_section() -> None:
    page = Page()
    page.feed(render_report(_input()))
    assert page.links == []  # nothing loaded from outside the file
    assert {"summary", "cost", "hv", "fronts", "history", "chosen"} <= set(page.ids)
    assert len(page.images) == 2
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    hv = page.tables["hv"]
    assert hv[0] == ["device", "split", "hv", "hv_ratio", "measurements"]
    assert hv[1] == ["a", "train", "0.7", "0.99", "5"] and hv[2][:3] == ["z", ZERO_SHOT, "0.6"]
    chosen = page.tables["chosen"]
    assert chosen[0][:5] == ["device", "split", "pref_0", "pref_1", "architecture"]
    assert [r[4] for r in chosen[1:]] == ["x2", "x1", "x1"]  # on-front rows only, by device then preference
    assert chosen[3][1] == ZERO_SHOT
    assert page.tables["cost"][1:] == [["accuracy queries", "100"], ["anchor measurements", "20"]]


def test_report_escapes_text() -> None:
    r = _input()
    page = render_report(ReportInput(**{**r.__dict__, "summary": {"data": "<script>x</script>"}}))
    assert "<script>" not in page and "&lt;script&gt;" in page
