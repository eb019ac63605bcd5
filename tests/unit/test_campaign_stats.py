"""Campaign statistics (jobs/activation/stats.py): hand-computed cases, independent implementations as
oracles (scipy, statsmodels, Spotify's confidence), and seeded simulations of coverage and error rates.

Simulation tolerances: with 400 experiments a 95 % interval's coverage has a standard error of
sqrt(0.95 x 0.05 / 400) = 1.1 points, so 0.92-0.98 is about +-2.7 standard errors; the seeds are fixed,
so the tests are deterministic.
"""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats._delta_method import NonlinearDeltaCov
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from jobs.activation import stats as cs

COVERAGE_BAND = (0.92, 0.98)


def _revenue(rng, n, *, conversion=0.1, multiplier=1.0, runs=None):
    """Zero-inflated, right-skewed revenue per customer: a buyer with `conversion`, lognormal spend (mean ~49.5).

    With `runs`, one row per simulated experiment.
    """
    shape = (n,) if runs is None else (runs, n)
    buys = rng.random(shape) < conversion
    return np.where(buys, rng.lognormal(mean=3.4, sigma=1.0, size=shape) * multiplier, 0.0)


def _all_finite(lift):
    return all(math.isfinite(value) for value in vars(lift).values() if isinstance(value, float))


# --- mean_lift: by hand --------------------------------------------------------------------------


def test_mean_lift_matches_a_hand_computed_example():
    # target 1..5: n 5, mean 3, s^2 = (4+1+0+1+4)/4 = 2.5; control 0,0,2,2: n 4, mean 1, s^2 = 4/3
    # d = 2, var(d) = 2.5/5 + (4/3)/4 = 5/6
    # df = (5/6)^2 / ((1/2)^2/4 + (1/3)^2/3) = (25/36) / (43/432) = 300/43 = 6.977
    # r = 2/1 = 2, var(r) = sC^2 mT^2/(mC^4 nC) + sT^2/(mC^2 nT) = (4/3)(9)/4 + 2.5/5 = 3 + 0.5 = 3.5
    lift = cs.mean_lift([1, 2, 3, 4, 5], [0, 0, 2, 2], metric="revenue")
    df = 300 / 43
    t = sps.t.ppf(0.975, df)
    assert (lift.n_target, lift.n_control, lift.mean_target, lift.mean_control) == (5, 4, 3.0, 1.0)
    assert lift.abs_lift == pytest.approx(2.0)
    assert lift.df == pytest.approx(df)
    assert (lift.abs_ci_low, lift.abs_ci_high) == pytest.approx((2 - t * math.sqrt(5 / 6), 2 + t * math.sqrt(5 / 6)))
    assert lift.p_value == pytest.approx(2 * sps.t.sf(2 / math.sqrt(5 / 6), df))
    assert lift.rel_lift == pytest.approx(2.0)
    assert (lift.rel_ci_low, lift.rel_ci_high) == pytest.approx((2 - t * math.sqrt(3.5), 2 + t * math.sqrt(3.5)))
    assert (lift.metric, lift.kind, lift.adjustment) == ("revenue", "mean", "none")


def test_incremental_scales_the_absolute_lift_and_its_interval_by_the_target_size():
    lift = cs.mean_lift([1, 2, 3, 4, 5], [0, 0, 2, 2], metric="revenue")
    # (3 - 1) x 5 customers = 10
    assert cs.incremental(lift) == pytest.approx((10.0, 5 * lift.abs_ci_low, 5 * lift.abs_ci_high))


def test_incremental_refuses_a_ratio_metric():
    lift = cs.ratio_lift([10, 20, 30], [1, 1, 2], [10, 5, 30], [1, 1, 2], metric="aov")
    with pytest.raises(ValueError, match="per-customer mean"):
        cs.incremental(lift)


# --- mean_lift: independent implementations ----------------------------------------------------


