"""Campaign measurement: lift of a target group over its control group, as experimentation platforms compute it.

Pure functions on per-customer arrays (one value per assigned customer, zeros included, intention to
treat). Definitions follow GrowthBook's frequentist engine (``gbstats``), Eppo's documentation and
Spotify's ``confidence`` library:

- ``mean_lift``    absolute lift with a Welch t interval; relative lift with a delta-method t interval
- ``ratio_lift``   the same for ratio metrics (average order value = revenue / orders)
- ``cuped_lift``   the same after CUPED variance reduction with a pre-period covariate (``cuped``)
- ``winsorize`` / ``winsorize_arms``   cap outliers at a percentile of the pooled non-zero values
- ``srm_check``    sample-ratio mismatch (chi-squared goodness of fit of the arm sizes)
- ``incremental``  incremental total (revenue, orders) in the target group
- ``benjamini_hochberg``   false discovery rate control when many campaigns (or rules) are ranked

Degenerate inputs. An arm with fewer than 2 customers, a non-finite value or a bad parameter raises
``ValueError`` (there is no variance to estimate). When the lift has zero variance (e.g. nobody converted
in either arm) the result is NaN-free: the interval has zero width at the point estimate and the p-value
is 1 if the estimate is 0, else 0. A relative lift needs a non-zero control mean; otherwise the ``rel_*``
fields are None (GrowthBook reports "baseline is zero" in that case).

The two-sided p-value tests the absolute lift (Welch's t-test); the relative interval uses the same
degrees of freedom, so near the significance boundary the two can disagree slightly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "Lift",
    "benjamini_hochberg",
    "cuped",
    "cuped_lift",
    "incremental",
    "mean_lift",
    "ratio_lift",
    "srm_check",
    "winsorize",
    "winsorize_arms",
]


@dataclass(frozen=True)
class Lift:
    """Lift of the target arm over the control arm for one metric.

    ``kind`` is "mean" (per-customer mean) or "ratio" (sum of numerator / sum of denominator).
    ``abs_*``: target - control, in the metric's unit. ``rel_*``: (target - control) / control as a
    fraction (0.1 = +10 %); None when the control mean is 0. ``df``: Welch-Satterthwaite degrees of
    freedom used for both intervals. ``p_value``: two-sided Welch t-test of abs_lift = 0.
    ``adjustment``: "none" or "cuped". With "cuped", ``mean_target``/``mean_control`` are the observed
    (unadjusted) means, as GrowthBook shows them, while ``abs_lift`` is the CUPED-adjusted difference,
    so abs_lift is not exactly mean_target - mean_control; rel_lift = abs_lift / mean_control.
    """

    metric: str
    kind: str
    n_target: int
    n_control: int
    mean_target: float
    mean_control: float
    abs_lift: float
    abs_ci_low: float
    abs_ci_high: float
    rel_lift: float | None
    rel_ci_low: float | None
    rel_ci_high: float | None
    p_value: float
    df: float
    adjustment: str


# --- validation and shared pieces -------------------------------------------------------------


def _values(values, name: str, *, min_n: int = 2) -> np.ndarray:
    """One arm's per-customer values as a 1-D float array, refusing what has no variance estimate."""
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected one value per customer (1-D), got shape {array.shape}")
    if array.size < min_n:
        raise ValueError(f"{name}: needs at least {min_n} customers to estimate a variance, got {array.size}")
    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        raise ValueError(f"{name}: {bad} of {array.size} values are NaN or infinite; fill missing values with 0")
    return array


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def _welch_df(var_target: float, n_target: int, var_control: float, n_control: int) -> float:
    """Welch-Satterthwaite degrees of freedom from per-customer variances (Welch 1947).

    df = (vT/nT + vC/nC)^2 / ((vT/nT)^2/(nT-1) + (vC/nC)^2/(nC-1)). When both variances are 0 the
    formula is 0/0; nT + nC - 2 is returned so the field stays finite (the interval is then zero-width
    whatever df is).
    """
    a, b = var_target / n_target, var_control / n_control
    denominator = a * a / (n_target - 1) + b * b / (n_control - 1)
    if denominator == 0:
        return float(n_target + n_control - 2)
    return float((a + b) ** 2 / denominator)


