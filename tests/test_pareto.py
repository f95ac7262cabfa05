import itertools
import math

import numpy as np
import pytest

from modnas_ops.pareto import (
    MODNAS_MAX_ERROR,
    Normaliser,
    das_dennis,
    hypervolume,
    hypervolume_2d,
    modnas_normaliser,
    non_dominated_sort,
    normalised_hypervolume,
    pareto_mask,
    preference_rays,
)


def brute_dominated(F: np.ndarray) -> np.ndarray:
    """(N,) bool by the definition: some other point is <= everywhere and < somewhere."""
    n = len(F)
    out = np.zeros(n, dtype=bool)
    for i in range(n):
        for j in range(n):
            if np.all(F[j] <= F[i]) and np.any(F[j] < F[i]):
                out[i] = True
    return out


def brute_fronts(F: np.ndarray) -> list[list[int]]:
    left = list(range(len(F)))
    fronts = []
    while left:
        dominated = brute_dominated(F[left])
        fronts.append([left[k] for k in range(len(left)) if not dominated[k]])
        left = [left[k] for k in range(len(left)) if dominated[k]]
    return fronts


def brute_hypervolume(F: np.ndarray, ref: np.ndarray) -> float:
    """Exact volume of the union of boxes [f, ref) by inclusion-exclusion (small N only)."""
    boxes = [f for f in F if np.all(f < ref)]
    total = 0.0
    for k in range(1, len(boxes) + 1):
        for subset in itertools.combinations(boxes, k):
            corner = np.max(subset, axis=0)
            total += (-1) ** (k + 1) * float(np.prod(ref - corner))
    return total


# ---- dominance ------------------------------------------------------------------------------


def test_pareto_mask_hand_example():
    F = np.array([[0, 1], [0.5, 0.5], [1, 0], [1, 1], [0.5, 0.6], [0.5, 0.5]])
    # (1, 1) and (0.5, 0.6) are dominated by (0.5, 0.5); the duplicate (0.5, 0.5) is kept.
    assert pareto_mask(F).tolist() == [True, True, True, False, False, True]


def test_pareto_mask_ties_in_one_objective():
    F = np.array([[1.0, 2.0], [1.0, 3.0], [0.0, 5.0]])
    assert pareto_mask(F).tolist() == [True, False, True]


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_pareto_mask_and_sort_match_brute_force(m):
    rng = np.random.default_rng(m)
    for _ in range(20):
        F = rng.integers(0, 4, size=(int(rng.integers(1, 25)), m)).astype(float)  # many ties and duplicates
        assert pareto_mask(F).tolist() == (~brute_dominated(F)).tolist()
        fronts = non_dominated_sort(F)
        assert [f.tolist() for f in fronts] == brute_fronts(F)
        assert sorted(np.concatenate(fronts).tolist()) == list(range(len(F)))


def test_empty_and_bad_input():
    assert pareto_mask(np.empty((0, 2))).shape == (0,)
    assert non_dominated_sort(np.empty((0, 3))) == []
    with pytest.raises(ValueError, match="finite"):
        pareto_mask([[0.0, np.nan]])
    with pytest.raises(ValueError, match="shape"):
        pareto_mask([1.0, 2.0])


# ---- hypervolume ----------------------------------------------------------------------------


def test_hypervolume_three_point_front():
    F = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    # Only (0.5, 0.5) lies strictly inside the reference box: 0.5 * 0.5.
    assert hypervolume(F, [1.0, 1.0]) == pytest.approx(0.25, abs=1e-15)
    # Reference (2, 2): 4 minus the undominated L-shape 0.5 * 1 + 0.5 * 0.5.
    assert hypervolume(F, [2.0, 2.0]) == pytest.approx(3.25, abs=1e-15)


def test_hypervolume_ignores_dominated_duplicates_and_points_beyond_ref():
    front = np.array([[0.2, 0.6], [0.4, 0.3], [0.7, 0.1]])
    hv = hypervolume(front, [1.0, 1.0])
    # 0.8 * 0.4 + 0.6 * 0.3 + 0.3 * 0.2 by slabs of the staircase.
    assert hv == pytest.approx(0.32 + 0.18 + 0.06, abs=1e-15)
    extra = np.array([[0.5, 0.7], [0.4, 0.3], [0.1, 1.0], [1.5, 0.0], [0.05, 2.0], [1.0, 1.0]])
    assert hypervolume(np.vstack([front, extra]), [1.0, 1.0]) == pytest.approx(hv, abs=1e-15)
    assert hypervolume(extra[2:], [1.0, 1.0]) == 0.0


def test_hypervolume_empty_and_one_objective():
    assert hypervolume(np.empty((0, 2)), [1.0, 1.0]) == 0.0
    assert hypervolume([], [1.0, 1.0, 1.0]) == 0.0
    assert hypervolume([[0.25], [0.5], [3.0]], [1.0]) == 0.75