@pytest.mark.parametrize("seed, n_target, n_control", [(1, 200, 300), (2, 5_000, 500), (3, 40, 41)])
def test_absolute_lift_matches_scipy_and_statsmodels_welch(seed, n_target, n_control):
    rng = np.random.default_rng(seed)
    target, control = _revenue(rng, n_target, multiplier=1.2), _revenue(rng, n_control)
    lift = cs.mean_lift(target, control, metric="revenue")

    welch = sps.ttest_ind(target, control, equal_var=False)
    ci = welch.confidence_interval(0.95)
    assert lift.p_value == pytest.approx(welch.pvalue, rel=1e-9)
    assert lift.df == pytest.approx(welch.df, rel=1e-12)
    assert (lift.abs_ci_low, lift.abs_ci_high) == pytest.approx((ci.low, ci.high), rel=1e-9)

    compare = CompareMeans(DescrStatsW(target), DescrStatsW(control))
    low, high = compare.tconfint_diff(alpha=0.05, usevar="unequal")
    assert (lift.abs_ci_low, lift.abs_ci_high) == pytest.approx((low, high), rel=1e-9)
    assert lift.p_value == pytest.approx(compare.ttest_ind(usevar="unequal")[1], rel=1e-9)


def test_alpha_sets_the_interval_level():
    rng = np.random.default_rng(4)
    target, control = _revenue(rng, 500, multiplier=1.1), _revenue(rng, 500)
    narrow = cs.mean_lift(target, control, metric="revenue", alpha=0.2)
    ci = sps.ttest_ind(target, control, equal_var=False).confidence_interval(0.8)
    assert (narrow.abs_ci_low, narrow.abs_ci_high) == pytest.approx((ci.low, ci.high), rel=1e-9)


@pytest.fixture(scope="module")
def students_t_test():
    # spotify_confidence pulls in pandas/statsmodels/plotting at import (~4 s cold), so only tests that use it pay
    from spotify_confidence import StudentsTTest

    def run(target, control, *, absolute):
        summary = pd.DataFrame(
            {
                "arm": ["control", "target"],
                "total": [control.sum(), target.sum()],
                "total_squares": [(control**2).sum(), (target**2).sum()],
                "customers": [control.size, target.size],
            }
        )
        with warnings.catch_warnings():  # its pandas groupby calls raise FutureWarnings that are not ours
            warnings.simplefilter("ignore", FutureWarning)
            test = StudentsTTest(
                summary,
                numerator_column="total",
                numerator_sum_squares_column="total_squares",
                denominator_column="customers",
                categorical_group_columns="arm",
            )
            return test.difference(level_1="control", level_2="target", absolute=absolute).iloc[0]

    return run


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_absolute_lift_matches_spotify_confidence_students_t(students_t_test, seed):
    rng = np.random.default_rng(seed)
    target, control = _revenue(rng, 3_000, multiplier=1.15), _revenue(rng, 2_000)
    lift = cs.mean_lift(target, control, metric="revenue")
    row = students_t_test(target, control, absolute=True)
    # Spotify derives variances from sums of squares, hence a float tolerance rather than exact equality
    assert lift.abs_lift == pytest.approx(row["difference"], rel=1e-9)
    assert (lift.abs_ci_low, lift.abs_ci_high) == pytest.approx((row["ci_lower"], row["ci_upper"]), rel=1e-9)
    assert lift.p_value == pytest.approx(row["p-value"], rel=1e-9)


def test_spotify_relative_interval_is_the_absolute_one_divided_by_the_control_mean(students_t_test):
    """Spotify's absolute=False is not the delta method, so it cannot check ours: it ignores the control
    mean's noise and is narrower. The relative variance is checked against statsmodels' generic delta
    method and a Monte-Carlo spread instead (next tests)."""
    rng = np.random.default_rng(14)
    target, control = _revenue(rng, 3_000, multiplier=1.3), _revenue(rng, 3_000)
    lift = cs.mean_lift(target, control, metric="revenue")
    row = students_t_test(target, control, absolute=False)
    m_c = control.mean()
    assert (row["ci_lower"], row["ci_upper"]) == pytest.approx((lift.abs_ci_low / m_c, lift.abs_ci_high / m_c))
    assert row["difference"] == pytest.approx(lift.rel_lift, rel=1e-9)
    assert row["ci_upper"] - row["ci_lower"] < 0.95 * (lift.rel_ci_high - lift.rel_ci_low)


@pytest.mark.parametrize("seed", [21, 22])
def test_relative_variance_matches_statsmodels_numerical_delta_method(seed):
    rng = np.random.default_rng(seed)
    target, control = _revenue(rng, 4_000, multiplier=1.4), _revenue(rng, 2_500)
    lift = cs.mean_lift(target, control, metric="revenue")
    # r = mT / mC - 1 with independent arm means: statsmodels differentiates it numerically (complex step)
    delta = NonlinearDeltaCov(
        lambda p: np.atleast_1d(p[0] / p[1] - 1),
        np.array([target.mean(), control.mean()]),
        np.diag([target.var(ddof=1) / target.size, control.var(ddof=1) / control.size]),
    )
    se = math.sqrt(delta.cov()[0, 0])
    t = sps.t.ppf(0.975, lift.df)
    assert lift.rel_lift == pytest.approx(delta.predicted()[0], rel=1e-12)
    assert (lift.rel_ci_low, lift.rel_ci_high) == pytest.approx((lift.rel_lift - t * se, lift.rel_lift + t * se))


