"""Fronts confirmed by measurement. After the search, per device a shortlist of candidates proposed by the
generator is measured on the device, and the front is built from the measured values: every measured candidate
that no other measured candidate dominates (``front: all``, the default), or per ray the best measured
candidate under the search's scalarisation, then the non-dominated set (``front: rays``; with a linear
scalarisation that keeps only the corners of the measured convex hull).

Candidates come from each ray's ``pool``: the generator's most probable architectures under H(r, d) (an exact
beam search over the factorised categorical). ``select`` chooses among them:

* ``rays``: per ray the best ``k`` of its pool by the *predicted* scalarised objective, taken rank by rank over
  the rays (in a spread order) up to the device's cap;
* ``layers``: the union of every ray's pool in predicted non-dominated layers (error and predicted hardware
  metrics), layer by layer; the layer the cap cuts is thinned by farthest-point sampling, so it stays spread.

The last ``adaptive`` candidates of a device are then chosen one at a time from what is left of the pools, each
after the previous measurement: the candidate whose *optimistic* prediction adds the most hypervolume to the
measured front. Optimistic: the predictor corrected by the median log-ratio measured / predicted of the
device's measurements so far, less ``optimism`` robust spreads (1.4826 MAD) of it, as an upper-confidence
acquisition does; it stops early when no candidate is predicted to add anything.

The device's current front is always among the candidates (measured even where it alone exceeds the cap), so
confirmation never discards what the search found. Measuring is the mode's (a table lookup in benchmark mode)
or a callable the entry point passes (onnxruntime through ``profiling/`` on this machine's configs); a device
nothing can measure on keeps its predicted front.
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
from .pareto import MODNAS_MAX_ERROR, hypervolume, non_dominated_sort, pareto_mask
from .sampling import top_k_genotypes
from .spaces import Genotype

log = logging.getLogger(__name__)

Measure = Callable[[ErrorObjective, SearchDevice, Sequence[Genotype]], "np.ndarray | None"]
# (objective, device, genotypes) -> (N, num_metrics) measured raw values (NaN: not measured) or None


@dataclass(frozen=True)
class ShortlistConfig:
    """The measured shortlist (``search.shortlist``)."""

    k: int = 0  # 0 = off (fronts from predicted values); select=rays: candidates per device and ray
    max_per_device: int = 0  # cap on a device's candidates, adaptive ones included (the search's own front
    # is measured even past it); 0 = no cap
    pool: int = 0  # per ray, the generator's `pool` most probable archs the candidates come from; 0 = k
    select: Literal["rays", "layers"] = "rays"  # rays: per ray the best k of its pool by predicted score;
    # layers: the union of the pools in predicted non-dominated layers (module docstring)
    adaptive: int = 0  # the last `adaptive` candidates of a device, one at a time by optimistic predicted
    # hypervolume gain over the measured front
    optimism: float = 1.0  # adaptive: robust spreads of the measured / predicted log-ratio subtracted
    front: Literal["all", "rays"] = "all"  # all: every measured candidate no other measured candidate
    # dominates; rays: per ray the best measured candidate, then the non-dominated set (under a linear
    # scalarisation only the convex hull's corners: measured on NB201, hv_ratio 0.97 -> 0.85)

    def __post_init__(self) -> None:
        check_at_least(self, 0, "k", "pool", "max_per_device", "adaptive", "optimism")
        if self.pool and self.pool < self.k:
            raise FieldError("pool", f"must be 0 or >= k ({self.k}), got {self.pool}")
        if self.front not in ("rays", "all"):
            raise FieldError("front", f"must be 'rays' or 'all', got {self.front!r}")
        if self.select not in ("rays", "layers"):
            raise FieldError("select", f"must be 'rays' or 'layers', got {self.select!r}")
        if self.max_per_device and self.adaptive > self.max_per_device:
            raise FieldError("adaptive", f"must be <= max_per_device ({self.max_per_device}), got {self.adaptive}")


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


def _pools(log_probs: torch.Tensor, size: int, objective: ErrorObjective) -> list[list[Genotype]]:
    """Per ray the generator's ``size`` most probable distinct architectures, most probable first."""
    return [top_k_genotypes(log_probs[j], size, objective.space) for j in range(len(log_probs))]


def _ray_candidates(
    objective: ErrorObjective,
    dev: SearchDevice,
    pools: list[list[Genotype]],
    rays: np.ndarray,
    k: int,
    scalarise: Callable[..., torch.Tensor],
) -> list[list[Genotype]]:
    """Per ray the k genotypes of its pool with the best predicted scalarised objective."""
    out = []
    for cands, ray in zip(pools, torch.as_tensor(rays, dtype=torch.float32), strict=True):
        if len(cands) > k:
            est = objective.estimate(dev, cands, measured=False)  # ranked by prediction only
            z = torch.as_tensor(dev.scaled(est, objective.metrics), dtype=torch.float32)  # (N, M)
            score = scalarise(z, ray.expand(len(cands), -1))
            score = score.masked_fill(torch.as_tensor(est[:, 0] >= MODNAS_MAX_ERROR), torch.inf)
            cands = [cands[i] for i in torch.sort(score, stable=True).indices[:k].tolist()]
        out.append(cands)
    return out


