"""The MetaPredictor: an ensemble of registered nets, target standardisation, anchor (de-)normalisation, files."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_torch_save
from ..devices import anchor_embedding, validate_anchor_latencies
from ..errors import UserError
from ..spaces import get_search_space
from .nets import create_predictor_net

FORMAT_VERSION = 1
LATENCY = "latency_ms"
ENERGY = "energy_mj"
MEMORY = "memory_mb"  # peak inference memory measured by profiling.memory
KNOWN_METRICS = (LATENCY, ENERGY, MEMORY)
OPTIONAL_METRICS = (ENERGY, MEMORY)  # fitted and searched where every training device has them
ARTIFACT_KEY = "predictor"  # key of the saved model file in the pyfunc's artifacts
ARCH_COLUMN = "arch"
PROFILE_COLUMNS = ("space", "arch", "device", LATENCY, "role")


# ---- the model --------------------------------------------------------------------------------------------


class MetaPredictor(nn.Module):
    """p(arch (B, E, K), device embedding (B, 10)) -> (B, len(metrics)) in anchor-normalised units.

    An ensemble of ``ensemble`` networks of kind ``net`` (averaged). ``target_mean``/``target_std`` (M,) are
    buffers fitted once (:meth:`set_target_statistics`) and saved with the weights."""

    def __init__(
        self,
        space: str = "nb201",
        metrics: Sequence[str] = (LATENCY,),
        net: str = "factorised",
        hidden: int = 128,
        layers: int = 3,
        ensemble: int = 1,
    ) -> None:
        super().__init__()
        self.space = get_search_space(space)
        self.metrics = tuple(str(m) for m in metrics)
        if not self.metrics or self.metrics[0] != LATENCY or len(set(self.metrics)) != len(self.metrics):
            raise ValueError(f"MetaPredictor: metrics must start with {LATENCY!r} and be distinct, got {metrics}")
        unknown = [m for m in self.metrics if m not in KNOWN_METRICS]
        if unknown:
            raise ValueError(f"MetaPredictor: unknown metric {unknown[0]!r}; known: {', '.join(KNOWN_METRICS)}")
        if int(hidden) < 1 or int(layers) < 1 or int(ensemble) < 1:
            raise ValueError(f"MetaPredictor: hidden, layers, ensemble must be >= 1, got {hidden, layers, ensemble}")
        self.hparams: dict[str, Any] = {
            "space": self.space.name,
            "metrics": list(self.metrics),
            "net": str(net),
            "hidden": int(hidden),
            "layers": int(layers),
            "ensemble": int(ensemble),
        }
        m = len(self.metrics)
        self.nets = nn.ModuleList(
            create_predictor_net(net, self.space, m, int(hidden), int(layers)) for _ in range(int(ensemble))
        )
        self.register_buffer("target_mean", torch.zeros(m))  # (M,)
        self.register_buffer("target_std", torch.ones(m))  # (M,)

    # ---- forward ---------------------------------------------------------------------------------------
    def forward(self, arch: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """(B, E, K) encodings (one-hot, soft or straight-through) x (B, 10) embeddings -> (B, M)."""
        if arch.dim() != 3 or tuple(arch.shape[1:]) != self.space.shape:
            raise ValueError(f"MetaPredictor: arch must be (B, *{self.space.shape}), got {tuple(arch.shape)}")
        a = self.space.num_anchors
        if embedding.dim() != 2 or embedding.shape != (arch.shape[0], a):
            raise ValueError(f"MetaPredictor: embedding must be ({arch.shape[0]}, {a}), got {tuple(embedding.shape)}")
        z = torch.stack([net(arch, embedding) for net in self.nets]).mean(0)  # (B, M) standardised
        return z * self.target_std + self.target_mean

    def set_target_statistics(self, y: np.ndarray | torch.Tensor) -> None:
        """Fit the target standardisation once from training targets (N, M) (nan = missing)."""
        t = torch.as_tensor(np.asarray(y, dtype=np.float64))
        if t.dim() != 2 or t.shape[1] != len(self.metrics):
            raise ValueError(f"set_target_statistics: targets must be (N, {len(self.metrics)}), got {tuple(t.shape)}")
        for j in range(t.shape[1]):
            col = t[:, j][torch.isfinite(t[:, j])]
            if col.numel() < 2:
                raise ValueError(f"set_target_statistics: fewer than 2 values of {self.metrics[j]}")
            self.target_mean[j] = col.mean().to(self.target_mean.dtype)
            self.target_std[j] = col.std().clamp_min(1e-6).to(self.target_std.dtype)

    # ---- inputs ------------------------------------------------------------------------------------------
    def encode(self, archs: Sequence[str | Sequence[int]]) -> torch.Tensor:
        """(N, E, K) one-hot encodings of architecture strings or genotypes (ValueError on a bad one)."""
        genotypes = [self.space.from_string(a) if isinstance(a, str) else self.space.validate(a) for a in archs]
        device = self.target_mean.device
        return torch.from_numpy(self.space.one_hot_batch(genotypes)).to(device)

    @torch.no_grad()
    def predict_normalised(
        self, archs: Sequence[str | Sequence[int]] | torch.Tensor, embedding: np.ndarray, batch_size: int = 4096
    ) -> np.ndarray:
        """(N, M) anchor-normalised predictions for one device embedding (10,) or one per arch (N, 10)."""
        x = archs if isinstance(archs, torch.Tensor) else self.encode(archs)  # (N, E, K)
        emb = torch.as_tensor(np.asarray(embedding, dtype=np.float32), device=x.device)
        if emb.dim() == 1:
            emb = emb.expand(x.shape[0], -1)
        was_training = self.training
        self.eval()
        try:
            out = [self(x[i : i + batch_size], emb[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
        finally:
            self.train(was_training)
        y = torch.cat(out).cpu().numpy().astype(np.float64) if out else np.zeros((0, len(self.metrics)))
        bad = ~np.isfinite(y)
        if bad.any():
            i, j = map(int, np.argwhere(bad)[0])
            who = getattr(self, "source", "MetaPredictor")
            raise ValueError(
                f"{who}: non-finite {self.metrics[j]} prediction ({y[i, j]}) for input row {i} "
                f"({int(bad.any(axis=1).sum())} of {len(y)} rows); its weights or this device's embedding overflow"
            )
        return y

    def predict(
        self,
        archs: Sequence[str | Sequence[int]],
        anchor_latency_ms: Sequence[float] | np.ndarray,
        anchor_values: Mapping[str, Sequence[float] | np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Raw-unit predictions ``{metric: (N,)}`` on a device given by its 10 anchor latencies (ms); other
        metrics are de-normalised with their own anchors in ``anchor_values`` (skipped when absent)."""
        n = self.space.num_anchors
        lat = validate_anchor_latencies(anchor_latency_ms, what="anchor_latency_ms", count=n)
        anchors = {LATENCY: lat}
        for metric, values in (anchor_values or {}).items():
            if metric not in self.metrics:
                raise ValueError(f"predict: the model has no metric {metric!r} (metrics: {', '.join(self.metrics)})")
            if metric != LATENCY:
                anchors[metric] = validate_anchor_latencies(values, what=f"anchor {metric}", count=n)
        y = self.predict_normalised(archs, anchor_embedding(lat))  # (N, M)
        return {m: denormalise(y[:, j], anchors[m]) for j, m in enumerate(self.metrics) if m in anchors}

    def predict_ms(
        self, archs: Sequence[str | Sequence[int]], anchor_latency_ms: Sequence[float] | np.ndarray
    ) -> np.ndarray:
        """(N,) predicted latency in ms on the device whose 10 anchor latencies (ms) are given."""
        return self.predict(archs, anchor_latency_ms)[LATENCY]

    # ---- persistence --------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Atomic ``torch.save`` of hyper-parameters, space description and weights (+ target statistics)."""
        p = Path(path)
        bad = _non_finite_tensor(self.state_dict())
        if bad:
            raise ValueError(f"MetaPredictor.save {p}: {bad} holds NaN or inf (training diverged); not saved")
        p.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FORMAT_VERSION,
            "hparams": dict(self.hparams),
            "space_description": self.space.describe(),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
        }
        atomic_torch_save(payload, p)
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> MetaPredictor:
        """Inverse of :meth:`save` (``weights_only=True``); returned in eval mode. Every problem with the file
        (missing, not a predictor, other hyper-parameters or shapes, NaN/inf weights) is a one-line
        :class:`~modnas_ops.errors.UserError` naming it."""
        p = Path(path)
        if not p.is_file():
            raise PredictorFileNotFoundError(f"{p}: no such predictor file")
        try:
            payload = torch.load(p, map_location=map_location, weights_only=True)
        except Exception as e:  # any unpickling failure means "not a predictor file"
            raise UserError(f"{p}: not a MetaPredictor file ({type(e).__name__})") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION or "hparams" not in payload:
            raise UserError(f"{p}: not a MetaPredictor file of format {FORMAT_VERSION}")
        hparams, state = payload["hparams"], payload.get("state_dict")
        if not isinstance(hparams, dict) or not isinstance(state, dict):
            raise UserError(f"{p}: not a MetaPredictor file (hparams or state_dict is not a mapping)")
        try:
            model = cls(**hparams)
        except (TypeError, ValueError) as e:
            raise UserError(f"{p}: unusable hyper-parameters {hparams}: {str(e).splitlines()[0]}") from None
        if model.space.describe() != payload.get("space_description"):
            raise UserError(f"{p}: saved for a different {model.space.name} space description")
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError, ValueError, AttributeError) as e:
            first = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), str(e).splitlines()[0])
            raise UserError(f"{p}: weights do not fit its hyper-parameters ({first})") from None
        bad = _non_finite_tensor(model.state_dict())
        if bad:
            raise UserError(f"{p}: {bad} holds NaN or inf; the file is unusable (retrain or restore it)")
        model.source = str(p)
        return model.to(map_location).eval()