def test_relative_standard_error_matches_the_monte_carlo_spread_of_the_estimate():
    # +50 % effect so the control mean's own noise matters: the naive se (absolute se / mC) is ~15 % too small
    rng = np.random.default_rng(31)
    n, runs = 1_000, 1_500
    estimates, delta_ses, naive_ses = [], [], []
    for target, control in zip(
        _revenue(rng, n, conversion=0.2, multiplier=1.5, runs=runs),
        _revenue(rng, n, conversion=0.2, runs=runs),
        strict=True,
    ):
        lift = cs.mean_lift(target, control, metric="revenue")
        t = sps.t.ppf(0.975, lift.df)
        estimates.append(lift.rel_lift)
        delta_ses.append((lift.rel_ci_high - lift.rel_ci_low) / (2 * t))
        naive_ses.append((lift.abs_ci_high - lift.abs_ci_low) / (2 * t) / lift.mean_control)
    spread = np.std(estimates, ddof=1)  # Monte-Carlo error of this sd: ~1/sqrt(2 x 1500) = 1.8 %
    assert np.mean(delta_ses) == pytest.approx(spread, rel=0.06)
    assert np.mean(naive_ses) < 0.92 * spread  # the check above can tell the two methods apart


# --- mean_lift: coverage ------------------------------------------------------------------------


def test_aa_relative_interval_covers_zero_at_the_nominal_rate():
    rng = np.random.default_rng(41)
    runs = 400
    covered_rel = covered_abs = false_positives = 0
    for target, control in zip(_revenue(rng, 2_000, runs=runs), _revenue(rng, 2_000, runs=runs), strict=True):
        lift = cs.mean_lift(target, control, metric="revenue")
        covered_rel += lift.rel_ci_low <= 0 <= lift.rel_ci_high
        covered_abs += lift.abs_ci_low <= 0 <= lift.abs_ci_high
        false_positives += lift.p_value < 0.05
    assert COVERAGE_BAND[0] <= covered_rel / runs <= COVERAGE_BAND[1]
    assert COVERAGE_BAND[0] <= covered_abs / runs <= COVERAGE_BAND[1]
    assert 0.02 <= false_positives / runs <= 0.08


def test_planted_ten_percent_lift_on_zero_inflated_revenue_is_covered_at_the_nominal_rate():
    # ~300 buyers per arm with lognormal spend: the ratio's skew leaves the relative interval a little short
    # (~94 % over 4,000 runs, misses mostly below), so 1,000 runs (sd 0.7 points) keep the band meaningful
    rng = np.random.default_rng(42)
    runs, n = 1_000, 3_000
    true_abs = 0.1 * 0.1 * math.exp(3.4 + 0.5)  # +10 % of conversion x lognormal mean
    covered_rel = covered_abs = 0
    for target, control in zip(_revenue(rng, n, multiplier=1.1, runs=runs), _revenue(rng, n, runs=runs), strict=True):
        lift = cs.mean_lift(target, control, metric="revenue")
        covered_rel += lift.rel_ci_low <= 0.10 <= lift.rel_ci_high
        covered_abs += lift.abs_ci_low <= true_abs <= lift.abs_ci_high
    assert COVERAGE_BAND[0] <= covered_rel / runs <= COVERAGE_BAND[1]
    assert COVERAGE_BAND[0] <= covered_abs / runs <= COVERAGE_BAND[1]


# --- degenerate inputs ---------------------------------------------------------------------------