def _t_interval(estimate: float, variance: float, df: float, alpha: float) -> tuple[float, float]:
    """Two-sided t interval estimate +- t_{1-alpha/2, df} sqrt(variance); zero-width when variance is 0."""
    if variance <= 0:
        return float(estimate), float(estimate)
    half_width = float(stats.t.ppf(1 - alpha / 2, df)) * float(np.sqrt(variance))
    return float(estimate - half_width), float(estimate + half_width)


def _t_p_value(estimate: float, variance: float, df: float) -> float:
    """Two-sided p-value of estimate / sqrt(variance) under t(df); 1 or 0 when variance is 0."""
    if variance <= 0:
        return 1.0 if estimate == 0 else 0.0
    return float(2 * stats.t.sf(abs(estimate) / np.sqrt(variance), df))


def _build_lift(
    *,
    metric: str,
    kind: str,
    adjustment: str,
    n_target: int,
    n_control: int,
    mean_target: float,
    mean_control: float,
    abs_lift: float,
    abs_variance: float,
    rel_lift: float | None,
    rel_variance: float | None,
    df: float,
    alpha: float,
) -> Lift:
    abs_low, abs_high = _t_interval(abs_lift, abs_variance, df, alpha)
    rel_low = rel_high = None
    if rel_lift is not None:
        rel_low, rel_high = _t_interval(rel_lift, rel_variance, df, alpha)
    return Lift(
        metric=metric,
        kind=kind,
        n_target=int(n_target),
        n_control=int(n_control),
        mean_target=float(mean_target),
        mean_control=float(mean_control),
        abs_lift=float(abs_lift),
        abs_ci_low=abs_low,
        abs_ci_high=abs_high,
        rel_lift=None if rel_lift is None else float(rel_lift),
        rel_ci_low=rel_low,
        rel_ci_high=rel_high,
        p_value=_t_p_value(abs_lift, abs_variance, df),
        df=df,
        adjustment=adjustment,
    )


# --- lifts ------------------------------------------------------------------------------------


def mean_lift(target, control, *, metric: str, alpha: float = 0.05) -> Lift:
    """Absolute and relative lift of a per-customer mean (revenue per customer, conversion rate).

    With n_a customers, mean m_a and sample variance s_a^2 (ddof=1) per arm:

    - absolute d = mT - mC, var(d) = sT^2/nT + sC^2/nC, Welch-Satterthwaite df, t interval, two-sided
      p-value (Welch's unequal-variance t-test);
    - relative r = d / mC, delta method var(r) = sC^2 mT^2 / (mC^4 nC) + sT^2 / (mC^2 nT), t interval
      with the same df. Dividing the absolute interval by mC instead would ignore the control mean's own
      noise (Spotify's ``confidence`` does that for ``absolute=False``; this does not).

    Reference: GrowthBook ``gbstats`` frequentist ``TwoSidedTTest`` (docs.growthbook.io/statistics/details);
    Deng, Knoblich & Lu (2018), "Applying the Delta Method in Metric Analytics", KDD.
    """
    _check_alpha(alpha)
    target, control = _values(target, "target"), _values(control, "control")
    n_t, n_c = target.size, control.size
    m_t, m_c = target.mean(), control.mean()
    v_t, v_c = target.var(ddof=1), control.var(ddof=1)

    diff = m_t - m_c
    rel = rel_variance = None
    if m_c != 0:
        rel = diff / m_c
        rel_variance = v_c * m_t**2 / (m_c**4 * n_c) + v_t / (m_c**2 * n_t)
    return _build_lift(
        metric=metric,
        kind="mean",
        adjustment="none",
        n_target=n_t,
        n_control=n_c,
        mean_target=m_t,
        mean_control=m_c,
        abs_lift=diff,
        abs_variance=v_t / n_t + v_c / n_c,
        rel_lift=rel,
        rel_variance=rel_variance,
        df=_welch_df(v_t, n_t, v_c, n_c),
        alpha=alpha,
    )


