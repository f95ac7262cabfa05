"""Hardware devices as the search sees them: a name and the latencies of the space's anchor networks.

A device embedding is the min-max normalisation of the latencies of the space's anchor architectures (HELP /
MODNAS: 10 of them for NB201): it keeps the device's *relative* costs and drops its absolute scale, so an unseen
device is described by ``space.num_anchors`` measurements.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import UserError


def validate_anchor_latencies(
    anchor_latency_ms: object, what: str = "anchor latencies", count: int | None = None
) -> np.ndarray:
    """(A,) float64 anchor values (A = ``count`` when given, else any A >= 2), or ValueError naming what is
    wrong."""
    a = np.asarray(anchor_latency_ms, dtype=np.float64)
    if a.ndim != 1 or (count is not None and a.shape[0] != count) or a.shape[0] < 2:
        want = f"{count} values" if count is not None else "at least 2 values"
        raise UserError(f"{what}: expected {want} in ms, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise UserError(f"{what}: values must be finite, got {a.tolist()}")
    if np.any(a <= 0):
        raise UserError(f"{what}: latencies must be positive (ms), got {a.tolist()}")
    if np.ptp(a) == 0:
        raise UserError(f"{what}: all {len(a)} anchors have the same latency; the embedding is undefined")
    return a


def anchor_columns(metric: str, count: int) -> list[str]:
    """``anchor_<metric>_0`` ... ``anchor_<metric>_<count-1>``: the input columns of the served models."""
    return [f"anchor_{metric}_{i}" for i in range(int(count))]


def anchor_embedding(anchor_latency_ms: object, count: int | None = None) -> np.ndarray:
    """(A,) float32 embedding: the A anchor latencies min-max normalised over themselves."""
    a = validate_anchor_latencies(anchor_latency_ms, count=count)
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