def test_nobody_converting_in_either_arm_gives_a_zero_lift_with_a_zero_width_interval():
    lift = cs.mean_lift(np.zeros(500), np.zeros(400), metric="conversion")
    assert (lift.abs_lift, lift.abs_ci_low, lift.abs_ci_high, lift.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert (lift.rel_lift, lift.rel_ci_low, lift.rel_ci_high) == (None, None, None)
    assert _all_finite(lift)


def test_a_constant_difference_is_certain_and_a_zero_control_mean_has_no_relative_lift():
    lift = cs.mean_lift(np.ones(10), np.zeros(10), metric="conversion")
    assert (lift.abs_lift, lift.abs_ci_low, lift.abs_ci_high, lift.p_value) == (1.0, 1.0, 1.0, 0.0)
    assert lift.rel_lift is None
    both_constant = cs.mean_lift(np.full(10, 2.0), np.ones(10), metric="orders")
    assert (both_constant.rel_lift, both_constant.rel_ci_low, both_constant.rel_ci_high) == (1.0, 1.0, 1.0)
    one_constant = cs.mean_lift([0, 1, 0, 1], np.zeros(4), metric="conversion")
    assert one_constant.df == pytest.approx(3.0)  # only the target's variance counts: nT - 1
    assert _all_finite(lift) and _all_finite(both_constant) and _all_finite(one_constant)


@pytest.mark.parametrize(
    "target, control, message",
    [
        ([1.0], [1.0, 2.0], "target: needs at least 2"),
        ([1.0, 2.0], [], "control: needs at least 2"),
        ([1.0, np.nan, 3.0], [1.0, 2.0], "1 of 3 values are NaN"),
        ([[1.0, 2.0]], [1.0, 2.0], "1-D"),
    ],
)
def test_unusable_arms_are_refused_with_the_reason(target, control, message):
    with pytest.raises(ValueError, match=message):
        cs.mean_lift(target, control, metric="revenue")


def test_alpha_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="alpha"):
        cs.mean_lift([1, 2], [1, 2], metric="revenue", alpha=5)


# --- ratio metrics -------------------------------------------------------------------------------


def test_ratio_lift_matches_a_hand_computed_example():
    # target revenue 10,0,30,20 over orders 1,0,2,1: R = 60/4 = 15; M - R D = -5,0,0,5, s^2 = 50/3, mean D = 1
    #   var(RT) = (50/3) / (4 x 1^2) = 25/6
    # control revenue 12,18,0 over orders 1,2,0: R = 30/3 = 10; M - R D = 2,-2,0, s^2 = 4, var(RC) = 4/3
    # abs 5, var 25/6 + 4/3 = 5.5; rel 0.5, var = (25/6)/10^2 + (4/3) 15^2/10^4 = 0.041667 + 0.03
    # df = 5.5^2 / ((25/6)^2/3 + (4/3)^2/2) = 30.25 / 6.6759 = 4.531
    lift = cs.ratio_lift([10, 0, 30, 20], [1, 0, 2, 1], [12, 18, 0], [1, 2, 0], metric="aov")
    df = 5.5**2 / ((25 / 6) ** 2 / 3 + (4 / 3) ** 2 / 2)
    t = sps.t.ppf(0.975, df)
    rel_se = math.sqrt(25 / 600 + 0.03)
    assert (lift.mean_target, lift.mean_control, lift.abs_lift, lift.rel_lift) == pytest.approx((15, 10, 5, 0.5))
    assert lift.df == pytest.approx(df)
    assert (lift.abs_ci_low, lift.abs_ci_high) == pytest.approx((5 - t * math.sqrt(5.5), 5 + t * math.sqrt(5.5)))
    assert (lift.rel_ci_low, lift.rel_ci_high) == pytest.approx((0.5 - t * rel_se, 0.5 + t * rel_se))
    assert lift.kind == "ratio"


def _orders(rng, n, *, multiplier=1.0):
    """Orders per customer (mostly 0) and revenue = sum of their lognormal order values."""
    orders = rng.poisson(0.3, n)
    revenue = np.array([rng.lognormal(3.4, 0.8, k).sum() * multiplier for k in orders])
    return revenue, orders.astype(float)


def test_ratio_variance_matches_statsmodels_numerical_delta_method():
    rng = np.random.default_rng(51)
    (num_t, den_t), (num_c, den_c) = _orders(rng, 3_000, multiplier=1.1), _orders(rng, 2_000)
    lift = cs.ratio_lift(num_t, den_t, num_c, den_c, metric="aov")

    # parameters: the four per-customer means; covariance: each arm's sample covariance / n, arms independent
    cov = np.zeros((4, 4))
    cov[:2, :2] = np.cov(num_t, den_t, ddof=1) / num_t.size
    cov[2:, 2:] = np.cov(num_c, den_c, ddof=1) / num_c.size
    means = np.array([num_t.mean(), den_t.mean(), num_c.mean(), den_c.mean()])
    delta = NonlinearDeltaCov(
        lambda p: np.array([p[0] / p[1] - p[2] / p[3], (p[0] / p[1]) / (p[2] / p[3]) - 1]), means, cov
    )
    abs_se, rel_se = np.sqrt(np.diag(delta.cov()))
    t = sps.t.ppf(0.975, lift.df)
    assert (lift.abs_lift, lift.rel_lift) == pytest.approx(tuple(delta.predicted()), rel=1e-12)
    assert (lift.abs_ci_high - lift.abs_ci_low) / (2 * t) == pytest.approx(abs_se, rel=1e-8)
    assert (lift.rel_ci_high - lift.rel_ci_low) / (2 * t) == pytest.approx(rel_se, rel=1e-8)


