"""MGD: min-norm coefficients against brute-force simplex grids, the descent property g_t . d >= 0, modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modnas_ops.mgd import available_combiners, combine, frank_wolfe, min_norm_2, min_norm_coefficients


def _simplex_grid(t: int, steps: int) -> np.ndarray:
    c = np.stack(np.meshgrid(*[np.arange(steps + 1)] * (t - 1), indexing="ij"), axis=-1).reshape(-1, t - 1)
    c = c[c.sum(axis=1) <= steps]
    return np.concatenate([c, steps - c.sum(axis=1, keepdims=True)], axis=1) / steps  # (n, T)


def _grid_min(g: np.ndarray, steps: int) -> float:
    a = _simplex_grid(len(g), steps)
    return float(np.min(np.sum((a @ g) ** 2, axis=1)))


def _norm2(alpha: torch.Tensor, g: torch.Tensor) -> float:
    return float(((alpha.double() @ g.double()) ** 2).sum())


def test_two_vectors_closed_form_exact() -> None:
    g1 = torch.tensor([1.0, 0.0])
    g2 = torch.tensor([0.0, 1.0])
    torch.testing.assert_close(min_norm_2(g1, g2), torch.tensor([0.5, 0.5]))
    # g2 already is the min-norm point of the segment: alpha = (0, 1)
    torch.testing.assert_close(
        min_norm_2(torch.tensor([2.0, 1.0]), torch.tensor([0.0, 1.0])), torch.tensor([0.0, 1.0])
    )
    # identical vectors: any alpha; we return (0.5, 0.5)
    torch.testing.assert_close(min_norm_2(torch.ones(3), torch.ones(3)), torch.tensor([0.5, 0.5]))
    # a case with a known interior optimum: g1 = (1, 1), g2 = (1, -3): alpha = 3/4 -> d = (1, 0)
    alpha = min_norm_2(torch.tensor([1.0, 1.0]), torch.tensor([1.0, -3.0]))
    torch.testing.assert_close(alpha, torch.tensor([0.75, 0.25]))


@pytest.mark.parametrize(("t", "steps"), [(2, 2000), (3, 200), (4, 60), (5, 30)])
def test_agrees_with_brute_force_simplex_grid(t: int, steps: int) -> None:
    rng = np.random.default_rng(t)
    for trial in range(5):
        p = 3 if trial % 2 else 40  # low dimension: origin often inside the hull; high: rarely
        g = rng.normal(size=(t, p)) + (0.0 if trial < 2 else rng.normal(size=p))
        alpha = min_norm_coefficients(torch.tensor(g), max_iter=2000, tol=1e-10)
        assert alpha.min() >= 0 and float(alpha.sum()) == pytest.approx(1.0)
        ours = _norm2(alpha, torch.tensor(g))
        grid = _grid_min(g, steps)
        scale = float(np.max(np.sum(g**2, axis=1)))
        assert ours <= grid + 1e-9 * scale  # never worse than the grid
        assert ours >= grid - 0.05 * scale / steps  # and the grid (resolution 1/steps) is close behind


@pytest.mark.parametrize("t", [2, 3, 6, 13])
@pytest.mark.parametrize("normalize", [False, True])
def test_direction_is_a_common_descent_direction(t: int, normalize: bool) -> None:
    rng = np.random.default_rng(10 + t)
    for _ in range(10):
        g = torch.tensor(
            rng.normal(size=(t, 50)) + rng.normal(size=50) * rng.uniform(0, 2), dtype=torch.float64
        )
        g = g * torch.tensor(rng.uniform(0.01, 100, size=(t, 1)))  # very different scales per device
        res = combine(g, mode="mgd", normalize=normalize, max_iter=5000, tol=1e-12)
        (d,) = res.directions
        dots = g @ d  # (T,)
        assert (dots >= -1e-9 * g.norm(dim=1) * d.norm()).all()
        if float(d.norm()) > 1e-6:
            base = torch.nn.functional.normalize(g, dim=1) if normalize else g
            # optimality: every (normalised) gradient has at least ||d||^2 along d (up to the FW tolerance)
            assert ((base @ d) >= d.dot(d) * (1 - 1e-3) - 1e-9).all()


def test_origin_in_hull_gives_zero_direction() -> None:
    g = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    (d,) = combine(g).directions
    assert float(d.norm()) < 1e-6


def test_frank_wolfe_on_a_gram_matrix_with_known_answer() -> None:
    # three orthogonal vectors of norms 1, 2, 4: alpha ∝ 1/norm^2 -> (16, 4, 1)/21
    gram = torch.diag(torch.tensor([1.0, 4.0, 16.0], dtype=torch.float64))
    alpha = frank_wolfe(gram, max_iter=10000, tol=1e-14)
    torch.testing.assert_close(
        alpha, torch.tensor([16.0, 4.0, 1.0], dtype=torch.float64) / 21, atol=1e-5, rtol=0
    )
    with pytest.raises(ValueError, match="square"):
        frank_wolfe(torch.ones(2, 3))


def test_modes_mean_and_sequential() -> None:
    g = torch.tensor([[1.0, 2.0], [3.0, -2.0], [2.0, 6.0]])
    mean = combine(g, mode="mean")
    torch.testing.assert_close(mean.directions[0], torch.tensor([2.0, 2.0]))
    seq = combine(g, mode="sequential")
    assert len(seq.directions) == 3
    torch.testing.assert_close(torch.stack(seq.directions), g)
    norm = combine(g, mode="mean", normalize=True)
    torch.testing.assert_close(norm.directions[0], torch.nn.functional.normalize(g, dim=1).mean(0))
    assert {"mgd", "mean", "sequential"} <= set(available_combiners())


def test_list_input_and_bad_input() -> None:
    grads = [torch.ones(2, 2), torch.zeros(4)]
    res = combine(grads, mode="mgd")
    torch.testing.assert_close(res.directions[0], torch.zeros(4))
    with pytest.raises(ValueError, match="unknown combine mode 'avg'"):
        combine(torch.ones(2, 3), mode="avg")
    with pytest.raises(ValueError, match="NaN"):
        combine(torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(ValueError, match=r"\(T, P\)"):
        min_norm_coefficients(torch.ones(3))
