"""BG/NBD and Gamma-Gamma: the probabilistic models of repeat purchases and spend per purchase.

BG/NBD (Fader, Hardie and Lee 2005, "Counting your customers the easy way"): while alive, a
customer buys at a Poisson rate λ ~ Gamma(r, α); after each purchase they drop out with
probability p ~ Beta(a, b). A customer is summarised by ``x`` (repeat purchases: purchase days
after the first), ``t_x`` (time from the first to the last purchase) and ``T`` (time from the
first purchase to the as-of date), all in the same unit (days here).

Gamma-Gamma (Fader, Hardie and Lee 2005, "RFM and CLV"): the value of a customer's purchases
varies around their own mean, which varies across customers; ``m`` is the mean value of the
repeat purchases. It assumes value is independent of frequency.

Fitted by maximum likelihood (scipy, L-BFGS-B on log parameters within bounds). On real shops
the BG/NBD fit often runs to the "no dropout" boundary (a → 0, b large: customers do not die
within the history seen), which :attr:`BGNBD.at_boundary_` reports instead of hiding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1

LOG_BOUNDS = (-6.0, 9.0)  # every parameter between e^-6 (0.0025) and e^9 (8,103)


def _as_arrays(*columns) -> list[np.ndarray]:
    return [np.asarray(c, dtype=float) for c in columns]


def bgnbd_log_likelihood(r: float, alpha: float, a: float, b: float, x, t_x, T) -> np.ndarray:
    """Each customer's log-likelihood (equation 6 of the paper, in logs):

    L = Γ(r+x) α^r / Γ(r) · B(a, b+x) / B(a, b) · [(α+T)^-(r+x) + 1{x>0} a/(b+x-1) (α+t_x)^-(r+x)]
    """
    x, t_x, T = _as_arrays(x, t_x, T)
    base = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x) - betaln(a, b)
    alive = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        dropped = np.where(x > 0, np.log(a) - np.log(b + x - 1) - (r + x) * np.log(alpha + t_x), -np.inf)
    return base + np.logaddexp(alive, dropped)


@dataclass
class BGNBD:
    """The fitted model; ``fit`` returns it, then ``expected_purchases`` and ``p_alive``."""

    r: float = np.nan
    alpha: float = np.nan
    a: float = np.nan
    b: float = np.nan
    log_likelihood_: float = np.nan
    at_boundary_: bool = False

    def fit(self, x, t_x, T) -> BGNBD:
        x, t_x, T = _as_arrays(x, t_x, T)
        if len(x) == 0:
            raise ValueError("BG/NBD needs at least one customer")
        if np.any(x < 0) or np.any(t_x < 0) or np.any(t_x > T) or np.any((x > 0) & (t_x <= 0)):
            raise ValueError("BG/NBD needs 0 <= t_x <= T, and t_x > 0 for a customer with repeat purchases")

        def negative(log_params: np.ndarray) -> float:
            return -float(bgnbd_log_likelihood(*np.exp(log_params), x, t_x, T).sum())

        start = np.log([1.0, max(float(T.mean()), 1.0), 1.0, 1.0])
        result = minimize(negative, start, method="L-BFGS-B", bounds=[LOG_BOUNDS] * 4)
        self.r, self.alpha, self.a, self.b = (float(v) for v in np.exp(result.x))
        self.log_likelihood_ = -float(result.fun)
        self.at_boundary_ = bool(np.any(np.isclose(result.x, LOG_BOUNDS[0]) | np.isclose(result.x, LOG_BOUNDS[1])))
        return self

    def p_alive(self, x, t_x, T) -> np.ndarray:
        """P(still buying at T | x, t_x, T): 1 for a customer without repeat purchases."""
        x, t_x, T = _as_arrays(x, t_x, T)
        return 1.0 / (1.0 + self._dropout_odds(x, t_x, T))

    def expected_purchases(self, t: float, x, t_x, T) -> np.ndarray:
        """E[purchases in (T, T+t] | x, t_x, T] (equation 10 of the paper).

        When a is so small that the paper's ratio (a+b+x-1)/(a-1) and the hypergeometric term
        lose precision, the no-dropout limit (r+x)/(α+T)·t (the NBD's) is used."""
        x, t_x, T = _as_arrays(x, t_x, T)
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        z = t / (alpha + T + t)
        bracket = 1.0 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
        exact = (a + b + x - 1) / (a - 1) * bracket / (1.0 + self._dropout_odds(x, t_x, T))
        no_dropout = (r + x) / (alpha + T) * t * self.p_alive(x, t_x, T)
        usable = np.isfinite(exact) & (exact >= 0) & (a > 1e-3)
        return np.where(usable, exact, no_dropout)

    def _dropout_odds(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """a/(b+x-1) · ((α+T)/(α+t_x))^(r+x) for x > 0, else 0: P(dropped) / P(alive)."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            odds = self.a / (self.b + x - 1) * ((self.alpha + T) / (self.alpha + t_x)) ** (self.r + x)
        return np.where(x > 0, odds, 0.0)


@dataclass
class GammaGamma:
    """Spend per purchase: ``fit`` on repeat customers' (x, m), then ``expected_value``."""

    p: float = np.nan
    q: float = np.nan
    v: float = np.nan

    def fit(self, x, m) -> GammaGamma:
        x, m = _as_arrays(x, m)
        keep = (x > 0) & (m > 0)
        x, m = x[keep], m[keep]
        if len(x) < 2:
            raise ValueError("Gamma-Gamma needs at least two customers with repeat purchases of positive value")

        def negative(log_params: np.ndarray) -> float:
            p, q, v = np.exp(log_params)
            px = p * x
            ll = (
                gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(v)
                + (px - 1) * np.log(m) + px * np.log(x) - (px + q) * np.log(x * m + v)
            )  # fmt: skip
            return -float(ll.sum())

        result = minimize(negative, np.log([1.0, 2.0, float(np.mean(m))]), method="L-BFGS-B", bounds=[LOG_BOUNDS] * 3)
        self.p, self.q, self.v = (float(v) for v in np.exp(result.x))
        return self

    def expected_value(self, x, m) -> np.ndarray:
        """E[value per purchase | x, m]: the population mean p·v/(q-1), shrunk towards the
        customer's own mean m the more purchases they made (the population mean when x = 0)."""
        x, m = _as_arrays(x, m)
        population = self.p * self.v / (self.q - 1)
        weight = self.p * x / (self.p * x + self.q - 1)
        return np.where(x > 0, (1 - weight) * population + weight * np.nan_to_num(m), population)