def test_ratio_standard_errors_match_a_bootstrap_over_customers():
    rng = np.random.default_rng(52)
    (num_t, den_t), (num_c, den_c) = _orders(rng, 2_000, multiplier=1.2), _orders(rng, 2_000)
    lift = cs.ratio_lift(num_t, den_t, num_c, den_c, metric="aov")

    def boot_ratios(num, den, draws=1_500):
        idx = rng.integers(0, num.size, size=(draws, num.size))
        return num[idx].sum(axis=1) / den[idx].sum(axis=1)

    r_t, r_c = boot_ratios(num_t, den_t), boot_ratios(num_c, den_c)
    t = sps.t.ppf(0.975, lift.df)
    # bootstrap sd has ~1/sqrt(2 x 1500) = 1.8 % Monte-Carlo error; the delta method is first order in 1/n
    assert (lift.abs_ci_high - lift.abs_ci_low) / (2 * t) == pytest.approx(np.std(r_t - r_c, ddof=1), rel=0.07)
    assert (lift.rel_ci_high - lift.rel_ci_low) / (2 * t) == pytest.approx(np.std(r_t / r_c - 1, ddof=1), rel=0.07)


def test_aa_ratio_interval_covers_zero_at_the_nominal_rate():
    rng = np.random.default_rng(53)
    runs, n = 300, 1_500
    covered = 0
    for _ in range(runs):
        orders_t, orders_c = rng.poisson(0.3, n), rng.poisson(0.3, n)
        # revenue = orders x a per-customer average order value (gamma), so numerator and denominator correlate
        num_t = orders_t * rng.gamma(4.0, 12.5, n)
        num_c = orders_c * rng.gamma(4.0, 12.5, n)
        lift = cs.ratio_lift(num_t, orders_t, num_c, orders_c, metric="aov")
        covered += lift.rel_ci_low <= 0 <= lift.rel_ci_high
    assert 0.915 <= covered / runs <= 0.985  # 300 runs: sd 1.3 points


def test_ratio_with_no_orders_in_an_arm_is_refused():
    with pytest.raises(ValueError, match="control: the denominator sums to 0"):
        cs.ratio_lift([10, 20], [1, 1], [0, 0], [0, 0], metric="aov")
    with pytest.raises(ValueError, match="numerator has 3 customers but denominator has 2"):
        cs.ratio_lift([10, 20, 5], [1, 1], [1, 2], [1, 1], metric="aov")


# --- CUPED ---------------------------------------------------------------------------------------


def _pre_post(rng, n, *, effect=0.0, runs=None):
    """Pre-period revenue X (gamma, mean 50) and post-period Y = 10 + 0.6 X + noise + effect; corr ~0.73."""
    shape = (n,) if runs is None else (runs, n)
    x = rng.gamma(2.0, 25.0, shape)
    return 10 + 0.6 * x + rng.normal(0, 20, shape) + effect, x


def test_cuped_theta_is_the_pooled_regression_slope_and_centres_on_the_pooled_mean():
    # pooled Y = 1,3,5,2 (mean 2.75) and X = 0,2,3,1 (mean 1.5); centred X -1.5,0.5,1.5,-0.5
    # theta = sum(Yc Xc) / sum(Xc^2) = (2.625 + 0.125 + 3.375 + 0.375) / 5 = 6.5 / 5 = 1.3
    # Y' = Y - 1.3 (X - 1.5): target 1 + 1.95 = 2.95, 3 - 0.65 = 2.35; control 5 - 1.95 = 3.05, 2 + 0.65 = 2.65
    adj_t, adj_c, theta = cs.cuped([1, 3], [0, 2], [5, 2], [3, 1])
    assert theta == pytest.approx(1.3)
    assert adj_t == pytest.approx([2.95, 2.35])
    assert adj_c == pytest.approx([3.05, 2.65])
    assert theta == pytest.approx(np.polyfit([0, 2, 3, 1], [1, 3, 5, 2], 1)[0])  # least-squares slope, pooled


