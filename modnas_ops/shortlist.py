"""Fronts confirmed by measurement. After the search, per device and preference ray, a shortlist of
candidates proposed by the generator is measured on the device, and the front is built from the measured
values: every measured candidate that no other measured candidate dominates (``front: all``, the default),
or per ray the best measured candidate under the search's scalarisation, then the non-dominated set
(``front: rays``; with a linear scalarisation that keeps only the corners of the measured convex hull).

Candidates of a ray: the ``pool`` most probable architectures of the generator's distribution H(r, d)
(an exact beam search over the factorised categorical), ranked by the *predicted* scalarised objective, of
which the best ``k`` are measured (``pool`` = ``k``: the generator's k most probable). The device's current
front is always among the candidates, so confirmation never discards what the search found. Measuring is the
mode's (a table lookup in benchmark mode) or a callable the entry point passes (onnxruntime through
``profiling/`` on this machine's configs); a device nothing can measure on keeps its predicted front.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch

from .config import FieldError, check_at_least
from .objectives import ErrorObjective, SearchDevice
from .pareto import MODNAS_MAX_ERROR, pareto_mask
from .sampling import top_k_genotypes
from .spaces import Genotype

log = logging.getLogger(__name__)

Measure = Callable[[ErrorObjective, SearchDevice, Sequence[Genotype]], "np.ndarray | None"]
# (objective, device, genotypes) -> (N, num_metrics) measured raw values (NaN: not measured) or None


@dataclass(frozen=True)
class ShortlistConfig:
    """The measured shortlist (``search.shortlist``)."""

    k: int = 0  # candidates measured per device and ray; 0 = off (fronts from predicted values)
    max_per_device: int = 0  # cap on a device's candidates, filled rank by rank over the rays (in an order
    # spread along the front, so a cap cuts evenly); 0 = no cap
    pool: int = 0  # per ray, the generator's `pool` most probable archs ranked by the predicted scalarised
    # objective, of which the best k are measured; 0 = k (the generator's k most probable)
    front: Literal["all", "rays"] = "all"  # all: every measured candidate no other measured candidate
    # dominates; rays: per ray the best measured candidate, then the non-dominated set (under a linear
    # scalarisation only the convex hull's corners: measured on NB201, hv_ratio 0.97 -> 0.85)

    def __post_init__(self) -> None:
        check_at_least(self, 0, "k", "pool", "max_per_device")
        if self.pool and self.pool < self.k:
            raise FieldError("pool", f"must be 0 or >= k ({self.k}), got {self.pool}")
        if self.front not in ("rays", "all"):
            raise FieldError("front", f"must be 'rays' or 'all', got {self.front!r}")


def spread_order(n: int) -> list[int]:
    """0..n-1 in van der Corput order of their positions (0, n/2, n/4, 3n/4, ...): every prefix is spread
    over the whole range, so rays along a front are visited evenly whatever the cut."""
    out: list[int] = []
    t = 0
    while len(out) < n:
        x, denom, i = 0.0, 1.0, t
        while i:
            denom *= 2
            x += (i & 1) / denom
            i >>= 1
        j = min(n - 1, int(x * n))
        if j not in out:
            out.append(j)
        t += 1
    return out


def _normalised(est: np.ndarray, dev: SearchDevice) -> torch.Tensor:
    return torch.as_tensor((est - dev.lo) / (dev.hi - dev.lo), dtype=torch.float32)  # (N, M)


def _ray_candidates(
    objective: ErrorObjective,
    dev: SearchDevice,
    log_probs: torch.Tensor,
    rays: np.ndarray,
    cfg: ShortlistConfig,
    scalarise: Callable[..., torch.Tensor],
) -> list[list[Genotype]]:
    """Per ray the k genotypes to measure: the generator's top ``pool``, best ``k`` by predicted score."""
    pool = cfg.pool or cfg.k
    out = []
    for j, ray in enumerate(torch.as_tensor(rays, dtype=torch.float32)):
        cands = top_k_genotypes(log_probs[j], pool, objective.space)
        if len(cands) > cfg.k:
            est = objective.estimate(dev, cands, measured=False)  # ranked by prediction only
            score = scalarise(_normalised(est, dev), ray.expand(len(cands), -1))
            score = score.masked_fill(torch.as_tensor(est[:, 0] >= MODNAS_MAX_ERROR), torch.inf)
            cands = [cands[i] for i in torch.sort(score, stable=True).indices[: cfg.k].tolist()]
        out.append(cands)
    return out


