"""Straight-through samplers: exact one-hot values, gradients that reach the logits, ReinMax against its
definition (Liu et al. 2023, Algorithm 2) and its second-order exactness, GDAS temperature schedule."""

from __future__ import annotations

import itertools

import pytest
import torch

from modnas_ops.sampling import available_samplers, create_sampler
from modnas_ops.spaces import get_search_space


def _jt(p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """(diag(p) - p p^T) g, written out independently of the library."""
    return (torch.diag(p) - torch.outer(p, p)) @ g


def _reinmax_algorithm2(theta: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
    """Algorithm 2 of the ReinMax paper, line by line, with stop-gradients (detach)."""
    pi0 = torch.softmax(theta, dim=-1)
    idx = torch.multinomial(pi0, 1, replacement=True, generator=generator)
    d = torch.zeros_like(pi0).scatter_(-1, idx, 1.0)
    pi1 = (d + torch.softmax(theta / tau, dim=-1)) / 2
    pi1 = torch.softmax((torch.log(pi1) - theta).detach() + theta, dim=-1)
    pi2 = 2 * pi1 - 0.5 * pi0
    return pi2 - pi2.detach() + d


@pytest.mark.parametrize("name", ["reinmax", "gdas"])
def test_values_are_exactly_one_hot_and_gradient_reaches_logits(name: str) -> None:
    space = get_search_space("nb201")
    logits = (3 * torch.randn(16, *space.shape, generator=torch.Generator().manual_seed(0))).requires_grad_()
    sampler = create_sampler(name)
    out = sampler(logits, generator=torch.Generator().manual_seed(1))  # (16, E, K)
    assert out.shape == logits.shape
    assert torch.equal(out.detach(), torch.zeros_like(out).scatter_(-1, out.argmax(-1, keepdim=True), 1.0))
    assert set(out.detach().unique().tolist()) <= {0.0, 1.0}
    weights = torch.randn(space.shape)
    (out * weights).sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


def test_reinmax_matches_algorithm2_of_the_paper() -> None:
    torch.manual_seed(0)
    for tau in (0.5, 1.0, 2.0):
        theta = torch.randn(6, 5, dtype=torch.float64)
        c = torch.randn(6, 5, dtype=torch.float64)
        q = torch.randn(30, 30, dtype=torch.float64)

        def loss(d: torch.Tensor, c: torch.Tensor = c, q: torch.Tensor = q) -> torch.Tensor:
            x = d.reshape(-1)
            return (c.reshape(-1) * x).sum() + x @ q @ x

        t1 = theta.clone().requires_grad_()
        d1 = create_sampler("reinmax", tau=tau)(t1, generator=torch.Generator().manual_seed(7))
        loss(d1).backward()
        t2 = theta.clone().requires_grad_()
        d2 = _reinmax_algorithm2(t2, tau, torch.Generator().manual_seed(7))
        loss(d2).backward()
        assert torch.equal(d1.detach(), d2.detach())
        torch.testing.assert_close(t1.grad, t2.grad, rtol=1e-10, atol=1e-12)


def test_reinmax_gradient_formula_on_one_row() -> None:
    """dL/dtheta = 2 J((D + softmax(theta/tau))/2) g - J(softmax(theta)) g / 2 for the drawn D."""
    theta = torch.tensor([0.3, -1.2, 0.8], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([1.5, -0.5, 2.0], dtype=torch.float64)
    tau = 0.7
    d = create_sampler("reinmax", tau=tau)(theta, generator=torch.Generator().manual_seed(3))
    (d * g).sum().backward()
    with torch.no_grad():
        pi0 = torch.softmax(theta, -1)
        pi1 = (d + torch.softmax(theta / tau, -1)) / 2
        expected = 2 * _jt(pi1, g) - 0.5 * _jt(pi0, g)
    torch.testing.assert_close(theta.grad, expected)


def test_reinmax_expected_gradient_is_exact_for_quadratic_losses() -> None:
    """E_D[ReinMax gradient] = d/dtheta E_D[f(D)] for quadratic f (tau = 1), by exact enumeration of D;
    plain straight-through is biased on the same problem."""
    torch.manual_seed(1)
    rows, k = 2, 3
    theta = torch.randn(rows, k, dtype=torch.float64)
    a = torch.randn(rows * k, rows * k, dtype=torch.float64)
    b = torch.randn(rows * k, dtype=torch.float64)

    def f(d: torch.Tensor) -> torch.Tensor:
        x = d.reshape(-1)
        return x @ a @ x + b @ x

    eye = torch.eye(k, dtype=torch.float64)
    outcomes = list(itertools.product(range(k), repeat=rows))

    t = theta.clone().requires_grad_()
    p = torch.softmax(t, -1)
    expected_f = sum(p[0, i] * p[1, j] * f(torch.stack([eye[i], eye[j]])) for i, j in outcomes)
    (true_grad,) = torch.autograd.grad(expected_f, t)

    est = torch.zeros_like(theta)
    st = torch.zeros_like(theta)
    probs = torch.softmax(theta, -1)
    # exact expectation: weight the ReinMax gradient of every outcome by its probability
    for i, j in outcomes:
        d = torch.stack([eye[i], eye[j]]).requires_grad_()
        (g,) = torch.autograd.grad(f(d), d)  # (rows, k) dL/dD at this outcome
        w = probs[0, i] * probs[1, j]
        grad = torch.zeros_like(theta)
        st_grad = torch.zeros_like(theta)
        for r in range(rows):
            pi1 = (d[r].detach() + probs[r]) / 2
            grad[r] = 2 * _jt(pi1, g[r]) - 0.5 * _jt(probs[r], g[r])
            st_grad[r] = _jt(probs[r], g[r])
        est += w * grad
        st += w * st_grad
    torch.testing.assert_close(est, true_grad, rtol=1e-9, atol=1e-12)
    assert (st - true_grad).abs().max() > 1e-3


def test_reinmax_library_gradient_agrees_with_the_enumerated_formula() -> None:
    """The library's backward for each possible outcome equals the per-outcome formula used above."""
    theta = torch.tensor([[0.2, -0.4, 1.1]], dtype=torch.float64)
    g = torch.tensor([[0.7, -1.3, 0.4]], dtype=torch.float64)
    seen = set()
    for seed in range(200):
        t = theta.clone().requires_grad_()
        d = create_sampler("reinmax")(t, generator=torch.Generator().manual_seed(seed))
        (d * g).sum().backward()
        i = int(d.argmax())
        seen.add(i)
        probs = torch.softmax(theta[0], -1)
        pi1 = (torch.eye(3, dtype=torch.float64)[i] + probs) / 2
        torch.testing.assert_close(t.grad[0], 2 * _jt(pi1, g[0]) - 0.5 * _jt(probs, g[0]))
    assert seen == {0, 1, 2}


def test_samples_follow_the_categorical_distribution() -> None:
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.7]])).expand(20000, 3)
    gen = torch.Generator().manual_seed(0)
    for name in ("reinmax", "gdas"):
        freq = create_sampler(name)(logits, generator=gen).mean(0)
        torch.testing.assert_close(freq, torch.tensor([0.1, 0.2, 0.7]), atol=0.015, rtol=0)