def test_cuped_interval_is_narrower_by_sqrt_one_minus_corr_squared():
    rng = np.random.default_rng(61)
    (y_t, x_t), (y_c, x_c) = _pre_post(rng, 5_000, effect=2.0), _pre_post(rng, 5_000)
    plain = cs.mean_lift(y_t, y_c, metric="revenue")
    adjusted = cs.cuped_lift(y_t, x_t, y_c, x_c, metric="revenue")
    corr = np.corrcoef(np.concatenate([y_t, y_c]), np.concatenate([x_t, x_c]))[0, 1]
    ratio = (adjusted.abs_ci_high - adjusted.abs_ci_low) / (plain.abs_ci_high - plain.abs_ci_low)
    assert corr > 0.6
    assert ratio == pytest.approx(math.sqrt(1 - corr**2), rel=0.02)
    assert adjusted.adjustment == "cuped" and plain.adjustment == "none"
    assert (adjusted.mean_target, adjusted.mean_control) == pytest.approx((y_t.mean(), y_c.mean()))


def test_cuped_matches_an_ancova_regression_in_statsmodels():
    from statsmodels.regression.linear_model import OLS  # lighter than statsmodels.api

    rng = np.random.default_rng(62)
    (y_t, x_t), (y_c, x_c) = _pre_post(rng, 4_000, effect=3.0), _pre_post(rng, 3_000)
    adjusted = cs.cuped_lift(y_t, x_t, y_c, x_c, metric="revenue")
    # ANCOVA y ~ 1 + treated + x estimates the slope within arms, CUPED pools it across arms: the estimates
    # agree to a hundredth of a standard error, and the heteroscedasticity-robust (HC2) se to half a percent
    treated = np.r_[np.ones(y_t.size), np.zeros(y_c.size)]
    design = np.column_stack([np.ones(treated.size), treated, np.r_[x_t, x_c]])
    fit = OLS(np.r_[y_t, y_c], design).fit(cov_type="HC2")
    se = (adjusted.abs_ci_high - adjusted.abs_ci_low) / (2 * sps.t.ppf(0.975, adjusted.df))
    assert abs(adjusted.abs_lift - fit.params[1]) < 0.01 * se
    assert se == pytest.approx(fit.bse[1], rel=0.005)


def test_cuped_relative_variance_matches_statsmodels_numerical_delta_method():
    rng = np.random.default_rng(63)
    (y_t, x_t), (y_c, x_c) = _pre_post(rng, 3_000, effect=4.0), _pre_post(rng, 2_000)
    adjusted = cs.cuped_lift(y_t, x_t, y_c, x_c, metric="revenue")
    _, _, theta = cs.cuped(y_t, x_t, y_c, x_c)
    # r = (YT - theta XT - YC + theta XC) / YC on the four arm means, theta held fixed
    cov = np.zeros((4, 4))
    cov[:2, :2] = np.cov(y_t, x_t, ddof=1) / y_t.size
    cov[2:, 2:] = np.cov(y_c, x_c, ddof=1) / y_c.size
    means = np.array([y_t.mean(), x_t.mean(), y_c.mean(), x_c.mean()])
    delta = NonlinearDeltaCov(lambda p: np.atleast_1d((p[0] - theta * p[1] - p[2] + theta * p[3]) / p[2]), means, cov)
    t = sps.t.ppf(0.975, adjusted.df)
    assert adjusted.rel_lift == pytest.approx(delta.predicted()[0], rel=1e-10)
    assert adjusted.rel_lift == pytest.approx(adjusted.abs_lift / y_c.mean())
    assert (adjusted.rel_ci_high - adjusted.rel_ci_low) / (2 * t) == pytest.approx(
        math.sqrt(delta.cov()[0, 0]), rel=1e-8
    )


