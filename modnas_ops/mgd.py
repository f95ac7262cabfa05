"""Multiple-gradient descent (MGD, Désidéri 2012; Sener & Koltun 2018): combine T per-task gradients into
one direction that does not increase any task's loss to first order.

The MGD direction is the min-norm element of the convex hull of the gradients,
``d = sum_t alpha_t g_t`` with ``alpha = argmin_{alpha in simplex} ||sum_t alpha_t g_t||^2``; at the optimum
``g_t . d >= ||d||^2 >= 0`` for every t, so stepping along ``-d`` decreases (or keeps) every loss.
T = 2 has a closed form; T > 2 uses Frank-Wolfe on the (T, T) Gram matrix (numpy on the host; the
Gram matrix itself is one torch matmul on the gradients' device).

Combination modes (registry, for ablations): ``mgd``, ``mean``, ``sequential`` (one step per gradient).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .registry import Registry

_EPS = 1e-12


def min_norm_2(g1: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
    """Closed form for two vectors: alpha (2,) minimising ||a g1 + (1 - a) g2||, a in [0, 1]."""
    diff = g1 - g2
    denom = diff.dot(diff)
    if denom <= _EPS:
        a = torch.tensor(0.5, dtype=g1.dtype, device=g1.device)
    else:
        a = ((g2 - g1).dot(g2) / denom).clamp(0.0, 1.0)
    return torch.stack([a, 1.0 - a])


def _min_norm_2_gram(gram: torch.Tensor) -> torch.Tensor:
    """min_norm_2 from the (2, 2) Gram matrix: a = (g2.g2 - g1.g2) / ||g1 - g2||^2, clamped to [0, 1]."""
    denom = gram[0, 0] + gram[1, 1] - 2.0 * gram[0, 1]
    if denom <= _EPS:
        a = torch.tensor(0.5, dtype=gram.dtype, device=gram.device)
    else:
        a = ((gram[1, 1] - gram[0, 1]) / denom).clamp(0.0, 1.0)
    return torch.stack([a, 1.0 - a])


def _line_search(v1v1: torch.Tensor, v1v2: torch.Tensor, v2v2: torch.Tensor) -> torch.Tensor:
    """gamma in [0, 1] minimising ||(1 - gamma) v1 + gamma v2||^2 given the three inner products."""
    denom = v1v1 + v2v2 - 2.0 * v1v2
    if denom <= _EPS:
        return torch.zeros((), dtype=v1v1.dtype, device=v1v1.device)
    return ((v1v1 - v1v2) / denom).clamp(0.0, 1.0)


def frank_wolfe(gram: torch.Tensor, max_iter: int = 250, tol: float = 1e-6) -> torch.Tensor:
    """alpha (T,) on the simplex minimising alpha^T G alpha for a PSD Gram matrix G (T, T).

    Frank-Wolfe with away steps (linear convergence on the simplex) and exact line search, started at the
    best of the uniform point and the closed-form optimum of every pair; stops when the Frank-Wolfe duality
    gap falls below ``tol`` times max |G| or after ``max_iter`` iterations. The (T, T) problem is solved in
    float64 numpy on the host (hundreds of tiny steps: torch's per-op overhead would dominate) and alpha is
    returned on the Gram matrix's device and dtype.
    """
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1] or gram.shape[0] < 1:
        raise ValueError(f"frank_wolfe: expected a square (T, T) Gram matrix, got {tuple(gram.shape)}")
    t = gram.shape[0]
    if t == 1:
        return torch.ones(1, dtype=gram.dtype, device=gram.device)
    g = gram.detach().double().cpu().numpy()  # (T, T)
    scale = max(float(np.abs(g).max()), _EPS)
    alpha = np.full(t, 1.0 / t)
    # best pair (closed form for every pair at once): min over i < j of ||(1 - g) v_i + g v_j||^2
    diag = np.diagonal(g)
    gii, gjj = diag[:, None], diag[None, :]  # (T, 1), (1, T)
    denom = gii + gjj - 2.0 * g  # (T, T)
    safe = denom > _EPS
    gamma = np.clip(np.where(safe, (gii - g) / np.where(safe, denom, 1.0), 0.0), 0.0, 1.0)
    value = (1 - gamma) ** 2 * gii + 2 * gamma * (1 - gamma) * g + gamma**2 * gjj  # (T, T)
    np.fill_diagonal(value, np.inf)
    i, j = divmod(int(np.argmin(value)), t)
    if value[i, j] < alpha @ g @ alpha:
        alpha = np.zeros(t)
        alpha[i] += 1 - gamma[i, j]
        alpha[j] += gamma[i, j]
    eye = np.eye(t)
    for _ in range(max_iter):
        grad = g @ alpha  # (T,) half the gradient of alpha^T G alpha
        current = float(alpha @ grad)
        k = int(np.argmin(grad))
        fw_gap = current - grad[k]
        if fw_gap <= tol * scale:
            break
        a = int(np.argmax(np.where(alpha > 0, grad, -np.inf)))
        away_gap = grad[a] - current
        if fw_gap >= away_gap:
            direction, gamma_max = eye[k] - alpha, 1.0
        else:  # move mass away from the worst vertex in the support
            direction = alpha - eye[a]
            gamma_max = float(alpha[a] / (1 - alpha[a])) if alpha[a] < 1 else 1.0
        curvature = float(direction @ g @ direction)
        if curvature <= _EPS:
            step = gamma_max
        else:
            step = float(np.clip(-(direction @ grad) / curvature, 0.0, gamma_max))
        alpha = np.clip(alpha + step * direction, 0.0, None)
        alpha = alpha / alpha.sum()
    return torch.as_tensor(alpha, dtype=gram.dtype, device=gram.device)


def min_norm_coefficients(grads: torch.Tensor, max_iter: int = 250, tol: float = 1e-6) -> torch.Tensor:
    """alpha (T,) on the simplex minimising ||sum_t alpha_t grads[t]|| for grads (T, P)."""
    if grads.ndim != 2 or grads.shape[0] < 1:
        raise ValueError(f"min_norm_coefficients: expected grads of shape (T, P), got {tuple(grads.shape)}")
    g = grads.double()  # the Gram matrix in float64: small differences of large inner products matter
    gram = g @ g.T  # (T, T): one pass over the P values
    alpha = _min_norm_2_gram(gram) if g.shape[0] == 2 else frank_wolfe(gram, max_iter=max_iter, tol=tol)
    return alpha.to(grads.dtype)


def normalise_rows(grads: torch.Tensor) -> torch.Tensor:
    """Each gradient scaled to unit L2 norm (zero rows stay zero)."""
    norms = grads.norm(dim=1, keepdim=True)  # (T, 1)
    return grads / norms.clamp_min(_EPS)


@dataclass(frozen=True)
class Combined:
    """Update directions to apply in order (one for mgd/mean, T for sequential) and the task weights."""

    directions: tuple[torch.Tensor, ...]  # each (P,)
    weights: torch.Tensor  # (T,)


COMBINERS: Registry[Callable[..., Combined]] = Registry("combine mode")
register_combiner = COMBINERS.register


def available_combiners() -> list[str]:
    return COMBINERS.names()


@register_combiner("mgd")
def _mgd(grads: torch.Tensor, max_iter: int, tol: float) -> Combined:
    alpha = min_norm_coefficients(grads, max_iter=max_iter, tol=tol)
    return Combined((alpha @ grads,), alpha)


@register_combiner("mean")
def _mean(grads: torch.Tensor, max_iter: int, tol: float) -> Combined:
    weights = torch.full((grads.shape[0],), 1.0 / grads.shape[0], dtype=grads.dtype, device=grads.device)
    return Combined((weights @ grads,), weights)


@register_combiner("sequential")
def _sequential(grads: torch.Tensor, max_iter: int, tol: float) -> Combined:
    weights = torch.ones(grads.shape[0], dtype=grads.dtype, device=grads.device)
    return Combined(tuple(grads.unbind(0)), weights)


def combine(
    grads: torch.Tensor | Sequence[torch.Tensor],
    mode: str = "mgd",
    normalize: bool = False,
    max_iter: int = 250,
    tol: float = 1e-6,
) -> Combined:
    """Combine per-task gradients (T, P) (or T flat tensors) into update direction(s).

    ``normalize`` scales every task gradient to unit norm first (the direction then mixes unit vectors; the
    sign of g_t . d, hence the descent property, is unchanged).
    """
    g = torch.stack([x.reshape(-1) for x in grads]) if not isinstance(grads, torch.Tensor) else grads
    if g.ndim != 2 or g.shape[0] < 1:
        raise ValueError(f"combine: expected T >= 1 gradients of P values, got shape {tuple(g.shape)}")
    if not torch.isfinite(g.sum()):  # NaN / inf anywhere propagates into the sum (one pass, no (T, P) mask)
        raise ValueError("combine: gradients contain NaN or inf (or overflow)")
    fn = COMBINERS.get(mode)
    g = g.detach()
    if normalize:
        g = normalise_rows(g)
    return fn(g, max_iter, tol)


__all__ = [
    "Combined",
    "available_combiners",
    "combine",
    "frank_wolfe",
    "min_norm_2",
    "min_norm_coefficients",
    "normalise_rows",
    "register_combiner",
]