def _by_rays(
    objective: ErrorObjective,
    dev: SearchDevice,
    pools: list[list[Genotype]],
    rays: np.ndarray,
    cfg: ShortlistConfig,
    scalarise: Callable[..., torch.Tensor],
    origin: dict[Genotype, np.ndarray],
    limit: int,
) -> None:
    """``select: rays``: rank by rank over the rays (spread order) into ``origin`` up to ``limit`` (0: none)."""
    per_ray = _ray_candidates(objective, dev, pools, rays, cfg.k, scalarise)
    for rank in range(cfg.k):
        for j in spread_order(len(per_ray)):
            if rank < len(per_ray[j]) and (not limit or len(origin) < limit):
                origin.setdefault(per_ray[j][rank], rays[j])


def _union(
    pools: list[list[Genotype]], rays: np.ndarray, origin: dict[Genotype, np.ndarray]
) -> dict[Genotype, np.ndarray]:
    """Every pool's architectures not yet candidates -> the ray that ranks it highest (first such ray)."""
    best: dict[Genotype, tuple[int, int]] = {}
    for j, pool in enumerate(pools):
        for rank, g in enumerate(pool):
            if g not in origin and (g not in best or rank < best[g][0]):
                best[g] = (rank, j)
    return {g: rays[j] for g, (_, j) in best.items()}


def farthest_points(z: np.ndarray, n: int) -> list[int]:
    """``n`` row indices of ``z`` (N, M) spread over it: each objective's minimum first, then repeatedly the
    row farthest (Euclidean) from those chosen."""
    if n >= len(z):
        return list(range(len(z)))
    chosen = list(dict.fromkeys(int(i) for i in np.argmin(z, axis=0)))[:n]
    dist = np.min(np.linalg.norm(z[:, None, :] - z[chosen][None, :, :], axis=-1), axis=1)  # (N,)
    while len(chosen) < n:
        i = int(np.argmax(dist))
        chosen.append(i)
        dist = np.minimum(dist, np.linalg.norm(z - z[i], axis=1))
    return chosen


def _predicted(
    objective: ErrorObjective, dev: SearchDevice, genotypes: Sequence[Genotype]
) -> tuple[list[Genotype], np.ndarray]:
    """The genotypes predicted below the error cut and their predicted values (N, M), raw units."""
    if not genotypes:
        return [], np.zeros((0, 1 + len(objective.metrics)))
    est = objective.estimate(dev, genotypes, measured=False)
    keep = est[:, 0] < MODNAS_MAX_ERROR
    return [g for g, ok in zip(genotypes, keep, strict=True) if ok], est[keep]


def _by_layers(
    objective: ErrorObjective,
    dev: SearchDevice,
    pool: dict[Genotype, np.ndarray],
    origin: dict[Genotype, np.ndarray],
    limit: int,
) -> None:
    """``select: layers``: the pool's predicted non-dominated layers into ``origin`` up to ``limit``."""
    genotypes, est = _predicted(objective, dev, list(pool))
    z = dev.scaled(est, objective.metrics)  # (N, M)
    for layer in non_dominated_sort(z):
        room = limit - len(origin) if limit else len(layer)
        if room <= 0:
            return
        for i in layer[farthest_points(z[layer], room)]:
            origin.setdefault(genotypes[i], pool[genotypes[i]])


def _optimistic(objective: ErrorObjective, dev: SearchDevice, measured: Sequence[Genotype], est: np.ndarray,
                optimism: float) -> np.ndarray:  # fmt: skip
    """``est`` (N, M) predicted, its hardware columns corrected by the device's measured / predicted log-ratios
    so far: times exp(median - optimism * 1.4826 * MAD) per metric (no correction below 2 usable pairs)."""
    seen = objective.measured_values(dev, measured)  # (n, metrics)
    pred = objective.estimate(dev, measured, measured=False)[:, 1:]  # (n, metrics)
    out = est.copy()
    for j in range(seen.shape[1]):
        ok = np.isfinite(seen[:, j]) & (seen[:, j] > 0) & (pred[:, j] > 0)
        if ok.sum() < 2:
            continue
        r = np.log(seen[ok, j] / pred[ok, j])
        mid = float(np.median(r))
        spread = 1.4826 * float(np.median(np.abs(r - mid)))
        out[:, 1 + j] = est[:, 1 + j] * np.exp(mid - optimism * spread)
    return out


