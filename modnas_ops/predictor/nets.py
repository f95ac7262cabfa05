"""The predictor networks (registry): ``(arch (B, D, K), embedding (B, A)) -> (B, num_metrics)`` standardised."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..registry import Registry
from ..spaces import SearchSpace

# ---- networks ---------------------------------------------------------------------------------------------

PREDICTOR_NETS: Registry[Callable[..., nn.Module]] = Registry("predictor net")


def register_predictor_net(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make a network available to :func:`create_predictor_net` under ``name``.

    The class is built as ``cls(space, num_metrics, hidden, layers)`` and maps
    ``(arch (B, D, K), embedding (B, A)) -> (B, num_metrics)`` standardised targets."""
    return PREDICTOR_NETS.register(name)


def available_predictor_nets() -> list[str]:
    return PREDICTOR_NETS.names()


def create_predictor_net(name: str, space: SearchSpace, num_metrics: int, hidden: int, layers: int) -> nn.Module:
    return PREDICTOR_NETS.get(name)(space, num_metrics, hidden, layers)


def _mlp(in_features: int, hidden: int, layers: int, out_features: int | None = None) -> nn.Sequential:
    """``layers`` Linear+ReLU blocks of width ``hidden`` (then a Linear to ``out_features`` if given)."""
    mods: list[nn.Module] = []
    width = in_features
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    if out_features is not None:
        mods.append(nn.Linear(width, out_features))
    return nn.Sequential(*mods)


@register_predictor_net("mlp")
class ConcatMLP(nn.Module):
    """MLP on the space's features (:meth:`~modnas_ops.spaces.SearchSpace.features`) and the device embedding."""

    def __init__(self, space: SearchSpace, num_metrics: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.space = space
        self.net = _mlp(space.num_features + space.num_anchors, hidden, layers, num_metrics)

    def forward(self, arch: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([self.space.features(arch), embedding], dim=1))  # (B, M)


@register_predictor_net("factorised")
class FactorisedNet(nn.Module):
    """``W (f(arch) * g(embedding))``: arch features gated elementwise by device features (low-rank model)."""

    def __init__(self, space: SearchSpace, num_metrics: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.space = space
        self.arch_net = _mlp(space.num_features, hidden, layers)
        self.device_net = _mlp(space.num_anchors, hidden, max(1, layers - 1), hidden)
        self.head = nn.Linear(hidden, num_metrics)

    def forward(self, arch: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return self.head(self.arch_net(self.space.features(arch)) * self.device_net(embedding))  # (B, M)


def normalised_adjacency(space: SearchSpace) -> np.ndarray:
    """(D + 2, D + 2) symmetric-normalised adjacency D^-1/2 A D^-1/2 of the space's decision graph
    (:meth:`~modnas_ops.spaces.SearchSpace.decision_graph`: input, the D decisions, output)."""
    adj = np.asarray(space.decision_graph(), dtype=np.float64)
    adj = ((adj + adj.T + np.eye(len(adj))) > 0).astype(np.float64)
    deg = adj.sum(1)
    return (adj / np.sqrt(deg[:, None] * deg[None, :])).astype(np.float32)


@register_predictor_net("gcn")
class CellGCN(nn.Module):
    """HELP-style GCN over the space's decision graph (choice one-hots as node features), mean-pooled, concatenated
    with an MLP of the device embedding, then an MLP head."""

    def __init__(self, space: SearchSpace, num_metrics: int, hidden: int, layers: int) -> None:
        super().__init__()
        _, k = space.shape
        self.register_buffer("adjacency", torch.from_numpy(normalised_adjacency(space)))  # (D+2, D+2)
        self.inp = nn.Linear(k + 2, hidden)
        self.convs = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.device_net = _mlp(space.num_anchors, hidden, 2)
        self.head = _mlp(2 * hidden, hidden, 1, num_metrics)

    def forward(self, arch: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        b, e, k = arch.shape
        ends = arch.new_zeros(b, 2, k + 2)  # input / output node types
        ends[:, 0, k] = 1.0
        ends[:, 1, k + 1] = 1.0
        ops = torch.cat([arch, arch.new_zeros(b, e, 2)], dim=2)  # (B, E, K+2)
        h = self.inp(torch.cat([ends[:, :1], ops, ends[:, 1:]], dim=1))  # (B, E+2, H)
        for conv in self.convs:
            h = torch.relu(conv(self.adjacency @ h))
        return self.head(torch.cat([h.mean(1), self.device_net(embedding)], dim=1))  # (B, M)