@pytest.mark.parametrize("effect", [0.0, 5.0], ids=["aa", "planted"])
def test_cuped_is_unbiased_and_covers_the_true_lift(effect):
    rng = np.random.default_rng(64)
    runs, n = 400, 1_000
    true_rel = effect / (10 + 0.6 * 50)  # control mean E[Y] = 10 + 0.6 x 50 = 40
    ys_t, xs_t = _pre_post(rng, n, effect=effect, runs=runs)
    ys_c, xs_c = _pre_post(rng, n, runs=runs)
    estimates, covered_abs, covered_rel, narrower = [], 0, 0, 0
    for y_t, x_t, y_c, x_c in zip(ys_t, xs_t, ys_c, xs_c, strict=True):
        adjusted = cs.cuped_lift(y_t, x_t, y_c, x_c, metric="revenue")
        plain = cs.mean_lift(y_t, y_c, metric="revenue")
        estimates.append(adjusted.abs_lift)
        covered_abs += adjusted.abs_ci_low <= effect <= adjusted.abs_ci_high
        covered_rel += adjusted.rel_ci_low <= true_rel <= adjusted.rel_ci_high
        narrower += adjusted.abs_ci_high - adjusted.abs_ci_low < plain.abs_ci_high - plain.abs_ci_low
    # mean of 400 estimates with sd ~ sqrt(2 x 0.47 x 1625 / 1000) = 1.23: its own se is ~0.06
    assert np.mean(estimates) == pytest.approx(effect, abs=0.2)
    assert COVERAGE_BAND[0] <= covered_abs / runs <= COVERAGE_BAND[1]
    assert COVERAGE_BAND[0] <= covered_rel / runs <= COVERAGE_BAND[1]
    assert narrower == runs


def test_a_constant_covariate_leaves_cuped_equal_to_the_plain_lift():
    rng = np.random.default_rng(65)
    y_t, y_c = rng.normal(10, 2, 300), rng.normal(10, 2, 300)
    adj_t, adj_c, theta = cs.cuped(y_t, np.ones(300), y_c, np.ones(300))
    assert theta == 0.0 and np.array_equal(adj_t, y_t) and np.array_equal(adj_c, y_c)
    adjusted = cs.cuped_lift(y_t, np.ones(300), y_c, np.ones(300), metric="revenue")
    plain = cs.mean_lift(y_t, y_c, metric="revenue")
    assert (adjusted.abs_ci_low, adjusted.abs_ci_high, adjusted.rel_ci_low, adjusted.rel_ci_high) == pytest.approx(
        (plain.abs_ci_low, plain.abs_ci_high, plain.rel_ci_low, plain.rel_ci_high)
    )


# --- winsorising ---------------------------------------------------------------------------------


def test_winsorize_caps_at_a_percentile_of_the_non_zero_values_and_keeps_zeros():
    # non-zero values 1, 2, 3, 100: their 50th percentile (linear) is 2.5; the zeros do not pull it down
    assert cs.winsorize([0, 0, 0, 0, 1, 2, 3, 100], percentile=50).tolist() == [0, 0, 0, 0, 1, 2, 2.5, 2.5]
    assert cs.winsorize([0, 0, 5, 100], percentile=100).tolist() == [0, 0, 5, 100]
    assert cs.winsorize(np.zeros(4)).tolist() == [0, 0, 0, 0]


def test_winsorize_at_the_default_touches_only_the_extreme_tail():
    rng = np.random.default_rng(71)
    revenue = _revenue(rng, 100_000)
    capped = cs.winsorize(revenue)
    changed = capped != revenue
    nonzero = np.count_nonzero(revenue)
    assert np.array_equal(capped[revenue == 0], revenue[revenue == 0])
    assert 1 <= changed.sum() <= 0.0015 * nonzero  # 99.9th percentile: ~0.1 % of buyers
    assert revenue[changed].min() > capped.max() == pytest.approx(np.percentile(revenue[revenue > 0], 99.9))


def test_winsorize_arms_uses_one_cap_from_both_arms_pooled():
    target, control = np.array([0, 1, 2, 50.0]), np.array([0, 0, 3, 4, 10.0])
    capped_t, capped_c, cap = cs.winsorize_arms(target, control, percentile=75)
    assert cap == pytest.approx(np.percentile([1, 2, 50, 3, 4, 10], 75))  # 8.5
    assert capped_t.tolist() == [0, 1, 2, cap] and capped_c.tolist() == [0, 0, 3, 4, cap]
    assert cs.winsorize_arms(np.zeros(3), np.zeros(2))[2] is None
    with pytest.raises(ValueError, match="percentile"):
        cs.winsorize_arms(target, control, percentile=0)


# --- sample-ratio mismatch -----------------------------------------------------------------------


def test_srm_p_value_matches_a_hand_computed_chi_squared():
    # 5,050 vs 4,950 at 50/50: chi2 = 2 x 50^2 / 5,000 = 1, p = P(chi2_1 > 1) = 2 (1 - Phi(1)) = 0.3173
    p, flagged = cs.srm_check(5_050, 4_950, control_share=0.5)
    assert p == pytest.approx(2 * (1 - sps.norm.cdf(1.0)))
    assert not flagged


