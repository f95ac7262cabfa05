"""Zero-shot serving: latency of architectures on a device known by its anchors; the pyfunc body."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..devices import anchor_columns, anchor_embedding, validate_anchor_latencies
from ..spaces import Genotype
from .model import ARCH_COLUMN, ARTIFACT_KEY, LATENCY, MetaPredictor, denormalise

# ---- zero-shot serving ------------------------------------------------------------------------------------


def predict_latency_ms(
    model: MetaPredictor, anchor_latency_ms: Sequence[float] | np.ndarray, archs: Sequence[str | Genotype]
) -> np.ndarray:
    """(N,) latency in ms of ``archs`` on a device known only by its 10 anchor latencies (ms)."""
    if len(archs) == 0:
        raise ValueError("predict_latency_ms: no architectures given")
    return model.predict_ms(archs, anchor_latency_ms)


class LatencyService:
    """Plain pyfunc body: ``predict(DataFrame)`` with columns ``anchor_latency_ms_0..{A-1}`` (A = the space's
    anchors) and ``arch`` (one device per row) -> DataFrame with ``latency_ms`` (+ every other metric of the
    model whose ``anchor_<metric>_*`` columns are given). Wrapped by :class:`modnas_ops.tracking.LibraryPyfunc`."""

    def __init__(self, model: MetaPredictor) -> None:
        self.model = model.eval()
        self.num_anchors = model.space.num_anchors

    @property
    def input_columns(self) -> list[str]:
        return [*anchor_columns(LATENCY, self.num_anchors), ARCH_COLUMN]

    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        if not isinstance(df, pd.DataFrame):
            raise ValueError(f"predictor pyfunc: expected a pandas DataFrame, got {type(df).__name__}")
        missing = [c for c in self.input_columns if c not in df.columns]
        if missing:
            raise ValueError(f"predictor pyfunc: input lacks columns {', '.join(missing)}")
        archs = df[ARCH_COLUMN].astype(str).tolist()
        n = self.num_anchors
        lat_anchors = df[anchor_columns(LATENCY, n)].to_numpy(np.float64)  # (N, A)
        for i, a in enumerate(lat_anchors):
            validate_anchor_latencies(a, what=f"input row {i} anchor_latency_ms", count=n)
        x = self.model.encode(archs)  # (N, D, K)
        emb = np.stack([anchor_embedding(a) for a in lat_anchors]) if len(df) else np.zeros((0, n))
        y = self.model.predict_normalised(x, emb)  # (N, M)
        out = {}
        for j, metric in enumerate(self.model.metrics):
            cols = anchor_columns(metric, n)
            if not all(c in df.columns for c in cols):
                continue  # a metric's anchors not given: not predicted
            anchors = df[cols].to_numpy(np.float64)  # (N, A)
            for i, a in enumerate(anchors):
                validate_anchor_latencies(a, what=f"input row {i} anchor_{metric}", count=n)
            out[metric] = denormalise(y[:, j], anchors)
        return pd.DataFrame(out, index=df.index)

    def example_input(self, anchor_latency_ms: Sequence[float], archs: Sequence[str]) -> pd.DataFrame:
        """An input DataFrame: one row per arch, all on the device with these anchors."""
        a = validate_anchor_latencies(anchor_latency_ms, what="anchor_latency_ms", count=self.num_anchors)
        df = pd.DataFrame(np.tile(a, (len(archs), 1)), columns=anchor_columns(LATENCY, self.num_anchors))
        df[ARCH_COLUMN] = list(archs)
        return df


def load_pyfunc(artifacts: Mapping[str, str]) -> LatencyService:
    """Loader for :class:`modnas_ops.tracking.LibraryPyfunc` (``artifacts["predictor"]`` = saved model file)."""
    if ARTIFACT_KEY not in artifacts:
        raise ValueError(f"predictor pyfunc: artifacts lack {ARTIFACT_KEY!r} (got {sorted(artifacts)})")
    return LatencyService(MetaPredictor.load(artifacts[ARTIFACT_KEY]))


def pip_requirements() -> list[str]:
    """torch pinned to the installed release (local tag dropped), numpy, pandas, scipy, scikit-learn."""
    return [f"torch=={torch.__version__.split('+')[0]}", "numpy", "pandas", "scipy", "scikit-learn", "tqdm"]
