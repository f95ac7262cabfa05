"""Benchmark-mode error objective: a differentiable accuracy surrogate learned from a counted budget of
benchmark queries, and the adaptive choice of which architectures to query.

:class:`ErrorSurrogate` maps one-hot architectures (B, E, K) to error in percent:
``exp(mean_m MLP_m(x) + k(x, X_q) alpha)`` -- an ensemble of MLPs fitted to log(error) of the queried
architectures X_q, plus a kernel interpolation of the ensemble's residuals at X_q
(k(x, x') = exp(-gamma (E - x . x')), i.e. exp(-gamma * Hamming distance) for one-hot rows), so the
surrogate reproduces every queried error (up to the nugget) and stays smooth and differentiable.

:class:`QueryOracle` hands out true errors of a table and counts unique queries against a budget.
:func:`pareto_relevant` ranks candidates by predicted non-dominated rank over many devices: the adaptive
acquisition spends the budget where fronts live.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .atomic import atomic_torch_save
from .pareto import non_dominated_sort

log = logging.getLogger(__name__)


def _mlp(in_features: int, hidden: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_features
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


class ErrorSurrogate(nn.Module):
    """Differentiable error (percent) of architectures (B, E, K); see the module docstring."""

    def __init__(
        self,
        shape: tuple[int, int],
        num_models: int = 3,
        hidden: int = 128,
        depth: int = 2,
        gamma: float = 3.0,
        nugget: float = 1e-3,
    ) -> None:
        super().__init__()
        e, k = (int(x) for x in shape)
        if e < 1 or k < 1 or num_models < 1 or hidden < 1 or depth < 1:
            raise ValueError(
                f"ErrorSurrogate: shape, num_models, hidden and depth must be positive, got {shape}, "
                f"{num_models}, {hidden}, {depth}"
            )
        if gamma <= 0 or nugget <= 0:
            raise ValueError(f"ErrorSurrogate: gamma and nugget must be > 0, got {gamma}, {nugget}")
        self.shape = (e, k)
        self.num_models, self.hidden, self.depth = int(num_models), int(hidden), int(depth)
        self.gamma, self.nugget = float(gamma), float(nugget)
        self.models = nn.ModuleList(_mlp(e * k, self.hidden, self.depth) for _ in range(self.num_models))
        self.register_buffer("y_mean", torch.zeros(()))
        self.register_buffer("y_std", torch.ones(()))
        self.register_buffer("queried", torch.zeros(0, e * k))  # (N, E*K) one-hot rows
        self.register_buffer("alpha", torch.zeros(0))  # (N,) residual interpolation weights

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "num_models": self.num_models,
            "hidden": self.hidden,
            "depth": self.depth,
            "gamma": self.gamma,
            "nugget": self.nugget,
        }

    def _check(self, arch: torch.Tensor) -> torch.Tensor:
        if arch.ndim != 3 or tuple(arch.shape[1:]) != self.shape:
            raise ValueError(
                f"ErrorSurrogate: expected architectures (B, *{self.shape}), got {tuple(arch.shape)}"
            )
        return arch.flatten(1)  # (B, E*K)

    def ensemble(self, x: torch.Tensor) -> torch.Tensor:
        """(M, B) standardised log-error predictions of every member for flat one-hots x (B, E*K)."""
        return torch.stack([m(x).squeeze(-1) for m in self.models])

    def _kernel(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        e = self.shape[0]
        return torch.exp(-self.gamma * (e - x @ y.T))

    def log_error(self, arch: torch.Tensor) -> torch.Tensor:
        """(B,) log(error in percent)."""
        x = self._check(arch)
        z = self.ensemble(x).mean(0)  # (B,) standardised
        if len(self.alpha):
            z = z + self._kernel(x, self.queried) @ self.alpha
        return z * self.y_std + self.y_mean

    def forward(self, arch: torch.Tensor, batch: Any = None) -> torch.Tensor:
        """(B,) error in percent (``batch`` is ignored: the architect's error-term signature)."""
        return torch.exp(self.log_error(arch))

    def spread(self, arch: torch.Tensor) -> torch.Tensor:
        """(B,) ensemble standard deviation of log(error) (an uncertainty proxy)."""
        with torch.no_grad():
            return self.ensemble(self._check(arch)).std(0) * self.y_std

    def fit(
        self,
        arch: torch.Tensor,
        error: torch.Tensor,
        epochs: int = 400,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        seed: int = 0,
    ) -> ErrorSurrogate:
        """Fit the ensemble (full batch, Adam, cosine schedule) and the residual interpolation on archs
        (N, E, K) with errors (N,) in percent (> 0). Returns self."""
        x = self._check(arch).detach().float()
        y = torch.as_tensor(error, dtype=torch.float32).reshape(-1)
        if len(y) != len(x) or len(y) < 2:
            raise ValueError(
                f"ErrorSurrogate.fit: need >= 2 archs with one error each, got {len(x)}, {len(y)}"
            )
        if not bool(torch.isfinite(y).all()) or not bool((y > 0).all()):
            raise ValueError("ErrorSurrogate.fit: errors must be finite and > 0 (percent)")
        t = torch.log(y)
        self.y_mean.fill_(float(t.mean()))
        self.y_std.fill_(float(t.std().clamp_min(1e-6)))
        target = (t - self.y_mean) / self.y_std
        gen = torch.Generator().manual_seed(seed)
        for member in self.models:
            for p in member.parameters():  # a fresh, seeded initialisation per fit
                if p.ndim > 1:
                    nn.init.kaiming_uniform_(p, a=5**0.5, generator=gen)
                else:
                    nn.init.uniform_(p, -0.05, 0.05, generator=gen)
            opt = torch.optim.Adam(member.parameters(), lr=lr, weight_decay=weight_decay)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
            member.train()
            for _ in range(epochs):
                opt.zero_grad(set_to_none=True)
                loss = nn.functional.mse_loss(member(x).squeeze(-1), target)
                loss.backward()
                opt.step()
                sched.step()
            member.eval()
        with torch.no_grad():
            resid = (target - self.ensemble(x).mean(0)).double()  # (N,)
            xd = x.double()
            gram = self._kernel(xd, xd) + self.nugget * torch.eye(len(x), dtype=torch.float64)
            alpha = torch.linalg.solve(gram, resid)
        self.queried = x.clone()
        self.alpha = alpha.float()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    # ---- persistence (the generator's error-model contract: save(path) / load(path)) -------------------
    def to_state(self) -> dict[str, Any]:
        """``{"hyperparameters": ..., "state_dict": ...}``: what :meth:`save` writes and :meth:`from_state` reads."""
        return {"hyperparameters": self.hyperparameters(), "state_dict": self.state_dict()}

    def save(self, path: str | Path) -> None:
        atomic_torch_save(self.to_state(), path)

    @classmethod
    def load(cls, path: str | Path) -> ErrorSurrogate:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or not {"hyperparameters", "state_dict"} <= set(payload):
            raise ValueError(f"{path}: not a saved ErrorSurrogate")
        return cls.from_state(payload)

    @classmethod
    def from_state(cls, payload: dict[str, Any]) -> ErrorSurrogate:
        """The surrogate of ``{"hyperparameters": ..., "state_dict": ...}`` (what :meth:`save` writes)."""
        hp = dict(payload["hyperparameters"])
        hp["shape"] = tuple(hp["shape"])
        model = cls(**hp)
        state = payload["state_dict"]
        model.queried = torch.zeros_like(state["queried"])
        model.alpha = torch.zeros_like(state["alpha"])
        model.load_state_dict(state)
        for p in model.parameters():
            p.requires_grad_(False)
        return model.eval()


class BudgetExceeded(RuntimeError):
    """More unique architectures were queried than the budget allows."""


class QueryOracle:
    """True errors of a table (percent, indexed by row), handed out against a budget of unique queries."""

    def __init__(self, error: Sequence[float] | np.ndarray, budget: int) -> None:
        self._error = np.asarray(error, dtype=np.float64)
        if self._error.ndim != 1 or len(self._error) == 0:
            raise ValueError(
                f"QueryOracle: error must be a non-empty (N,) array, got shape {self._error.shape}"
            )
        if budget < 1:
            raise ValueError(f"QueryOracle: budget must be >= 1, got {budget}")
        self.budget = int(budget)
        self._seen: dict[int, float] = {}

    @property
    def num_queries(self) -> int:
        """Unique architectures queried so far."""
        return len(self._seen)

    @property
    def remaining(self) -> int:
        return self.budget - self.num_queries

    @property
    def queried(self) -> np.ndarray:
        """(Q,) queried rows, in query order."""
        return np.fromiter(self._seen, dtype=np.int64, count=len(self._seen))

    @property
    def values(self) -> np.ndarray:
        """(Q,) their errors (percent)."""
        return np.fromiter(self._seen.values(), dtype=np.float64, count=len(self._seen))

    def query(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Errors of ``rows`` (repeats are free); raises :class:`BudgetExceeded` past the budget."""
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self._error)):
            raise ValueError(f"QueryOracle: rows must lie in 0..{len(self._error) - 1}")
        new = {int(i) for i in idx if int(i) not in self._seen}
        if len(new) > self.remaining:
            raise BudgetExceeded(
                f"query of {len(new)} new architectures exceeds the budget "
                f"({self.num_queries}/{self.budget} used)"
            )
        for i in idx:
            self._seen.setdefault(int(i), float(self._error[i]))
        return self._error[idx].copy()

    def known(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Errors of ``rows`` already queried, NaN for the rest (free: no budget spent)."""
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        return np.asarray([self._seen.get(int(i), np.nan) for i in idx], dtype=np.float64)


def pareto_relevant(
    error: np.ndarray, costs: Sequence[np.ndarray], max_fronts: int = 3, exclude: np.ndarray | None = None
) -> np.ndarray:
    """Candidate rows ordered by their best predicted non-dominated rank over all cost vectors.

    ``error`` (N,) and every ``costs[j]`` (N,) are predictions; for each device j, rows are sorted into
    fronts of (error, costs[j]); a row's score is its best (lowest) front index over devices, ties broken by
    how many devices place it there. Only rows within ``max_fronts`` fronts of some device are returned,
    best first, ``exclude`` (rows already known) left out.
    """
    err = np.asarray(error, dtype=np.float64)
    ranks = np.full((len(costs), len(err)), max_fronts, dtype=np.int64)  # (devices, N)
    for j, c in enumerate(costs):
        fronts = non_dominated_sort(np.stack([err, np.asarray(c, dtype=np.float64)], axis=1))
        for rank, front in enumerate(fronts[:max_fronts]):
            ranks[j, front] = rank
    best = ranks.min(axis=0)  # (N,)
    count = (ranks == best).sum(axis=0)  # (N,) devices that place the row at its best rank
    keep = best < max_fronts
    if exclude is not None and len(exclude):
        keep[np.asarray(exclude, dtype=np.int64)] = False
    rows = np.flatnonzero(keep)
    return rows[np.lexsort((-count[rows], best[rows]))]


__all__ = ["BudgetExceeded", "ErrorSurrogate", "QueryOracle", "pareto_relevant"]