def _ratio_moments(numerator, denominator, arm: str) -> tuple[int, float, float]:
    """One arm's ratio R = sum(num) / sum(den) and the per-customer variance of its linearisation.

    The delta method gives var(R) = var(M - R D) / (n mean(D)^2), where var(M - R D) =
    s_M^2 - 2 R cov(M, D) + R^2 s_D^2 uses the per-customer covariance of numerator and denominator
    (computed in the first form, which cannot go negative through rounding).
    """
    num = _values(numerator, f"{arm} numerator")
    den = _values(denominator, f"{arm} denominator")
    if num.size != den.size:
        raise ValueError(f"{arm}: numerator has {num.size} customers but denominator has {den.size}")
    if den.sum() == 0:
        raise ValueError(f"{arm}: the denominator sums to 0 (e.g. no orders), so the ratio is undefined")
    ratio = num.sum() / den.sum()
    unit_variance = (num - ratio * den).var(ddof=1) / den.mean() ** 2
    return num.size, float(ratio), float(unit_variance)


def ratio_lift(num_target, den_target, num_control, den_control, *, metric: str, alpha: float = 0.05) -> Lift:
    """Absolute and relative lift of a ratio metric such as average order value (revenue / orders).

    Per arm (customers with a zero denominator count in n and contribute 0 to both sums):
    R_a = sum(num) / sum(den), var(R_a) = (s_M^2 - 2 R_a cov(M, D) + R_a^2 s_D^2) / (n_a mean(D)^2)
    (delta method on the per-customer numerator M and denominator D). Absolute lift RT - RC with
    variance var(RT) + var(RC); relative lift (RT - RC) / RC with var = var(RT)/RC^2 + var(RC) RT^2/RC^4
    (delta method, the arms being independent). Welch-Satterthwaite df on the per-customer variances
    n_a var(R_a), as gbstats does. Do not winsorise the denominator.

    Reference: GrowthBook ``gbstats`` ``RatioStatistic`` / ``variance_of_ratios``; Deng, Knoblich & Lu
    (2018), "Applying the Delta Method in Metric Analytics", KDD, section 3.
    """
    _check_alpha(alpha)
    n_t, r_t, u_t = _ratio_moments(num_target, den_target, "target")
    n_c, r_c, u_c = _ratio_moments(num_control, den_control, "control")
    var_t, var_c = u_t / n_t, u_c / n_c

    diff = r_t - r_c
    rel = rel_variance = None
    if r_c != 0:
        rel = diff / r_c
        rel_variance = var_t / r_c**2 + var_c * r_t**2 / r_c**4
    return _build_lift(
        metric=metric,
        kind="ratio",
        adjustment="none",
        n_target=n_t,
        n_control=n_c,
        mean_target=r_t,
        mean_control=r_c,
        abs_lift=diff,
        abs_variance=var_t + var_c,
        rel_lift=rel,
        rel_variance=rel_variance,
        df=_welch_df(u_t, n_t, u_c, n_c),
        alpha=alpha,
    )


def cuped(target_y, target_x, control_y, control_x) -> tuple[np.ndarray, np.ndarray, float]:
    """CUPED-adjust the outcome Y of both arms with a pre-period covariate X.

    theta = cov(Y, X) / var(X) over both arms pooled; Y' = Y - theta (X - mean(X)) with the pooled
    mean of X. Centring keeps each arm's adjusted mean close to its observed mean; the difference of
    adjusted means does not depend on the centring. Returns (adjusted target, adjusted control, theta);
    theta is 0 (no adjustment) when X or Y does not vary, as in gbstats.

    Reference: Deng, Xu, Kohavi & Walker (2013), "Improving the Sensitivity of Online Controlled
    Experiments by Utilizing Pre-Experiment Data", WSDM; gbstats ``compute_theta``.
    """
    t_y, t_x = _values(target_y, "target outcome"), _values(target_x, "target covariate")
    c_y, c_x = _values(control_y, "control outcome"), _values(control_x, "control covariate")
    if t_y.size != t_x.size or c_y.size != c_x.size:
        raise ValueError(
            f"outcome and covariate differ in length: target {t_y.size} vs {t_x.size}, control {c_y.size} vs {c_x.size}"
        )
    y, x = np.concatenate([t_y, c_y]), np.concatenate([t_x, c_x])
    var_x, var_y = x.var(ddof=1), y.var(ddof=1)
    theta = 0.0 if var_x == 0 or var_y == 0 else float(np.cov(y, x, ddof=1)[0, 1] / var_x)
    x_mean = x.mean()
    return t_y - theta * (t_x - x_mean), c_y - theta * (c_x - x_mean), theta