def test_gdas_temperature_schedule_is_linear() -> None:
    s = create_sampler("gdas", tau_max=10.0, tau_min=1.0)
    taus = []
    for epoch in range(4):
        s.set_epoch(epoch, 4)
        taus.append(s.state()["tau"])
    assert taus == pytest.approx([10.0, 7.0, 4.0, 1.0])
    with pytest.raises(ValueError, match="epoch"):
        s.set_epoch(4, 4)


def test_gdas_gradient_is_the_softmax_jacobian_at_the_temperature() -> None:
    theta = torch.tensor([0.5, -0.1, 0.3], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    s = create_sampler("gdas", tau_max=2.0, tau_min=2.0)
    gen = torch.Generator().manual_seed(5)
    d = s(theta, generator=gen)
    (d * g).sum().backward()
    gumbel = (
        -torch.empty(3, dtype=torch.float64).exponential_(generator=torch.Generator().manual_seed(5)).log()
    )
    soft = torch.softmax((theta.detach() + gumbel) / 2.0, -1)
    assert int(d.argmax()) == int(soft.argmax())
    torch.testing.assert_close(theta.grad, _jt(soft, g) / 2.0)


def test_registry_and_bad_input() -> None:
    assert {"reinmax", "gdas"} <= set(available_samplers())
    with pytest.raises(ValueError, match="unknown sampler 'nope'"):
        create_sampler("nope")
    with pytest.raises(ValueError, match="tau"):
        create_sampler("reinmax", tau=0.0)
    with pytest.raises(ValueError, match="tau_min"):
        create_sampler("gdas", tau_max=1.0, tau_min=2.0)
    with pytest.raises(ValueError, match="NaN"):
        create_sampler("reinmax")(torch.tensor([[float("nan"), 0.0]]))