def confirm_fronts(
    objective: ErrorObjective,
    hypernetwork: torch.nn.Module,
    rays: np.ndarray,
    device: torch.device,
    cfg: ShortlistConfig,
    scalarise: Callable[..., torch.Tensor],
    fronts: pd.DataFrame | None = None,
    measure: Measure | None = None,
) -> tuple[pd.DataFrame, dict[str, float], list[str]]:
    """Every device's front rebuilt from measured candidates (module docstring); rows as the mode's
    judgement writes them plus ``measured_<metric>`` (NaN: not measured) and metrics with
    ``measurements/<device>`` (architectures measured here: the candidates, and the mode's reference set
    where its HV is normalised over one, so a measured front is judged against measured references) and
    ``shortlist/<device>`` (candidates).
    ``fronts``: the search's current rows (their on-front archs join the candidates; a device nothing can
    measure on keeps its rows and is left out of the returned names of the confirmed devices)."""
    measure = measure or (lambda obj, dev, gs: obj.measure(dev, gs))
    prefs = [f"pref_{j}" for j in range(rays.shape[1])]
    r = torch.as_tensor(rays, dtype=torch.float32, device=device)
    hypernetwork.eval()
    frames, metrics, confirmed = [], {}, []
    for dev in objective.devices:
        emb = torch.as_tensor(dev.embedding, dtype=torch.float32, device=device)
        with torch.no_grad():
            log_probs = torch.log_softmax(hypernetwork(r, emb.expand(len(r), -1)).double(), -1)  # (R, E, K)
        log_probs = log_probs.masked_fill(~hypernetwork.mask.to(log_probs.device), -torch.inf)
        origin: dict[Genotype, np.ndarray] = {}  # candidate -> the preference that proposed it first
        current = _front_rows(fronts, dev.name)
        for rec in current[current["on_front"]].to_dict("records") if len(current) else []:
            g = objective.space.canonical(objective.space.from_string(str(rec["arch"])))
            origin.setdefault(g, np.asarray([float(rec[p]) for p in prefs]))
        per_ray = _ray_candidates(objective, dev, log_probs, rays, cfg, scalarise)
        for rank in range(cfg.k):  # rank by rank over the rays, up to the device's cap
            for j in spread_order(len(per_ray)):
                if rank < len(per_ray[j]) and (not cfg.max_per_device or len(origin) < cfg.max_per_device):
                    origin.setdefault(per_ray[j][rank], rays[j])
        cands = list(origin)
        wanted = list(dict.fromkeys([*cands, *objective.reference_genotypes(dev)]))  # + the HV's references
        missing = np.isnan(objective.measured_values(dev, wanted)).any(axis=1)
        todo = [g for g, miss in zip(wanted, missing, strict=True) if miss]
        values = measure(objective, dev, todo) if todo else np.zeros((0, len(objective.metrics)))
        if values is None:
            log.info("%s: nothing measures on this device; its front stays predicted", dev.name)
            if len(current):
                frames.append(current)
            metrics[f"measurements/{dev.name}"] = 0.0
            continue
        confirmed.append(dev.name)
        objective.record_measurements(dev, todo, np.asarray(values, dtype=np.float64))
        est = objective.estimate(dev, cands)  # (N, M): estimated error, measured hardware
        chosen, chosen_prefs = _choose(est, cands, origin, rays, dev, cfg, scalarise)
        rows, m = objective.judge(dev, chosen)
        for j, p in enumerate(prefs):
            rows.insert(3 + j, p, [float(q[j]) for q in chosen_prefs])
        for x, values in zip(objective.metrics, objective.measured_values(dev, chosen).T, strict=True):
            rows[f"measured_{x}"] = values
        rows["source"] = "shortlist"
        frames.append(rows)
        metrics.update(m)
        metrics[f"measurements/{dev.name}"] = float(len(todo))
        metrics[f"shortlist/{dev.name}"] = float(len(cands))
        log.info("%s: %d candidates, %d measured", dev.name, len(cands), len(todo))
    return pd.concat(frames, ignore_index=True), metrics, confirmed


def _front_rows(fronts: pd.DataFrame | None, name: str) -> pd.DataFrame:
    if fronts is None or fronts.empty:
        return pd.DataFrame()
    return fronts[fronts["device"] == name]


def _choose(
    est: np.ndarray,
    cands: Sequence[Genotype],
    origin: dict[Genotype, np.ndarray],
    rays: np.ndarray,
    dev: SearchDevice,
    cfg: ShortlistConfig,
    scalarise: Callable[..., torch.Tensor],
) -> tuple[list[Genotype], list[np.ndarray]]:
    """The confirmed front's genotypes and their preferences: per ray the best candidate (rule ``rays``), or
    every non-dominated candidate (rule ``all``); candidates at >= 90 % error never count."""
    valid = est[:, 0] < MODNAS_MAX_ERROR
    if not valid.any():  # nothing below the cut: the best-error candidate, so the device keeps a row
        best = cands[int(np.argmin(est[:, 0]))]
        return [best], [origin[best]]
    if cfg.front == "all":
        idx = np.flatnonzero(valid)
        idx = idx[pareto_mask(est[idx])]
        return [cands[i] for i in idx], [origin[cands[i]] for i in idx]
    z = _normalised(est, dev)
    chosen = []
    for ray in torch.as_tensor(rays, dtype=torch.float32):
        score = scalarise(z, ray.expand(len(z), -1)).masked_fill(torch.as_tensor(~valid), torch.inf)
        chosen.append(cands[int(torch.sort(score, stable=True).indices[0])])
    return chosen, list(rays)