def cuped_lift(target_y, target_x, control_y, control_x, *, metric: str, alpha: float = 0.05) -> Lift:
    """Lift of a per-customer mean after CUPED (``cuped``), reported beside the unadjusted ``mean_lift``.

    Absolute lift: d' = mean(Y'_T) - mean(Y'_C) = (mT - mC) - theta (mean X_T - mean X_C), variance
    s'^2_T/nT + s'^2_C/nC on the adjusted values, Welch df, t interval, p-value. Its interval is
    narrower than the unadjusted one by about sqrt(1 - corr(Y, X)^2).

    Relative lift (GrowthBook convention): r = d' / mC with the observed (unadjusted) control mean. Its
    delta-method variance accounts for mC appearing in both numerator and denominator:
    var(r) = var(Y'_T) / (nT mC^2) + var(a Y_C + b X_C) / nC with a = -(mC + d') / mC^2 and b = theta / mC
    (theta treated as known). gbstats' ``frequentist_variance_relative_cuped`` writes mT where this has
    mC + d' = mT - theta (mean X_T - mean X_C); the two differ by the covariate's chance imbalance only.

    Reference: Deng et al. (2013), WSDM; GrowthBook docs, "CUPED"; gbstats ``EffectMoments``.
    """
    _check_alpha(alpha)
    adj_t, adj_c, theta = cuped(target_y, target_x, control_y, control_x)
    # cuped() validated the inputs; these are plain float arrays from here on
    t_y, c_y, c_x = np.asarray(target_y, float), np.asarray(control_y, float), np.asarray(control_x, float)
    n_t, n_c = adj_t.size, adj_c.size
    m_t, m_c = t_y.mean(), c_y.mean()
    v_t, v_c = adj_t.var(ddof=1), adj_c.var(ddof=1)

    diff = adj_t.mean() - adj_c.mean()
    rel = rel_variance = None
    if m_c != 0:
        rel = diff / m_c
        control_gradient = -(m_c + diff) / m_c**2 * c_y + theta / m_c * c_x
        rel_variance = v_t / (n_t * m_c**2) + control_gradient.var(ddof=1) / n_c
    return _build_lift(
        metric=metric,
        kind="mean",
        adjustment="cuped",
        n_target=n_t,
        n_control=n_c,
        mean_target=m_t,
        mean_control=m_c,
        abs_lift=diff,
        abs_variance=v_t / n_t + v_c / n_c,
        rel_lift=rel,
        rel_variance=rel_variance,
        df=_welch_df(v_t, n_t, v_c, n_c),
        alpha=alpha,
    )


# --- outliers ---------------------------------------------------------------------------------


def _nonzero_cap(values: np.ndarray, percentile: float) -> float | None:
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    nonzero = values[values != 0]
    return float(np.percentile(nonzero, percentile)) if nonzero.size else None


def winsorize(values, percentile: float = 99.9) -> np.ndarray:
    """Cap values above the given percentile of the NON-ZERO values (zeros and values below stay).

    Platforms cap revenue per customer around the 99.9th percentile before means and variances
    (GrowthBook "percentile capping", Eppo "winsorization"); ignoring zeros keeps a low-conversion
    metric's cap from collapsing to 0. The percentile uses linear interpolation (numpy's default,
    like SQL PERCENTILE_CONT). Only the upper tail is capped. Pass both arms pooled, or use
    ``winsorize_arms``; never cap a ratio metric's denominator.
    """
    array = _values(values, "values", min_n=0)
    cap = _nonzero_cap(array, percentile)
    return array.copy() if cap is None else np.minimum(array, cap)


