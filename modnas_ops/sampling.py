"""Straight-through samplers: logits (..., K) -> one discrete one-hot sample per row whose gradient reaches
the logits.

The forward VALUE of every sample is exactly one-hot (0.0 / 1.0), so a supernet fed with it computes only
the selected op of each edge; only the backward pass differs between estimators.

- ``reinmax`` (default): ReinMax, the second-order straight-through estimator of Liu et al. (NeurIPS 2023,
  "Bridging Discrete and Backpropagation: Straight-Through and Beyond"), Algorithm 2::

      pi0 = softmax(theta);  D ~ Cat(pi0)
      pi1 = (D + softmax(theta / tau)) / 2
      pi1 = softmax(stopgrad(ln pi1 - theta) + theta)        # value pi1, Jacobian of a softmax at pi1
      pi2 = 2 * pi1 - pi0 / 2
      D   = pi2 - stopgrad(pi2) + D

  i.e. dL/dtheta = 2 J(pi1) dL/dD - J(pi0) dL/dD / 2 with J(p) = diag(p) - p p^T. For tau = 1 its
  expectation over D equals the exact gradient of E[f(D)] for every quadratic f (tests check this).
- ``gdas``: Gumbel-softmax straight-through (Dong & Yang, CVPR 2019): D = one_hot(argmax(theta + g)),
  gradient of softmax((theta + g) / tau); tau anneals linearly from ``tau_max`` to ``tau_min`` over epochs.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from .registry import Registry

if TYPE_CHECKING:
    from .spaces import Genotype, SearchSpace

MAX_BEAM = 4096  # widest beam tried when canonical duplicates thin the k most probable genotypes

SAMPLERS: Registry[type[Sampler]] = Registry("sampler")


def _softmax_jvp_t(p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """J(p)^T g for J(p) = diag(p) - p p^T (the softmax Jacobian at value p), along the last dim."""
    return p * (g - (p * g).sum(dim=-1, keepdim=True))


def _sample_one_hot(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """(N, K) exactly one-hot rows drawn from Cat(probs)."""
    idx = torch.multinomial(probs, num_samples=1, replacement=True, generator=generator)  # (N, 1)
    return torch.zeros_like(probs).scatter_(-1, idx, 1.0)


class _ReinMaxFunction(torch.autograd.Function):
    """Forward: an exact one-hot sample of Cat(softmax(logits)); backward: ReinMax (Algorithm 2)."""

    @staticmethod
    def forward(
        ctx: Any, logits: torch.Tensor, tau: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        pi0 = torch.softmax(logits, dim=-1)  # (N, K)
        sample = _sample_one_hot(pi0, generator)  # (N, K)
        ctx.save_for_backward(logits, pi0, sample)
        ctx.tau = tau
        return sample

    @staticmethod
    def backward(ctx: Any, grad_sample: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        logits, pi0, sample = ctx.saved_tensors
        pi1 = 0.5 * (sample + torch.softmax(logits / ctx.tau, dim=-1))  # (N, K)
        grad = 2.0 * _softmax_jvp_t(pi1, grad_sample) - 0.5 * _softmax_jvp_t(pi0, grad_sample)
        return grad, None, None


class Sampler(abc.ABC):
    """Draws one exactly one-hot sample per row of ``logits`` (..., K); differentiable w.r.t. the logits."""

    name: ClassVar[str]

    @abc.abstractmethod
    def sample(self, logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One-hot tensor of the shape of ``logits`` (values exactly 0/1, straight-through gradient)."""

    def __call__(self, logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if logits.ndim < 1 or logits.shape[-1] < 1:
            raise ValueError(
                f"{self.name}: logits need a last (ops) dimension, got shape {tuple(logits.shape)}"
            )
        if not torch.isfinite(logits).all():
            raise ValueError(f"{self.name}: logits contain NaN or inf")
        return self.sample(logits, generator)

    def set_epoch(self, epoch: int, num_epochs: int) -> None:  # noqa: B027 - optional hook
        """Update schedules (temperatures) at the start of ``epoch`` of ``num_epochs``; default: nothing."""

    def state(self) -> dict[str, float]:
        """Current schedule values, for logging."""
        return {}


def register_sampler(cls: type[Sampler]) -> type[Sampler]:
    return SAMPLERS.register(cls.name)(cls)


def available_samplers() -> list[str]:
    return SAMPLERS.names()


def create_sampler(name: str, **kwargs: Any) -> Sampler:
    """A registered sampler by name (``reinmax``, ``gdas``) with its keyword arguments."""
    return SAMPLERS.get(name)(**kwargs)


@register_sampler
class ReinMaxSampler(Sampler):
    """ReinMax straight-through estimator (second order; ``tau`` only enters the backward pass)."""

    name = "reinmax"

    def __init__(self, tau: float = 1.0) -> None:
        if not tau > 0:
            raise ValueError(f"reinmax: tau must be > 0, got {tau}")
        self.tau = float(tau)

    def sample(self, logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        flat = logits.reshape(-1, logits.shape[-1])  # (N, K)
        return _ReinMaxFunction.apply(flat, self.tau, generator).reshape(logits.shape)

    def state(self) -> dict[str, float]:
        return {"tau": self.tau}


@register_sampler
class GDASSampler(Sampler):
    """Gumbel-softmax straight-through with a temperature annealed linearly from tau_max to tau_min."""

    name = "gdas"

    def __init__(self, tau_max: float = 10.0, tau_min: float = 0.1) -> None:
        if not 0 < tau_min <= tau_max:
            raise ValueError(f"gdas: need 0 < tau_min <= tau_max, got tau_min={tau_min}, tau_max={tau_max}")
        self.tau_max = float(tau_max)
        self.tau_min = float(tau_min)
        self.tau = float(tau_max)

    def set_epoch(self, epoch: int, num_epochs: int) -> None:
        if num_epochs < 1 or not 0 <= epoch < num_epochs:
            raise ValueError(f"gdas: epoch {epoch} outside 0..{num_epochs - 1}")
        frac = epoch / (num_epochs - 1) if num_epochs > 1 else 1.0
        self.tau = self.tau_max - (self.tau_max - self.tau_min) * frac

    def sample(self, logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        u = torch.empty_like(logits).exponential_(generator=generator)
        gumbel = -u.log()  # (..., K) standard Gumbel noise
        soft = torch.softmax((logits + gumbel) / self.tau, dim=-1)
        hard = torch.zeros_like(soft).scatter_(-1, soft.argmax(dim=-1, keepdim=True), 1.0)
        # hard + (soft - soft) keeps the value exactly one-hot (x - x == 0 in floating point).
        return hard + (soft - soft.detach())

    def state(self) -> dict[str, float]:
        return {"tau": self.tau}


__all__ = [
    "GDASSampler",
    "ReinMaxSampler",
    "Sampler",
    "available_samplers",
    "create_sampler",
    "register_sampler",
    "top_k_genotypes",
]


# ---- the k most probable architectures -------------------------------------------------------------------


def top_k_genotypes(log_probs: torch.Tensor, k: int, space: SearchSpace | None = None) -> list[Genotype]:
    """The ``k`` most probable genotypes, most probable first, of a factorised categorical with
    log-probabilities (E, K) (-inf: invalid choice). Exact beam search: every prefix of a top-k sequence is
    a top-k prefix. With ``space``, genotypes are canonicalised and duplicates dropped (the beam widens until
    k distinct ones are found or :data:`MAX_BEAM` is reached); ties keep the lower choice index."""
    width = k
    while True:
        out: list[Genotype] = []
        seen: set[Genotype] = set()
        for g in _beam(log_probs, width):
            c = space.canonical(g) if space is not None else g
            if c not in seen:
                seen.add(c)
                out.append(c)
            if len(out) == k:
                return out
        if space is None or width >= MAX_BEAM or len(out) == k:
            return out
        width *= 4


def _beam(log_probs: torch.Tensor, width: int) -> list[Genotype]:
    lp = log_probs.detach().double().cpu()  # (E, K)
    num_choices = lp.shape[1]
    scores = torch.zeros(1, dtype=torch.float64)  # (W,)
    seqs = torch.zeros(1, 0, dtype=torch.long)  # (W, e)
    for e in range(lp.shape[0]):
        flat = (scores[:, None] + lp[e][None, :]).reshape(-1)  # (W * K,)
        order = torch.sort(flat, descending=True, stable=True).indices
        order = order[torch.isfinite(flat[order])][:width]
        seqs = torch.cat([seqs[order // num_choices], (order % num_choices)[:, None]], dim=1)
        scores = flat[order]
    return [tuple(int(x) for x in row) for row in seqs.tolist()]