class PredictorFileNotFoundError(UserError, FileNotFoundError):
    """A predictor path that names no file (a ``UserError`` that is also a ``FileNotFoundError``)."""


def _non_finite_tensor(state: Mapping[str, Any]) -> str:
    """Name of the first floating-point tensor of ``state`` holding NaN or inf, else ``""``."""
    for name, t in state.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return ""


MIN_FRACTION_OF_FASTEST_ANCHOR = 0.01


def denormalise(y: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Anchor-normalised values back to raw units: ``min_a + y * (max_a - min_a)``, at least
    ``MIN_FRACTION_OF_FASTEST_ANCHOR * min_a``: below the fastest anchor the linear map extrapolates, and for
    a device whose anchors span much more than their minimum it can cross zero; a latency or energy is
    positive, so such predictions are clipped (the search's objectives use the unclipped normalised values)."""
    a = np.asarray(anchors, dtype=np.float64)  # (10,) for all of y, or (N, 10): one device per value
    lo, hi = a.min(axis=-1), a.max(axis=-1)
    raw = lo + np.asarray(y, dtype=np.float64) * (hi - lo)
    return np.maximum(raw, MIN_FRACTION_OF_FASTEST_ANCHOR * lo)


def normalise(values: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Raw values in anchor-normalised units: ``(v - min_a) / (max_a - min_a)``."""
    a = np.asarray(anchors, dtype=np.float64)
    return (np.asarray(values, dtype=np.float64) - a.min()) / (a.max() - a.min())
