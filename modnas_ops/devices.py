"""Hardware devices as the search sees them: a name and the latencies of the space's anchor networks.

A device embedding is the min-max normalisation of the 10 anchor latencies (HELP / MODNAS): it keeps the
device's *relative* costs and drops its absolute scale, so an unseen device is described by 10 measurements.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NUM_ANCHORS = 10


def validate_anchor_latencies(anchor_latency_ms: object, what: str = "anchor latencies") -> np.ndarray:
    """(10,) float64 latencies in ms, or ValueError naming what is wrong."""
    a = np.asarray(anchor_latency_ms, dtype=np.float64)
    if a.ndim != 1 or a.shape[0] != NUM_ANCHORS:
        raise ValueError(f"{what}: expected {NUM_ANCHORS} values in ms, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what}: values must be finite, got {a.tolist()}")
    if np.any(a <= 0):
        raise ValueError(f"{what}: latencies must be positive (ms), got {a.tolist()}")
    if np.ptp(a) == 0:
        raise ValueError(f"{what}: all {NUM_ANCHORS} anchors have the same latency; the embedding is undefined")
    return a


def anchor_embedding(anchor_latency_ms: object) -> np.ndarray:
    """(10,) float32 embedding: anchor latencies min-max normalised over those 10 values."""
    a = validate_anchor_latencies(anchor_latency_ms)
    return ((a - a.min()) / (a.max() - a.min())).astype(np.float32)


@dataclass(frozen=True)
class Device:
    """A device known by its anchor latencies (raw ms, in the space's anchor order)."""

    name: str
    anchor_latency_ms: tuple[float, ...]
    description: str = ""
    embedding: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        a = validate_anchor_latencies(self.anchor_latency_ms, what=f"device {self.name!r}")
        object.__setattr__(self, "anchor_latency_ms", tuple(float(x) for x in a))
        object.__setattr__(self, "embedding", anchor_embedding(a))

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "anchor_latency_ms": list(self.anchor_latency_ms), "description": self.description}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Device:
        return cls(str(d["name"]), tuple(d["anchor_latency_ms"]), str(d.get("description", "")))  # type: ignore[arg-type]
