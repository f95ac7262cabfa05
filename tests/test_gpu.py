"""CUDA paths (``@pytest.mark.gpu``: run where torch sees CUDA, skipped with the reason elsewhere): the
Architect's random generator on the logits' device, a known-optimum search on CUDA, and a supernet search on
CUDA whose fronts match the objectives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modnas_ops.architect import Architect, DeviceBatch, annealed_entropy_weight
from modnas_ops.config import load_config
from modnas_ops.hypernetwork import create_hypernetwork
from modnas_ops.sampling import available_samplers, create_sampler
from modnas_ops.search import SearchConfig, run_search
from modnas_ops.spaces import get_search_space

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


@pytest.mark.parametrize("sampler", available_samplers())
def test_architect_samples_with_a_generator_on_the_logits_device(sampler: str) -> None:
    space = get_search_space("toy")
    h = create_hypernetwork("kernel", shape=space.shape, num_objectives=2, embedding_dim=space.num_anchors,
                            mask=space.mask.tolist()).to(CUDA)  # fmt: skip
    pred = _additive_predictor(space).to(CUDA)
    arch = Architect(h, create_sampler(sampler), lambda a, batch=None: a.sum((1, 2)), pred,
                     torch.optim.Adam(h.parameters(), lr=0.01), seed=0)  # fmt: skip
    assert arch.generator.device.type == "cuda"
    r = arch.sample_preferences(8, CUDA)
    _, sample = arch.sample_architectures(r, torch.rand(8, space.num_anchors, device=CUDA))
    assert sample.device.type == "cuda" and torch.all(sample[:, ~h.mask] == 0)


def _additive_predictor(space) -> torch.nn.Module:
    class Additive(torch.nn.Module):
        metrics = ("latency_ms",)

        def __init__(self) -> None:
            super().__init__()
            self.cost = torch.nn.Parameter(torch.rand(space.shape, generator=torch.Generator().manual_seed(1)))

        def forward(self, arch: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
            return (arch * self.cost).sum((1, 2))[:, None] * (1 + embedding[:, :1])

    return Additive()


def test_known_optimum_search_on_cuda() -> None:
    space = get_search_space("nb201")
    err = torch.rand(space.shape, generator=torch.Generator().manual_seed(2)).to(CUDA)
    pred = _additive_predictor(space).to(CUDA)
    torch.manual_seed(0)
    h = create_hypernetwork("kernel", shape=space.shape, num_objectives=2, embedding_dim=space.num_anchors,
                            mask=space.mask.tolist()).to(CUDA)  # fmt: skip
    arch = Architect(h, create_sampler("reinmax"), lambda a, batch=None: (a * err).sum((1, 2)), pred,
                     torch.optim.Adam(h.parameters(), lr=0.01), prefs_per_device=8, seed=0)  # fmt: skip
    emb = torch.zeros(1, space.num_anchors, device=CUDA)
    emb[0, 1] = 1.0
    d = float(space.num_decisions)
    devices = DeviceBatch(("dev",), emb, torch.zeros(1, 2, device=CUDA), torch.full((1, 2), d, device=CUDA))
    for step in range(300):
        arch.entropy_weight = annealed_entropy_weight(0.05, 0.75, step / 300)
        arch.hypernet_step(devices)
    r = torch.tensor([[0.2, 0.8]], device=CUDA)
    want = (0.2 * err + 0.8 * pred.cost).argmin(-1)
    assert torch.equal(arch.argmax_architectures(r, emb[0])[0], want)


def test_supernet_search_runs_on_cuda() -> None:
    from modnas_ops.data import load_digits_splits

    space = get_search_space("nb201")
    rng = np.random.default_rng(0)
    archs = list(dict.fromkeys([*space.anchors(), *[space.sample(rng) for _ in range(30)]]))
    rows = [
        {"space": "nb201", "arch": space.to_string(g), "device": dev, "role": "anchor" if i < 10 else "sample",
         "latency_ms": scale * (1.0 + float(space.one_hot(g)[:, 2:4].sum()))}
        for dev, scale in (("gpu-a", 1.0), ("gpu-b", 2.0)) for i, g in enumerate(archs)
    ]  # fmt: skip
    cfg = load_config(SearchConfig, None, [
        "mode=supernet", "device=cuda", "epochs=2", "steps_per_epoch=3", "num_rays=4", "supernet.C=4",
        "supernet.N=1", "supernet.predictor_epochs=5", "supernet.reference_archs=4", "supernet.eval_batches=1",
    ])  # fmt: skip
    res = run_search(cfg, progress=False, data=load_digits_splits(seed=0), profile_rows=rows)
    assert next(res.hypernetwork.parameters()).device.type == "cuda"
    assert all(np.isfinite(res.metrics[f"hv/{d}"]) for d in ("gpu-a", "gpu-b"))