def winsorize_arms(target, control, percentile: float = 99.9) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Winsorise both arms at one cap taken from their pooled non-zero values (see ``winsorize``).

    Returns (capped target, capped control, cap); cap is None when every value is 0 (nothing capped).
    A cap per arm would treat the arms differently and bias the lift.
    """
    t, c = _values(target, "target", min_n=0), _values(control, "control", min_n=0)
    cap = _nonzero_cap(np.concatenate([t, c]), percentile)
    if cap is None:
        return t.copy(), c.copy(), None
    return np.minimum(t, cap), np.minimum(c, cap), cap


# --- checks and reporting ---------------------------------------------------------------------


def srm_check(n_target: int, n_control: int, control_share: float, threshold: float = 0.001) -> tuple[float, bool]:
    """Sample-ratio mismatch: chi-squared goodness of fit of the arm sizes to the configured split.

    chi2 = sum over arms (observed - expected)^2 / expected, expected = share x (nT + nC), 1 degree of
    freedom; returns (p-value, p < threshold). The 0.001 default keeps nightly checks from crying wolf;
    a flagged cohort's lift is invalid, not a result. No customers at all gives (1.0, False).

    Reference: Fabijan et al. (2019), "Diagnosing Sample Ratio Mismatch in Online Controlled
    Experiments", KDD; gbstats ``check_srm``.
    """
    if not 0 < control_share < 1:
        raise ValueError(f"control_share must be in (0, 1), got {control_share}")
    if n_target < 0 or n_control < 0:
        raise ValueError(f"arm sizes must be non-negative, got target {n_target}, control {n_control}")
    total = n_target + n_control
    if total == 0:
        return 1.0, False
    expected_control = control_share * total
    expected_target = total - expected_control
    chi2 = (n_control - expected_control) ** 2 / expected_control + (n_target - expected_target) ** 2 / expected_target
    p_value = float(stats.chi2.sf(chi2, df=1))
    return p_value, p_value < threshold


def incremental(lift: Lift) -> tuple[float, float, float]:
    """Incremental total in the target group: (mT - mC) x nT, with the absolute interval scaled alike.

    For revenue per customer this is the campaign's incremental revenue. Only per-customer means have
    a total; a ratio metric (kind "ratio") raises ValueError. With CUPED the adjusted lift is used.
    """
    if lift.kind != "mean":
        raise ValueError(f"{lift.metric}: incremental totals need a per-customer mean, not a {lift.kind} metric")
    n = lift.n_target
    return lift.abs_lift * n, lift.abs_ci_low * n, lift.abs_ci_high * n


def benjamini_hochberg(p_values, q: float = 0.05, m: int | None = None) -> list[bool]:
    """Which hypotheses to reject with the false discovery rate controlled at q (Benjamini-Hochberg).

    Sort the m p-values ascending, find the largest k with p_(k) <= k q / m, and reject the k smallest
    (step-up: a p-value above its own threshold is still rejected when a larger one passes). Returns
    one bool per input, in input order. ``m`` is the size of the family when only some of its
    p-values are given (those not given count as 1, never rejected; e.g. only p <= q can be).

    Reference: Benjamini & Hochberg (1995), "Controlling the False Discovery Rate", JRSS B 57(1).
    """
    if not 0 < q < 1:
        raise ValueError(f"q must be in (0, 1), got {q}")
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"expected a flat list of p-values, got shape {p.shape}")
    if p.size == 0:
        return []
    if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must be finite and in [0, 1]")
    if m is None:
        m = p.size
    elif m < p.size:
        raise ValueError(f"m ({m}) is smaller than the number of p-values ({p.size})")
    order = np.argsort(p, kind="stable")
    passes = p[order] <= q * np.arange(1, p.size + 1) / m
    rejected = np.zeros(p.size, dtype=bool)
    if passes.any():
        k = int(np.nonzero(passes)[0][-1]) + 1
        rejected[order[:k]] = True
    return rejected.tolist()