@pytest.mark.parametrize("n_target, n_control, share", [(5_000, 4_200, 0.5), (9_300, 700, 0.1), (90_120, 9_880, 0.1)])
def test_srm_p_value_matches_scipy_and_spotify_confidence(n_target, n_control, share):
    from spotify_confidence.analysis.frequentist.sample_ratio_test import sample_ratio_test

    p, _ = cs.srm_check(n_target, n_control, control_share=share)
    scipy_p = sps.chisquare(
        [n_target, n_control], f_exp=[(1 - share) * (n_target + n_control), share * (n_target + n_control)]
    )
    assert p == pytest.approx(scipy_p.pvalue, rel=1e-9)
    counts = pd.DataFrame({"arm": ["target", "control"], "customers": [n_target, n_control]})
    spotify_p, _ = sample_ratio_test(counts, "arm", "customers", {"target": 1 - share, "control": share})
    # spotify returns 1 - cdf, which underflows to 0 where sf does not
    assert p == pytest.approx(spotify_p, rel=1e-6, abs=1e-15)


@pytest.mark.parametrize("n_target, n_control, share", [(5_000, 4_200, 0.5), (9_300, 700, 0.1)])
def test_srm_fires_on_a_broken_split(n_target, n_control, share):
    p, flagged = cs.srm_check(n_target, n_control, control_share=share)
    assert flagged and p < 1e-10


def test_srm_rarely_fires_on_a_correct_split():
    rng = np.random.default_rng(81)
    controls = rng.binomial(10_000, 0.1, size=2_000)
    results = [cs.srm_check(10_000 - c, c, control_share=0.1) for c in controls]
    flagged = sum(f for _, f in results)
    below_5pct = sum(p < 0.05 for p, _ in results) / len(results)
    assert flagged <= 8  # expected 2 of 2,000 at p < 0.001
    assert 0.035 <= below_5pct <= 0.065  # p-values are uniform under a correct split


def test_srm_guards_its_inputs():
    assert cs.srm_check(0, 0, control_share=0.5) == (1.0, False)
    with pytest.raises(ValueError, match="control_share"):
        cs.srm_check(10, 10, control_share=1.0)
    with pytest.raises(ValueError, match="non-negative"):
        cs.srm_check(-1, 10, control_share=0.5)


# --- Benjamini-Hochberg --------------------------------------------------------------------------


def test_benjamini_hochberg_on_known_examples():
    # m = 5, thresholds 0.01 0.02 0.03 0.04 0.05; sorted 0.005 0.01 0.03 0.04 pass, 0.20 does not
    assert cs.benjamini_hochberg([0.01, 0.04, 0.03, 0.005, 0.20]) == [True, True, True, True, False]
    # step-up: m = 4, thresholds 0.0125 0.025 0.0375 0.05; 0.02 and 0.03 miss their own thresholds but
    # 0.035 passes its, so the three smallest are all rejected
    assert cs.benjamini_hochberg([0.5, 0.035, 0.02, 0.03]) == [False, True, True, True]
    assert cs.benjamini_hochberg([0.02, 0.03], q=0.01) == [False, False]
    assert cs.benjamini_hochberg([]) == []
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cs.benjamini_hochberg([0.1, 1.5])


def test_benjamini_hochberg_matches_statsmodels():
    rng = np.random.default_rng(91)
    p_values = np.r_[rng.uniform(size=150), rng.beta(0.1, 20, size=50)]  # nulls and real effects
    for q in (0.01, 0.05, 0.2):
        expected = multipletests(p_values, alpha=q, method="fdr_bh")[0]
        assert cs.benjamini_hochberg(p_values, q=q) == expected.tolist()
    assert 0 < sum(cs.benjamini_hochberg(p_values)) < 200


def test_benjamini_hochberg_over_a_larger_family_counts_the_missing_p_values_as_not_rejected():
    p = [0.001, 0.01, 0.02, 0.04]
    family = 50  # the other 46 hypotheses were never tested (p = 1)
    want = multipletests(p + [1.0] * (family - len(p)), alpha=0.05, method="fdr_bh")[0][: len(p)]
    assert cs.benjamini_hochberg(p, 0.05, m=family) == want.tolist() == [True, False, False, False]
    assert cs.benjamini_hochberg(p, 0.05) == [True, True, True, True]
    with pytest.raises(ValueError, match="m"):
        cs.benjamini_hochberg(p, 0.05, m=3)
