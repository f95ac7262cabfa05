"""MetaHypernetwork H(r, d): preference r (B, M) on the simplex and device embedding d (B, A) -> architecture
logits (B, D, K) of the search space's shape; choices the space's mask marks invalid get ``MASKED_LOGIT``
(probability exactly 0: never sampled, never argmax-ed).

MODNAS's reference hypernetwork reads only r[0], rounded to one of 101 buckets, from a lookup table. Ours
uses all of r and is continuous in it:

- ``kernel`` (default): a soft partition of unity over a Das-Dennis lattice of C centres on the simplex,
  phi(r) = softmax_c(-||r - c||^2 / (2 h^2)) (h = one lattice step), times a device code [1, d, MLP(d)];
  logits = W (phi(r) ⊗ [1, d, MLP(d)]). Every centre owns its own logits, like the reference table,
  but neighbouring preferences blend smoothly, and devices share one code space.
- ``mlp``: a plain MLP on the concatenation [r, d].

Both start near-uniform: the output layer is zero plus N(0, init_std) noise.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import atomic_torch_save
from .pareto import das_dennis
from .registry import Registry
from .spaces import MASKED_LOGIT

DEFAULT_RESOLUTION = {
    2: 20,
    3: 8,
    4: 5,
}  # Das-Dennis partitions per number of objectives (21, 45, 56 centres)

HYPERNETWORKS: Registry[type[HypernetworkBase]] = Registry("hypernetwork")


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    e, k = (int(x) for x in shape)
    if e < 1 or k < 1:
        raise ValueError(f"hypernetwork: shape (E, K) must be positive, got {shape}")
    return e, k


class HypernetworkBase(nn.Module):
    """Common interface: ``forward(preference (B, M), embedding (B, A)) -> logits (B, D, K)``, masked choices
    at ``MASKED_LOGIT``. Subclasses compute the unmasked logits in :meth:`raw_logits`."""

    name: str

    def __init__(
        self,
        shape: tuple[int, int],
        num_objectives: int,
        embedding_dim: int,
        mask: Sequence[Sequence[bool]] | None = None,
    ) -> None:
        super().__init__()
        self.shape = _check_shape(shape)
        m = torch.ones(self.shape, dtype=torch.bool) if mask is None else torch.as_tensor(mask, dtype=torch.bool)
        if tuple(m.shape) != self.shape or not bool(m.any(dim=1).all()):
            raise ValueError(f"hypernetwork: mask must be {self.shape} with a valid choice per decision")
        self.register_buffer("mask", m, persistent=False)  # (D, K); saved in hyperparameters()
        if not 2 <= int(num_objectives) <= 8:
            raise ValueError(f"hypernetwork: num_objectives must lie in 2..8, got {num_objectives}")
        if int(embedding_dim) < 1:
            raise ValueError(f"hypernetwork: embedding_dim must be >= 1, got {embedding_dim}")
        self.num_objectives = int(num_objectives)
        self.embedding_dim = int(embedding_dim)

    def _check_inputs(self, preference: torch.Tensor, embedding: torch.Tensor) -> None:
        if preference.ndim != 2 or preference.shape[1] != self.num_objectives:
            raise ValueError(
                f"hypernetwork: preference must be (B, {self.num_objectives}), got {tuple(preference.shape)}"
            )
        if embedding.ndim != 2 or embedding.shape[1] != self.embedding_dim:
            raise ValueError(
                f"hypernetwork: embedding must be (B, {self.embedding_dim}), got {tuple(embedding.shape)}"
            )
        if preference.shape[0] != embedding.shape[0]:
            raise ValueError(
                "hypernetwork: batch sizes differ: "
                f"preference {preference.shape[0]}, embedding {embedding.shape[0]}"
            )

    def forward(self, preference: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        self._check_inputs(preference, embedding)
        return self.raw_logits(preference, embedding).masked_fill(~self.mask, MASKED_LOGIT)  # (B, D, K)

    @abc.abstractmethod
    def raw_logits(self, preference: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """(B, D, K) logits before the mask."""

    def hyperparameters(self) -> dict[str, Any]:
        """Constructor arguments (saved with the weights)."""
        return {
            "shape": list(self.shape),
            "num_objectives": self.num_objectives,
            "embedding_dim": self.embedding_dim,
            "mask": self.mask.cpu().tolist(),
        }


def _output_layer(in_features: int, out_features: int, init_std: float) -> nn.Linear:
    layer = nn.Linear(in_features, out_features)
    with torch.no_grad():
        layer.weight.normal_(0.0, init_std)
        layer.bias.zero_()
    return layer


def register_hypernetwork(cls: type[HypernetworkBase]) -> type[HypernetworkBase]:
    return HYPERNETWORKS.register(cls.name)(cls)


def available_hypernetworks() -> list[str]:
    return HYPERNETWORKS.names()


def create_hypernetwork(name: str, **kwargs: Any) -> HypernetworkBase:
    """A registered hypernetwork (``kernel``, ``mlp``) built with ``kwargs`` (shape, num_objectives, ...)."""
    return HYPERNETWORKS.get(name)(**kwargs)


@register_hypernetwork
class MetaHypernetwork(HypernetworkBase):
    """Kernel-on-the-simplex preference features ⊗ an MLP device code -> logits (see module docstring)."""

    name = "kernel"

    def __init__(
        self,
        shape: tuple[int, int],
        num_objectives: int,
        embedding_dim: int,
        mask: Sequence[Sequence[bool]] | None = None,
        hidden: int = 32,
        resolution: int | None = None,
        init_std: float = 1e-3,
    ) -> None:
        super().__init__(shape, num_objectives, embedding_dim, mask)
        res = DEFAULT_RESOLUTION.get(self.num_objectives, 4) if resolution is None else int(resolution)
        if res < 1:
            raise ValueError(f"hypernetwork: resolution must be >= 1, got {resolution}")
        self.hidden = int(hidden)
        self.resolution = res
        self.init_std = float(init_std)
        centres = torch.as_tensor(das_dennis(res, self.num_objectives), dtype=torch.float32)  # (C, M)
        self.register_buffer("centres", centres)
        self.bandwidth = math.sqrt(2.0) / res  # one lattice step
        self.device_mlp = nn.Sequential(
            nn.Linear(self.embedding_dim, self.hidden),
            nn.ReLU(),
            nn.Linear(self.hidden, self.hidden),
        )
        e, k = self.shape
        self.code_dim = 1 + self.embedding_dim + self.hidden
        self.out = _output_layer(len(centres) * self.code_dim, e * k, self.init_std)

    def preference_features(self, preference: torch.Tensor) -> torch.Tensor:
        """(B, C) partition of unity over the simplex centres, smooth in every coordinate of r."""
        d2 = ((preference[:, None, :] - self.centres[None, :, :]) ** 2).sum(-1)  # (B, C)
        return torch.softmax(-d2 / (2 * self.bandwidth**2), dim=-1)

    def device_code(self, embedding: torch.Tensor) -> torch.Tensor:
        """(B, 1 + D + H) code [1, d, MLP(d)]: the raw embedding always survives (no saturating units)."""
        return torch.cat([torch.ones_like(embedding[:, :1]), embedding, self.device_mlp(embedding)], dim=1)

    def raw_logits(self, preference: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        phi = self.preference_features(preference)  # (B, C)
        code = self.device_code(embedding)  # (B, 1 + D + H)
        z = (phi[:, :, None] * code[:, None, :]).flatten(1)  # (B, C * (1 + D + H))
        return self.out(z).view(-1, *self.shape)  # (B, E, K)

    def hyperparameters(self) -> dict[str, Any]:
        return {
            **super().hyperparameters(),
            "hidden": self.hidden,
            "resolution": self.resolution,
            "init_std": self.init_std,
        }


@register_hypernetwork
class MLPHypernetwork(HypernetworkBase):
    """MLP on [r, d] -> logits (ablation of the kernel features)."""

    name = "mlp"

    def __init__(
        self,
        shape: tuple[int, int],
        num_objectives: int,
        embedding_dim: int,
        mask: Sequence[Sequence[bool]] | None = None,
        hidden: int = 128,
        init_std: float = 1e-3,
    ) -> None:
        super().__init__(shape, num_objectives, embedding_dim, mask)
        self.hidden = int(hidden)
        self.init_std = float(init_std)
        e, k = self.shape
        self.body = nn.Sequential(
            nn.Linear(self.num_objectives + self.embedding_dim, self.hidden),
            nn.ReLU(),
            nn.Linear(self.hidden, self.hidden),
            nn.ReLU(),
        )
        self.out = _output_layer(self.hidden, e * k, self.init_std)

    def raw_logits(self, preference: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(torch.cat([preference, embedding], dim=1))).view(-1, *self.shape)

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), "hidden": self.hidden, "init_std": self.init_std}


def save_hypernetwork(model: HypernetworkBase, path: str | Path) -> None:
    """Weights + kind + hyperparameters, written atomically (tmp file + os.replace)."""
    path = Path(path)
    payload = {
        "kind": model.name,
        "hyperparameters": model.hyperparameters(),
        "state_dict": model.state_dict(),
    }
    atomic_torch_save(payload, path)


def load_hypernetwork(path: str | Path, map_location: str | torch.device = "cpu") -> HypernetworkBase:
    """Inverse of :func:`save_hypernetwork` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"hypernetwork file {path} does not exist")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or not {"kind", "hyperparameters", "state_dict"} <= set(payload):
        raise ValueError(f"{path}: not a saved hypernetwork (missing kind/hyperparameters/state_dict)")
    hp = dict(payload["hyperparameters"])
    hp["shape"] = tuple(hp["shape"])
    model = create_hypernetwork(payload["kind"], **hp)
    model.load_state_dict(payload["state_dict"])
    return model


__all__ = [
    "HypernetworkBase",
    "MLPHypernetwork",
    "MetaHypernetwork",
    "available_hypernetworks",
    "create_hypernetwork",
    "load_hypernetwork",
    "register_hypernetwork",
    "save_hypernetwork",
]