def test_hypervolume_3d_hand_computed():
    assert hypervolume([[0.0, 0.0, 0.0]], [1.0, 2.0, 3.0]) == pytest.approx(6.0)
    # Boxes [0,2]x[0,2]x[1,2] (4) and [1,2]x[1,2]x[0,2] (2) overlap in [1,2]^3 (1).
    F = [[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]
    assert hypervolume(F, [2.0, 2.0, 2.0]) == pytest.approx(5.0)
    assert hypervolume([*F, [1.5, 1.5, 1.5], [2.0, 0.0, 0.0]], [2.0, 2.0, 2.0]) == pytest.approx(5.0)


def test_hypervolume_2d_sweep_matches_pymoo_and_inclusion_exclusion():
    from pymoo.indicators.hv import HV

    rng = np.random.default_rng(0)
    for _ in range(30):
        F = rng.random((int(rng.integers(1, 9)), 2)) * 1.2
        ref = np.array([1.0, 1.1])
        inside = F[np.all(F < ref, axis=1)]
        expected = brute_hypervolume(F, ref)
        assert hypervolume_2d(F, ref) == pytest.approx(expected, abs=1e-12)
        if len(inside):
            assert hypervolume_2d(F, ref) == pytest.approx(HV(ref_point=ref)(inside), abs=1e-12)


@pytest.mark.parametrize("m", [3, 4])
def test_hypervolume_nd_matches_inclusion_exclusion(m):
    rng = np.random.default_rng(m)
    for _ in range(10):
        F = rng.random((int(rng.integers(1, 8)), m))
        ref = np.full(m, 0.9)
        assert hypervolume(F, ref) == pytest.approx(brute_hypervolume(F, ref), abs=1e-12)


def test_hypervolume_rejects_bad_reference():
    with pytest.raises(ValueError, match="reference point"):
        hypervolume([[0.0, 0.0]], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="finite"):
        hypervolume([[0.0, 0.0]], [1.0, np.inf])


# ---- normalisation --------------------------------------------------------------------------


def test_normaliser_fit_apply_inverse_roundtrip():
    F = np.array([[10.0, 2.0], [30.0, 6.0], [20.0, 3.0]])
    norm = Normaliser.fit(F)
    assert norm.lo == (10.0, 2.0) and norm.hi == (30.0, 6.0)
    assert norm(F).tolist() == [[0.0, 0.0], [1.0, 1.0], [0.5, 0.25]]
    assert norm.apply([20.0, 4.0]).tolist() == [0.5, 0.5]
    np.testing.assert_allclose(norm.inverse(norm(F)), F)
    assert Normaliser.from_dict(norm.to_dict()) == norm
    assert norm.reference_point.tolist() == [1.0, 1.0]


def test_normaliser_rejects_bad_bounds_and_shapes():
    with pytest.raises(ValueError, match="objective 1"):
        Normaliser.fit([[0.0, 1.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="one value per objective"):
        Normaliser((0.0, 0.0), (1.0,))
    with pytest.raises(ValueError, match="shape"):
        Normaliser((0.0, 0.0), (1.0, 1.0))([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="missing key 'hi'"):
        Normaliser.from_dict({"lo": [0.0]})


def test_modnas_normaliser_drops_high_error_rows():
    error = np.array([10.0, 50.0, MODNAS_MAX_ERROR, 95.0, 30.0])
    latency = np.array([1.0, 2.0, 0.1, 0.05, 5.0])
    norm = modnas_normaliser(error, latency)
    assert norm.lo == (10.0, 1.0) and norm.hi == (50.0, 5.0)
    # (30, 2) -> (0.5, 0.25); the 90 % row maps beyond the reference point and adds nothing.
    F = np.stack([error, latency], axis=1)
    assert normalised_hypervolume(F, norm) == pytest.approx(hypervolume(norm(F[[0, 1, 4]]), [1.0, 1.0]), abs=1e-15)
    with pytest.raises(ValueError, match="no row"):
        modnas_normaliser([95.0, 99.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="objective 1"):
        modnas_normaliser([1.0, 2.0], [1.0])


# ---- preference rays ------------------------------------------------------------------------


def lattice_points(a: np.ndarray, p: int) -> list[tuple[int, ...]]:
    return sorted(map(tuple, np.round(a * p).astype(int).tolist()))


def test_das_dennis_matches_pymoo():
    from pymoo.util.ref_dirs import get_reference_directions

    for m, p in [(2, 5), (3, 4), (4, 3)]:
        ours = das_dennis(p, m)
        assert ours.shape == (math.comb(p + m - 1, m - 1), m)
        theirs = get_reference_directions("das-dennis", m, n_partitions=p)
        assert lattice_points(ours, p) == lattice_points(theirs, p)
    with pytest.raises(ValueError):
        das_dennis(0, 3)


def test_preference_rays_2d_angles():
    rays = preference_rays(24)
    assert rays.shape == (24, 2)
    np.testing.assert_allclose(rays.sum(axis=1), 1.0)
    assert np.all(rays > 0)
    theta = np.arctan2(rays[:, 1], rays[:, 0])
    np.testing.assert_allclose(np.diff(theta), (math.pi / 2 - 2e-6) / 23, rtol=1e-9)
    assert theta[0] == pytest.approx(1e-6) and theta[-1] == pytest.approx(math.pi / 2 - 1e-6)
    np.testing.assert_allclose(preference_rays(1), [[0.5, 0.5]])
    with pytest.raises(ValueError):
        preference_rays(0)


def test_preference_rays_3d_interior_das_dennis():
    exact = preference_rays(21, 3)  # C(7, 2) = 21 interior points of the 8-partition lattice
    lattice = das_dennis(8, 3)
    interior = lattice[np.all(lattice > 0, axis=1)]
    assert sorted(map(tuple, exact.round(12).tolist())) == sorted(map(tuple, interior.round(12).tolist()))
    rays = preference_rays(24, 3)  # 24 of the 28 interior points of the 9-partition lattice
    assert rays.shape == (24, 3) and len(np.unique(rays, axis=0)) == 24
    np.testing.assert_allclose(rays.sum(axis=1), 1.0)
    assert np.all(rays > 0)
    np.testing.assert_allclose((rays * 9).round(), rays * 9, atol=1e-9)
    assert np.array_equal(rays, preference_rays(24, 3))
