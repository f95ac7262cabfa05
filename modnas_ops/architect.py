"""One MODNAS search step.

Hypernetwork step (on the valid split, or on the surrogate in benchmark mode), for each device t of a batch:

    r ~ Dirichlet(beta) (B, M)  ->  logits = H(r, d_t) (B, E, K)  ->  A = straight-through sample (B, E, K)
    L_t = [error(A), p(A, d_t)]  normalised per device with saved bounds  (B, M)
    loss_t = mean_b s(L_t, r) - lambda * mean_b cos(L_t, r)              (s: scalarisation, e.g. r . L)
             [- w_H * mean entropy(softmax(logits))]                      (optional exploration bonus)
    g_t = d loss_t / d theta_H   (torch.autograd.grad; everything stays on the graph)

Optionally (``finite_differences``) the gradient of L_t w.r.t. A is the exact change of each objective when
one edge switches op, instead of the first-order Jacobian (cheap objectives: surrogate + predictor).

then MGD combines the g_t (:mod:`modnas_ops.mgd`), the combined direction is written into the hypernetwork's
``.grad`` and its optimizer steps. The MetaPredictor p is frozen: gradients flow through it to the
architecture, never into its parameters.

Weight step (supernet mode, train split): sample architectures from H for random devices and preferences,
cross-entropy of the supernet on the train batch, step the supernet weights.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from .data import cross_entropy
from .distributed import DeviceShard
from .hypernetwork import HypernetworkBase
from .mgd import combine
from .registry import Registry
from .sampling import Sampler

log = logging.getLogger(__name__)


class ErrorTerm(Protocol):
    """Differentiable error objective: one-hot architectures (B, E, K) (+ a data batch) -> (B,)."""

    def __call__(self, arch: torch.Tensor, batch: Any = None) -> torch.Tensor: ...


class HardwarePredictor(Protocol):
    """The MetaPredictor contract: (arch (B, E, K), embedding (B, D)) -> (B, num_metrics)."""

    metrics: tuple[str, ...]

    def __call__(self, arch: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor: ...

    def parameters(self) -> Any: ...


@dataclass(frozen=True)
class DeviceBatch:
    """Devices of one step: names, embeddings (T, D) and objective bounds lo, hi (T, M) for the normalisation
    L_norm = (L - lo) / (hi - lo) of [error, hardware metrics...]."""

    names: tuple[str, ...]
    embeddings: torch.Tensor  # (T, D)
    lo: torch.Tensor  # (T, M)
    hi: torch.Tensor  # (T, M)

    def __post_init__(self) -> None:
        t = len(self.names)
        if t < 1:
            raise ValueError("DeviceBatch: no devices")
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != t:
            raise ValueError(f"DeviceBatch: embeddings must be ({t}, D), got {tuple(self.embeddings.shape)}")
        if self.lo.shape != self.hi.shape or self.lo.ndim != 2 or self.lo.shape[0] != t:
            raise ValueError(
                f"DeviceBatch: lo and hi must both be ({t}, M), "
                f"got {tuple(self.lo.shape)} and {tuple(self.hi.shape)}"
            )
        if not bool((self.hi > self.lo).all()):
            raise ValueError("DeviceBatch: every objective needs hi > lo")

    @property
    def num_objectives(self) -> int:
        return int(self.lo.shape[1])

    def subset(self, idx: Sequence[int]) -> DeviceBatch:
        i = torch.as_tensor(list(idx), dtype=torch.long)
        return DeviceBatch(tuple(self.names[j] for j in idx), self.embeddings[i], self.lo[i], self.hi[i])


# ---- scalarisations (registry) ---------------------------------------------------------------------------

Scalarisation = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SCALARISATIONS: Registry[Scalarisation] = Registry("scalarisation")
register_scalarisation = SCALARISATIONS.register


def available_scalarisations() -> list[str]:
    return SCALARISATIONS.names()


def get_scalarisation(name: str) -> Scalarisation:
    return SCALARISATIONS.get(name)


@register_scalarisation("linear")
def linear_scalarisation(losses: torch.Tensor, preference: torch.Tensor) -> torch.Tensor:
    """r . L per row: (B, M), (B, M) -> (B,)."""
    return (losses * preference).sum(-1)


@register_scalarisation("tchebycheff")
def tchebycheff_scalarisation(losses: torch.Tensor, preference: torch.Tensor) -> torch.Tensor:
    """max_i r_i L_i per row (ideal point 0 after normalisation); reaches non-convex parts of fronts."""
    return (losses * preference).amax(-1)


def cosine_similarity(losses: torch.Tensor, preference: torch.Tensor) -> torch.Tensor:
    """cos(L, r) per row (B,), differentiable in L."""
    return nn.functional.cosine_similarity(losses, preference, dim=-1, eps=1e-8)


# ---- the architect -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepStats:
    """Per-device diagnostics of one hypernetwork step (floats, for logging)."""

    loss: dict[str, float]
    objectives: dict[str, list[float]]  # device -> mean normalised [error, metrics...]
    weights: dict[str, float]  # device -> MGD coefficient
    grad_norm: dict[str, float]


def flat_grad(loss: torch.Tensor, params: Sequence[torch.Tensor], retain_graph: bool = False) -> torch.Tensor:
    """d loss / d params as one flat vector (zeros for parameters the loss does not reach)."""
    grads = torch.autograd.grad(loss, list(params), retain_graph=retain_graph, allow_unused=True)
    return torch.cat(
        [(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads, strict=True)]
    )


def write_flat_grad(params: Sequence[torch.Tensor], flat: torch.Tensor) -> None:
    """Set every ``p.grad`` from one flat vector (inverse of the concatenation in :func:`flat_grad`)."""
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).to(p.dtype).clone()
        offset += n
    if offset != flat.numel():
        raise ValueError(f"write_flat_grad: {flat.numel()} values for {offset} parameters")


def annealed_entropy_weight(weight: float, decay: float, progress: float) -> float:
    """The exploration bonus at ``progress`` in [0, 1] of the search: ``weight`` decayed linearly to 0 at
    ``progress == decay``. Without it the softmax of a logit can reach exactly 1.0 in float32 within a few
    hundred Adam steps, before the gradients of every device and preference have sorted out an edge; from
    then on every straight-through gradient of that edge is exactly 0 and the choice is frozen."""
    return float(weight) * max(0.0, 1.0 - float(progress) / float(decay))


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode and ``requires_grad=False`` on every parameter (gradients still flow through it)."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class _FiniteDifferences(torch.autograd.Function):
    """Objectives of one-hot architectures whose gradient is the exact one-edge change.

    forward(arch (B, E, K) one-hot, fn, mask (E, K)) = fn(arch, rows) (B, M), where ``fn(archs, rows)``
    evaluates the objectives of ``archs`` with the per-row context of ``rows``. Backward: dL/d arch[b, e, k] =
    sum_m dL/dL_m * (L_m(arch_b with edge e set to op k) - L_m(arch_b)), the exact effect of each single
    switch (0 for the selected op), in place of the first-order Jacobian, which can point the wrong way for
    a discrete jump. The B*E*K neighbours are evaluated once, in the forward; a masked (invalid) choice is
    never encoded: its "neighbour" is the architecture itself, so its entry is 0.
    """

    @staticmethod
    def forward(
        ctx: Any, arch: torch.Tensor, fn: Callable[..., torch.Tensor], mask: torch.Tensor
    ) -> torch.Tensor:
        b, e, k = arch.shape
        rows = torch.arange(b, device=arch.device)
        with torch.no_grad():
            values = fn(arch, rows)  # (B, M)
            eye = torch.eye(k, dtype=arch.dtype, device=arch.device)
            nb = (
                arch[:, None, None].expand(b, e, k, e, k).clone()
            )  # (B, E, K, E, K): [b, e, k] = arch_b, e->k
            idx = torch.arange(e, device=arch.device)
            nb[:, idx, :, idx, :] = eye.expand(e, b, k, k)  # indexed result is (E, B, K, K)
            invalid = ~mask.to(arch.device)  # (E, K)
            nb[:, invalid] = arch[:, None].expand(b, int(invalid.sum()), e, k)  # masked choices: no switch
            moved = fn(nb.reshape(b * e * k, e, k), rows.repeat_interleave(e * k))  # (B*E*K, M)
            delta = moved.view(b, e, k, -1) - values[:, None, None, :]  # (B, E, K, M)
        ctx.save_for_backward(delta)
        return values

    @staticmethod
    def backward(ctx: Any, grad_values: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (delta,) = ctx.saved_tensors
        return (delta * grad_values[:, None, None, :]).sum(-1), None, None  # (B, E, K); vmap-friendly


class Architect:
    """Hypernetwork (MGD over devices) and supernet-weight steps of MODNAS."""

    def __init__(
        self,
        hypernetwork: HypernetworkBase,
        sampler: Sampler,
        error_term: ErrorTerm,
        predictor: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        scalarisation: str = "linear",
        combine_mode: str = "mgd",
        normalize_grads: bool = True,
        cosine_weight: float = 0.0,
        dirichlet_beta: Sequence[float] | None = None,
        prefs_per_device: int = 1,
        mgd_max_iter: int = 250,
        mgd_tol: float = 1e-6,
        grad_clip: float | None = None,
        batched_grads: bool = True,
        entropy_weight: float = 0.0,
        finite_differences: bool = False,
        seed: int = 0,
    ) -> None:
        num_metrics = len(getattr(predictor, "metrics", ()))
        if num_metrics < 1:
            raise ValueError("Architect: the predictor must name at least one metric in `.metrics`")
        m = 1 + num_metrics
        if hypernetwork.num_objectives != m:
            raise ValueError(
                f"Architect: the hypernetwork takes {hypernetwork.num_objectives} objectives, but error + "
                f"{num_metrics} predictor metric(s) make {m}"
            )
        beta = np.ones(m) if dirichlet_beta is None else np.asarray(dirichlet_beta, dtype=np.float64)
        if beta.shape != (m,) or not np.all(beta > 0):
            raise ValueError(f"Architect: dirichlet_beta needs {m} positive values, got {beta.tolist()}")
        if prefs_per_device < 1:
            raise ValueError(f"Architect: prefs_per_device must be >= 1, got {prefs_per_device}")
        if cosine_weight < 0:
            raise ValueError(f"Architect: cosine_weight must be >= 0, got {cosine_weight}")
        self.hypernetwork = hypernetwork
        self.sampler = sampler
        self.error_term = error_term
        self.predictor = freeze(predictor)
        self.optimizer = optimizer
        self.scalarise = get_scalarisation(scalarisation)
        self.combine_mode = combine_mode
        combine(torch.zeros(1, 1), mode=combine_mode)  # fail early on an unknown mode
        self.normalize_grads = bool(normalize_grads)
        self.cosine_weight = float(cosine_weight)
        self.beta = beta
        self.prefs_per_device = int(prefs_per_device)
        self.mgd_max_iter = int(mgd_max_iter)
        self.mgd_tol = float(mgd_tol)
        self.grad_clip = grad_clip
        self.batched_grads = bool(batched_grads)
        self.entropy_weight = float(entropy_weight)  # exploration bonus; the search loop anneals it
        self.finite_differences = bool(finite_differences)
        self.num_objectives = m
        self.rng = np.random.default_rng(seed)
        # on the logits' device: multinomial / exponential_ take a generator of the tensor's own device
        self.generator = torch.Generator(device=hypernetwork.mask.device).manual_seed(seed)

    # ---- pieces --------------------------------------------------------------------------------------
    @property
    def params(self) -> list[torch.Tensor]:
        return [p for p in self.hypernetwork.parameters() if p.requires_grad]

    def sample_preferences(self, n: int, device: torch.device | None = None) -> torch.Tensor:
        """(n, M) preferences ~ Dirichlet(beta)."""
        return torch.as_tensor(self.rng.dirichlet(self.beta, size=n), dtype=torch.float32, device=device)

    def sample_architectures(
        self, preference: torch.Tensor, embedding: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, E, K), one-hot straight-through samples (B, E, K))."""
        logits = self.hypernetwork(preference, embedding)
        return logits, self.sampler(logits, generator=self.generator)

    def objectives(
        self,
        arch: torch.Tensor,
        embedding: torch.Tensor,
        lo: torch.Tensor,
        hi: torch.Tensor,
        batch: Any = None,
    ) -> torch.Tensor:
        """Normalised [error, metrics...] (B, M) of archs (B, E, K) on one device, embeddings (B, D).

        With ``finite_differences`` the values are the same, but the gradient w.r.t. ``arch`` is the exact
        change of each objective when one edge switches op (see :class:`_FiniteDifferences`)."""
        if self.finite_differences:

            def fn(a: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
                return self._objectives(a, embedding[rows], lo[rows], hi[rows], batch)

            return _FiniteDifferences.apply(arch, fn, self.hypernetwork.mask)
        return self._objectives(arch, embedding, lo, hi, batch)

    def _objectives(
        self, arch: torch.Tensor, embedding: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, batch: Any
    ) -> torch.Tensor:
        err = self.error_term(arch, batch)  # (B,)
        hw = self.predictor(arch, embedding)  # (B, num_metrics)
        if err.shape != (arch.shape[0],) or hw.shape != (arch.shape[0], self.num_objectives - 1):
            raise ValueError(
                f"Architect: error term gave {tuple(err.shape)} and predictor {tuple(hw.shape)} for "
                f"{arch.shape[0]} architectures; expected ({arch.shape[0]},) and "
                f"({arch.shape[0]}, {self.num_objectives - 1})"
            )
        raw = torch.cat([err[:, None], hw], dim=1)  # (B, M)
        return (raw - lo) / (hi - lo)

    def device_losses(self, devices: DeviceBatch, batch: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(losses (T,), normalised objectives (T, B, M)) of every device in one batched forward, on the
        autograd graph; B = ``prefs_per_device`` preferences (and sampled architectures) per device."""
        losses, objs, _ = self._losses(devices, batch, split=False)
        return losses, objs

    def _losses(
        self, devices: DeviceBatch, batch: Any, split: bool, rows: Sequence[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(losses (T,), objectives (T, B, M), surrogates (T,)). ``split``: the objectives are evaluated on a
        detached copy of the sampled architectures and their gradient w.r.t. it taken in ONE backward (each
        row's objectives depend on that row's architecture only, so the gradient of the sum holds every
        row's own); surrogate_i = <arch_i, dL_i/d arch_i> + the terms of L_i on the logits has L_i's gradient
        w.r.t. the hypernetwork, and its per-device backward never re-enters the error term's graph (a
        per-device backward through a batched graph would run every device's supernet graph again, with
        zero gradients: T x the cost). Without ``split`` the surrogates are the losses.
        ``rows``: evaluate only these devices (a rank's shard), after drawing every device's samples, so the
        random streams advance as for all T; the outputs then have len(rows) rows."""
        t, b = len(devices.names), self.prefs_per_device
        r = self.sample_preferences(t * b, devices.embeddings.device)  # (T*B, M)
        emb = devices.embeddings.repeat_interleave(b, dim=0)  # (T*B, D)
        lo = devices.lo.repeat_interleave(b, dim=0)  # (T*B, M)
        hi = devices.hi.repeat_interleave(b, dim=0)  # (T*B, M)
        logits, arch = self.sample_architectures(r, emb)  # (T*B, E, K) each
        if rows is not None:  # this rank's devices only: (T_r*B, ...)
            keep = torch.as_tensor([i * b + j for i in rows for j in range(b)], device=r.device)
            r, emb, lo, hi, logits, arch = (x[keep] for x in (r, emb, lo, hi, logits, arch))
            t = len(rows)
        leaf = arch.detach().requires_grad_() if split else arch
        objs = self.objectives(leaf, emb, lo, hi, batch)  # (T*B, M)
        per_row = self.scalarise(objs, r)  # (T*B,)
        if self.cosine_weight > 0:
            per_row = per_row - self.cosine_weight * cosine_similarity(objs, r)
        direct = torch.zeros_like(per_row)  # (T*B,) terms of the loss on the logits themselves
        if self.entropy_weight > 0:
            logp = torch.log_softmax(logits, dim=-1)
            entropy = -(logp.exp() * logp).sum(-1).mean(-1)  # (T*B,) mean over edges
            direct = direct - self.entropy_weight * entropy
        losses = (per_row + direct).view(t, b).mean(1)  # (T,)
        if not split:
            return losses, objs.view(t, b, -1), losses
        (g_arch,) = torch.autograd.grad(per_row.view(t, b).mean(1).sum(), leaf)  # (T*B, E, K)
        surrogate = ((arch * g_arch).sum((1, 2)) * b + direct).view(t, b).mean(1)  # (T,)
        return losses.detach(), objs.detach().view(t, b, -1), surrogate

    def per_device_gradients(self, losses: torch.Tensor) -> torch.Tensor:
        """(T, P) gradients of each loss w.r.t. the hypernetwork parameters: one vectorised backward
        (``is_grads_batched``) when ``batched_grads``, else one ``torch.autograd.grad`` per device."""
        params = self.params
        t = len(losses)
        if self.batched_grads and t > 1:
            eye = torch.eye(t, dtype=losses.dtype, device=losses.device)
            grads = torch.autograd.grad(
                losses, params, grad_outputs=eye, is_grads_batched=True, allow_unused=True
            )
            return torch.cat(
                [
                    torch.zeros(t, p.numel(), dtype=p.dtype, device=p.device)
                    if g is None
                    else g.reshape(t, -1)
                    for p, g in zip(params, grads, strict=True)
                ],
                dim=1,
            )
        return torch.stack([flat_grad(losses[i], params, retain_graph=i < t - 1) for i in range(t)])

    # ---- steps ---------------------------------------------------------------------------------------
    def hypernet_step(self, devices: DeviceBatch, batch: Any = None, shard: DeviceShard | None = None) -> StepStats:
        """One MGD step of the hypernetwork over ``devices`` (error term evaluated on ``batch``); with
        ``shard`` this rank evaluates its devices and all-gathers the rest (:mod:`.distributed`)."""
        if devices.num_objectives != self.num_objectives:
            raise ValueError(
                f"Architect: devices carry bounds for {devices.num_objectives} objectives, "
                f"expected {self.num_objectives}"
            )
        self.hypernetwork.train()
        params = self.params
        # batched_grads: one vectorised backward of the whole graph already; else split at the architecture
        rows = None if shard is None else shard.devices(len(devices.names))
        losses, objs, surrogate = self._losses(devices, batch, split=not self.batched_grads, rows=rows)
        g = self.per_device_gradients(surrogate)  # (T, P); a rank's (T_r, P)
        if shard is not None:  # every device's gradient, loss and objectives, in device order, on every rank
            g, losses, objs = shard.gather(g, losses.detach(), objs.detach(), num_devices=len(devices.names))
        result = combine(
            g,
            mode=self.combine_mode,
            normalize=self.normalize_grads,
            max_iter=self.mgd_max_iter,
            tol=self.mgd_tol,
        )
        for direction in result.directions:
            self.optimizer.zero_grad(set_to_none=True)
            write_flat_grad(params, direction)
            if self.grad_clip:
                nn.utils.clip_grad_norm_(params, self.grad_clip)
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        names = devices.names
        mean_objs = objs.detach().mean(1)  # (T, M)
        return StepStats(
            loss={n: float(x) for n, x in zip(names, losses.detach(), strict=True)},
            objectives={n: [float(v) for v in row] for n, row in zip(names, mean_objs, strict=True)},
            weights={n: float(w) for n, w in zip(names, result.weights, strict=True)},
            grad_norm={n: float(x) for n, x in zip(names, g.norm(dim=1), strict=True)},
        )

    def weight_step(
        self,
        supernet: nn.Module,
        weight_optimizer: torch.optim.Optimizer,
        x: torch.Tensor,
        y: torch.Tensor,
        devices: DeviceBatch,
        num_archs: int = 1,
        grad_clip: float | None = 5.0,
        uniform_fraction: float = 0.0,
    ) -> float:
        """Mean cross-entropy on the train batch (x, y) of ``num_archs`` architectures sampled from H for
        random devices and preferences (each replaced, with probability ``uniform_fraction``, by a uniformly
        random one, so every op keeps training); one step of the supernet weights. Returns the mean loss."""
        supernet.train()
        weight_optimizer.zero_grad(set_to_none=True)
        idx = self.rng.integers(0, len(devices.names), size=num_archs)
        with torch.no_grad():
            r = self.sample_preferences(num_archs, devices.embeddings.device)
            logits = self.hypernetwork(r, devices.embeddings[torch.as_tensor(idx)])  # (A, E, K)
            uniform = torch.as_tensor(self.rng.random(num_archs) < uniform_fraction, device=logits.device)
            logits = torch.where(uniform[:, None, None], torch.zeros_like(logits), logits)
            arch = self.sampler(logits, generator=self.generator)  # (A, E, K) exactly one-hot
        total = 0.0
        for a in arch:
            loss = cross_entropy(supernet(x, a), y) / num_archs
            loss.backward()
            total += float(loss.detach())
        if grad_clip:
            nn.utils.clip_grad_norm_(supernet.parameters(), grad_clip)
        weight_optimizer.step()
        weight_optimizer.zero_grad(set_to_none=True)
        return total

    # ---- evaluation ----------------------------------------------------------------------------------
    @torch.no_grad()
    def argmax_architectures(self, preferences: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """(R, E) op indices: argmax of H(r, d) for every preference row (R, M) and one embedding (D,)."""
        self.hypernetwork.eval()
        logits = self.hypernetwork(preferences, embedding.expand(len(preferences), -1))
        return logits.argmax(-1)

    # ---- checkpoint state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "hypernetwork": self.hypernetwork.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": _rng_state(self.rng),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.hypernetwork.load_state_dict(state["hypernetwork"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = _restore_rng_state(state["rng"])
        self.generator.set_state(state["generator"])


def _rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """numpy PCG64 state with its 128-bit integers as strings (loadable with ``weights_only=True``)."""
    s = rng.bit_generator.state
    return {
        "bit_generator": s["bit_generator"],
        "state": {k: str(v) for k, v in s["state"].items()},
        "has_uint32": int(s["has_uint32"]),
        "uinteger": int(s["uinteger"]),
    }


def _restore_rng_state(d: dict[str, Any]) -> dict[str, Any]:
    return {**d, "state": {k: int(v) for k, v in d["state"].items()}}


__all__ = [
    "Architect",
    "DeviceBatch",
    "ErrorTerm",
    "HardwarePredictor",
    "StepStats",
    "annealed_entropy_weight",
    "available_scalarisations",
    "cosine_similarity",
    "flat_grad",
    "freeze",
    "get_scalarisation",
    "linear_scalarisation",
    "register_scalarisation",
    "tchebycheff_scalarisation",
    "write_flat_grad",
]
