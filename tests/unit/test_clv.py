"""BG/NBD and Gamma-Gamma (models/clv.py): the likelihood on hand-computed cases, parameters and
future purchases recovered from customers simulated by the model's own story, the no-dropout
limit, and Gamma-Gamma's shrinkage."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.clv import BGNBD, GammaGamma, bgnbd_log_likelihood

TRUE = {"r": 0.6, "alpha": 20.0, "a": 0.8, "b": 2.5}  # rates of about one purchase a month


def simulate(n: int, seed: int, history: float = 365.0, future: float = 180.0):
    """Customers who each make a first purchase at 0, then buy at their own Poisson rate λ and
    drop out after each repeat purchase with their own probability p: (x, t_x, T) at T and the
    number of purchases in (T, T + future]."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(TRUE["r"], 1 / TRUE["alpha"], n)
    drop = rng.beta(TRUE["a"], TRUE["b"], n)
    T = rng.uniform(30, history, n)
    x, t_x, later = np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > T[i] + future:
                break
            if t <= T[i]:
                x[i], t_x[i] = x[i] + 1, t
            else:
                later[i] += 1
            if rng.random() < drop[i]:
                break
    return x, t_x, T, later


def test_the_likelihood_of_hand_computed_customers():
    # no repeat purchase: (α/(α+T))^r
    assert bgnbd_log_likelihood(2, 3, 0.5, 1.5, [0], [0], [5])[0] == pytest.approx(2 * math.log(3 / 8))
    # x=2, t_x=4, T=10 with r=1, α=2, a=0.5, b=1.5:
    # Γ(3)·2/Γ(1) = 4;  B(0.5, 3.5)/B(0.5, 1.5) = Γ(2)Γ(3.5)/(Γ(1.5)Γ(4)) = 3.75/6 = 0.625;
    # (α+T)^-3 = 1/1728;  a/(b+x-1)·(α+t_x)^-3 = 0.2/216
    hand = 4 * 0.625 * (1 / 1728 + 0.2 / 216)
    assert bgnbd_log_likelihood(1, 2, 0.5, 1.5, [2], [4], [10])[0] == pytest.approx(math.log(hand))


def test_the_fit_recovers_the_simulated_parameters_and_the_next_half_year():
    x, t_x, T, later = simulate(4000, seed=1)
    model = BGNBD().fit(x, t_x, T)
    assert (
        model.log_likelihood_ >= bgnbd_log_likelihood(**TRUE, x=x, t_x=t_x, T=T).sum()
    )  # the MLE is at least as likely
    assert not model.at_boundary_
    for name, value in TRUE.items():
        assert getattr(model, name) == pytest.approx(value, rel=0.35), name
    predicted = model.expected_purchases(180, x, t_x, T)
    assert predicted.sum() == pytest.approx(later.sum(), rel=0.1)
    # customers who bought much and recently are expected to buy more than those who went quiet
    busy = (x >= 5) & (T - t_x < 30)
    quiet = (x >= 5) & (T - t_x > 180)
    assert predicted[busy].mean() > 3 * predicted[quiet].mean()
    assert model.p_alive(x, t_x, T)[busy].mean() > model.p_alive(x, t_x, T)[quiet].mean()


def test_without_dropout_the_expectation_is_the_nbd_s_and_no_repeat_means_alive():
    model = BGNBD(r=0.5, alpha=10.0, a=1e-6, b=5.0)
    x, t_x, T = np.array([0.0, 3.0]), np.array([0.0, 50.0]), np.array([100.0, 100.0])
    expected = model.expected_purchases(30, x, t_x, T)
    assert expected == pytest.approx((0.5 + x) / (10 + T) * 30, rel=1e-3)
    assert model.p_alive([0], [0], [100])[0] == 1.0


def test_bad_histories_are_refused_in_one_line():
    with pytest.raises(ValueError, match="t_x <= T"):
        BGNBD().fit([1], [20], [10])
    with pytest.raises(ValueError, match="at least one customer"):
        BGNBD().fit([], [], [])


def test_gamma_gamma_shrinks_a_customer_s_mean_towards_the_population_and_recovers_it():
    model = GammaGamma(p=2.0, q=3.0, v=10.0)  # population mean p·v/(q-1) = 10
    # x=2, m=30: weight p·x/(p·x+q-1) = 4/6, so 10/3 + 20
    assert model.expected_value([0, 2], [0, 30]).tolist() == pytest.approx([10.0, 10 / 3 + 20])
    rng = np.random.default_rng(2)
    p, q, v, n = 4.0, 3.0, 30.0, 3000
    nu = rng.gamma(q, 1 / v, n)  # each customer's scale: mean value per purchase p/ν
    x = rng.integers(1, 10, n).astype(float)
    m = np.array([rng.gamma(p, 1 / nu[i], int(k)).mean() for i, k in enumerate(x)])
    fitted = GammaGamma().fit(x, m)
    assert fitted.p * fitted.v / (fitted.q - 1) == pytest.approx(p * v / (q - 1), rel=0.1)
    truth = p / nu
    assert np.corrcoef(fitted.expected_value(x, m), truth)[0, 1] > np.corrcoef(m, truth)[0, 1]