def _adaptive(
    objective: ErrorObjective,
    dev: SearchDevice,
    pool: dict[Genotype, np.ndarray],
    origin: dict[Genotype, np.ndarray],
    budget: int,
    cfg: ShortlistConfig,
    measure: Measure,
    measured: list[Genotype],
) -> int:
    """Up to ``budget`` more candidates, one at a time, each measured before the next is chosen (module
    docstring); returns how many were measured. ``measured``: every genotype measured on ``dev`` so far."""
    left, est = _predicted(objective, dev, [g for g in pool if g not in origin])
    ref = np.ones(est.shape[1])
    count = 0
    for _ in range(budget):
        if not left:
            break
        now = objective.estimate(dev, list(origin))  # measured hardware
        now = now[now[:, 0] < MODNAS_MAX_ERROR]
        front = dev.scaled(now, objective.metrics)
        front = front[pareto_mask(front)] if len(front) else front
        z = dev.scaled(_optimistic(objective, dev, measured, est, cfg.optimism), objective.metrics)  # (N, M)
        open_ = np.all(z < ref, axis=1) & ~np.any(np.all(front[None, :, :] <= z[:, None, :], axis=2), axis=1)
        if not open_.any():
            log.info("%s: no candidate left is predicted to add hypervolume; adaptive stops after %d", dev.name,
                     count)  # fmt: skip
            break
        base = hypervolume(front, ref)
        idx = np.flatnonzero(open_)
        gain = [hypervolume(np.vstack([front, z[i][None]]), ref) - base for i in idx]
        i = int(idx[int(np.argmax(gain))])
        g = left.pop(i)
        est = np.delete(est, i, axis=0)
        origin.setdefault(g, pool[g])
        if np.isnan(objective.measured_values(dev, [g])).any():
            values = measure(objective, dev, [g])
            objective.record_measurements(dev, [g], np.asarray(values, dtype=np.float64))
            measured.append(g)
            count += 1
    return count


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
    limit = cfg.max_per_device - cfg.adaptive if cfg.max_per_device else 0  # candidates before adaptive ones
    hypernetwork.eval()
    frames, metrics, confirmed = [], {}, []
    for dev in objective.devices:
        emb = torch.as_tensor(dev.embedding, dtype=torch.float32, device=device)
        with torch.no_grad():
            log_probs = torch.log_softmax(hypernetwork(r, emb.expand(len(r), -1)).double(), -1)  # (R, E, K)
        log_probs = log_probs.masked_fill(~hypernetwork.mask.to(log_probs.device), -torch.inf)
        origin: dict[Genotype, np.ndarray] = {}  # candidate -> the preference that proposed it
        current = _front_rows(fronts, dev.name)
        for rec in current[current["on_front"]].to_dict("records") if len(current) else []:
            g = objective.space.canonical(objective.space.from_string(str(rec["arch"])))
            origin.setdefault(g, np.asarray([float(rec[p]) for p in prefs]))
        pools = _pools(log_probs, cfg.pool or cfg.k, objective)
        if cfg.select == "rays":
            _by_rays(objective, dev, pools, rays, cfg, scalarise, origin, limit)
        else:
            _by_layers(objective, dev, _union(pools, rays, origin), origin, limit)
        wanted = list(dict.fromkeys([*origin, *objective.reference_genotypes(dev)]))  # + the HV's references
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
        count = len(todo)
        budget = min(cfg.adaptive, max(0, cfg.max_per_device - len(origin))) if cfg.max_per_device else cfg.adaptive
        if budget:
            count += _adaptive(objective, dev, _union(pools, rays, origin), origin, budget, cfg, measure, wanted)
        cands = list(origin)
        est = objective.estimate(dev, cands)  # (N, M): estimated error, measured hardware
        chosen, chosen_prefs = _choose(est, cands, origin, rays, dev, objective, cfg, scalarise)
        rows, m = objective.judge(dev, chosen)
        for j, p in enumerate(prefs):
            rows.insert(3 + j, p, [float(q[j]) for q in chosen_prefs])
        for x, col in zip(objective.metrics, objective.measured_values(dev, chosen).T, strict=True):
            rows[f"measured_{x}"] = col
        rows["source"] = "shortlist"
        frames.append(rows)
        metrics.update(m)
        metrics[f"measurements/{dev.name}"] = float(count)
        metrics[f"shortlist/{dev.name}"] = float(len(cands))
        log.info("%s: %d candidates, %d measured", dev.name, len(cands), count)
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
    objective: ErrorObjective,
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
    z = torch.as_tensor(dev.scaled(est, objective.metrics), dtype=torch.float32)  # (N, M)
    chosen = []
    for ray in torch.as_tensor(rays, dtype=torch.float32):
        score = scalarise(z, ray.expand(len(z), -1)).masked_fill(torch.as_tensor(~valid), torch.inf)
        chosen.append(cands[int(torch.sort(score, stable=True).indices[0])])
    return chosen, list(rays)
