"""MetaPredictor: hardware metrics of an architecture on a device known only by its anchor measurements.

``MetaPredictor.forward(arch (B, E, K), embedding (B, 10)) -> (B, M)`` predicts each metric (``latency_ms``,
optionally ``energy_mj``) in *anchor-normalised* units: ``y = (v - min_a) / (max_a - min_a)`` where ``min_a``
and ``max_a`` are the smallest and largest of the device's 10 anchor values of that metric. The embedding is the
same normalisation of the anchor latencies (:func:`modnas_ops.devices.anchor_embedding`), so an unseen device is
served from its 10 anchor measurements alone and predictions de-normalise to ms / mJ from those anchors
(:meth:`MetaPredictor.predict_ms`). ``arch`` may be soft (softmax) or straight-through one-hot weights; the
output is differentiable with respect to it.

The network (``net``) is chosen from a registry (:func:`create_predictor_net`); the default ``factorised``
multiplies an architecture MLP's features with a device MLP's features (a learned low-rank device x arch
model), which measured best on unseen devices (see ``-m projects.bench_predictor``). Targets are
standardised with statistics fitted once on the training targets and stored as buffers (saved with the model).

Training data: :class:`DeviceMeasurements` per device, from the NB201 table (:func:`measurements_from_table`)
or a profiling table (:func:`measurements_from_profile`); :func:`split_architectures` splits *by
architecture*; :func:`fit_meta_predictor` trains with device mixup (convex and mildly extrapolated blends of
two training devices in normalised units, a valid virtual device because both targets and embeddings are the
same linear normalisation) and early stopping on the validation archs.
"""

from __future__ import annotations

from .data import (
    ArchSplit,
    DeviceMeasurements,
    measurements_from_profile,
    measurements_from_table,
    share_metric,
    split_architectures,
)
from .fit import FitConfig, FitResult, evaluate_predictor, fit_meta_predictor
from .model import (
    ARCH_COLUMN,
    ARTIFACT_KEY,
    ENERGY,
    FORMAT_VERSION,
    KNOWN_METRICS,
    LATENCY,
    MEMORY,
    MIN_FRACTION_OF_FASTEST_ANCHOR,
    PROFILE_COLUMNS,
    MetaPredictor,
    PredictorFileNotFoundError,
    denormalise,
    normalise,
)
from .nets import (
    PREDICTOR_NETS,
    CellGCN,
    ConcatMLP,
    FactorisedNet,
    available_predictor_nets,
    create_predictor_net,
    normalised_adjacency,
    register_predictor_net,
)
from .serve import LatencyService, load_pyfunc, pip_requirements, predict_latency_ms

__all__ = [
    "ARCH_COLUMN",
    "ARTIFACT_KEY",
    "ENERGY",
    "FORMAT_VERSION",
    "KNOWN_METRICS",
    "LATENCY",
    "MEMORY",
    "MIN_FRACTION_OF_FASTEST_ANCHOR",
    "PREDICTOR_NETS",
    "PROFILE_COLUMNS",
    "ArchSplit",
    "CellGCN",
    "ConcatMLP",
    "DeviceMeasurements",
    "FactorisedNet",
    "FitConfig",
    "FitResult",
    "LatencyService",
    "MetaPredictor",
    "PredictorFileNotFoundError",
    "available_predictor_nets",
    "create_predictor_net",
    "denormalise",
    "evaluate_predictor",
    "fit_meta_predictor",
    "load_pyfunc",
    "measurements_from_profile",
    "measurements_from_table",
    "normalise",
    "normalised_adjacency",
    "pip_requirements",
    "predict_latency_ms",
    "register_predictor_net",
    "share_metric",
    "split_architectures",
]
