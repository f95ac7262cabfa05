"""One self-contained HTML report of a search (``report.html``: no external file, figures embedded as PNG).

Sections: summary (mode, space, objectives, wall time), the cost of the search, HV per device (zero-shot
devices marked), every device's front in one figure, HV per device per epoch, and the chosen architecture per
device and preference with its objectives. MLflow's artifact viewer shows it as a page.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .plots import fronts_overview_figure, hv_history_figure

ZERO_SHOT = "zero-shot"


@dataclass(frozen=True)
class ReportInput:
    """What a report shows; the entry point fills it from a search result."""

    title: str
    summary: Mapping[str, Any]  # label -> value (mode, space, data, wall time, ...)
    devices: Sequence[tuple[str, str]]  # (name, split): split "test" = zero-shot
    objectives: Sequence[str]
    fronts: Any  # DataFrame: device, arch, pref_*, on_front, pred_* / true_* / measured_* per objective
    metrics: Mapping[str, float]  # final metrics (hv/<device>, hv_ratio/<device>, measurements/<device>, ...)
    history: Sequence[Mapping[str, float]]  # per-epoch metrics
    cost: Mapping[str, float]  # label -> count (accuracy queries, anchors, measurements, ...)
    reference: Mapping[str, np.ndarray] = field(default_factory=dict)  # device -> (R, M) reference archs
    error_unit: str = "%"


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(fig: Any, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{_png(fig)}">'


def _table(header: Sequence[str] | None, rows: Sequence[Sequence[Any]], cls: str) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if not np.isfinite(v) else f"{v:.4g}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header or ())
    head = f"<thead><tr>{head}</tr></thead>" if header is not None else ""
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f'<table class="{cls}">{head}<tbody>{body}</tbody></table>'


def _split_label(split: str) -> str:
    return ZERO_SHOT if split == "test" else split


def render_report(r: ReportInput) -> str:
    """The report as one HTML string."""
    m = r.metrics
    names = [d for d, _ in r.devices]
    summary = _table(None, [(k, v) for k, v in r.summary.items()], "summary")
    cost = _table(["cost", "count"], [(k, int(v)) for k, v in r.cost.items()], "cost")
    hv_rows = [
        (d, _split_label(s), m.get(f"hv/{d}", float("nan")), m.get(f"hv_ratio/{d}", float("nan")),
         m.get(f"measurements/{d}", float("nan")))
        for d, s in r.devices
    ]  # fmt: skip
    hv = _table(["device", "split", "hv", "hv_ratio", "measurements"], hv_rows, "hv")
    prefs = sorted((c for c in r.fronts.columns if c.startswith("pref_")), key=lambda c: int(c.split("_")[1]))
    values = [c for k in ("measured", "true", "pred") for c in (f"{k}_{o}" for o in r.objectives) if c in r.fronts]
    chosen = r.fronts[r.fronts["on_front"]].sort_values(["device", *prefs])
    split = dict(r.devices)
    choice_rows = [
        (row["device"], _split_label(split.get(row["device"], "")), *(row[p] for p in prefs), row["arch"],
         *(float(row[c]) for c in values))
        for _, row in chosen.iterrows()
    ]  # fmt: skip
    choices = _table(["device", "split", *prefs, "architecture", *values], choice_rows, "chosen")
    overview = fronts_overview_figure(r.fronts, r.devices, r.objectives, r.reference, r.error_unit)
    history = hv_history_figure(r.history, names)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(r.title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; }}
th {{ background: #f0f0f0; }}
img {{ max-width: 100%; }}
</style></head>
<body>
<h1>{html.escape(r.title)}</h1>
<h2 id="summary">Summary</h2>
{summary}
<h2 id="cost">Cost of the search</h2>
{cost}
<h2 id="hv">Hypervolume per device</h2>
<p>Zero-shot devices (marked {ZERO_SHOT}) were seen only through their anchor latencies.</p>
{hv}
<h2 id="fronts">Fronts</h2>
{_img(overview, "every device's front")}
<h2 id="history">Hypervolume per epoch</h2>
{_img(history, "hv per device per epoch")}
<h2 id="chosen">Chosen architecture per device and preference</h2>
{choices}
</body></html>
"""


__all__ = ["ZERO_SHOT", "ReportInput", "render_report"]
