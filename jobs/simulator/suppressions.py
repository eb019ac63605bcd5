"""The shop's global suppression list: customers who unsubscribed from a channel, whose email
address or phone number bounced, or who complained (marked a message as spam). A (customer,
channel) is suppressed once, by its first such event; the row never changes afterwards
(``updated_at = suppressed_at``). Events run from each customer's signup to the end of the
simulated period, so customers registered before it bring a history of older suppressions.

Drawn from a random stream of its own (``suppressions``): every other part of the world is
exactly what it was before suppressions existed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from jobs.platform.interface import SUPPRESSION_CHANNELS
from jobs.simulator.spec import NO_TIME, NS_PER_DAY, SimulationSpec, _Calendar, _ms, _rng, _utc

MONTH_NS = 30 * NS_PER_DAY
# Events that recur at a steady rate: (channel, reason, who can have it, rate per customer and
# 30 days). Only customers who agreed to marketing on a channel get messages to unsubscribe
# from or complain about; "all" is a customer asking never to be contacted again.
RATES = (
    ("email", "unsubscribed", "consent_email", 0.005),  # ~0.3% of all registered customers a month
    ("email", "complained", "consent_email", 0.0004),
    ("sms", "unsubscribed", "consent_sms", 0.006),  # replying "TD" is easy: ~0.2% of all a month
    ("push", "unsubscribed", "consent_push", 0.003),
    ("all", "unsubscribed", "everyone", 0.0002),
    ("all", "complained", "everyone", 0.00005),
)
# Addresses that bounce, once, at some time between signup and the end of the period:
# (channel, share of the customers with such an address).
BOUNCES = (("email", 0.015), ("sms", 0.005))


def _by_the_end(applies: np.ndarray, when: np.ndarray, end: int) -> np.ndarray:
    """Event instants (whole ms) where they apply and fall before ``end``, else ``NO_TIME``."""
    hit = applies & (when < end)
    return np.where(hit, _ms(np.where(hit, when, 0)), NO_TIME)


def _make_suppressions(spec: SimulationSpec, cal: _Calendar, users: dict) -> pd.DataFrame:
    """One row per suppressed (user_id, channel) by the end of the period: ``user_id``,
    ``channel``, ``reason``, ``suppressed_at`` and ``updated_at`` (UTC, equal)."""
    rng = _rng(spec, "suppressions")
    frame, signup = users["frame"], users["signup"]
    n, end = len(signup), cal.day_start[-1]
    who = {
        "everyone": np.ones(n, bool),
        "consent_email": frame["consent_email"].to_numpy(bool),
        "consent_sms": frame["consent_sms"].to_numpy(bool) & frame["phone"].notna().to_numpy(),
        "consent_push": frame["consent_push"].to_numpy(bool),
    }
    has_address = {"email": frame["email"].notna().to_numpy(), "sms": frame["phone"].notna().to_numpy()}
    candidates = []  # (channel, reason, time per user: NO_TIME when none by the end)
    for channel, reason, group, rate in RATES:
        when = signup + rng.exponential(MONTH_NS / rate, n)  # the first event of a Poisson process
        candidates.append((channel, reason, _by_the_end(who[group], when, end)))
    for channel, share in BOUNCES:
        bad = (rng.random(n) < share) & has_address[channel]
        when = signup + rng.random(n) * np.maximum(end - signup, 0)
        candidates.append((channel, "bounced", _by_the_end(bad, when, end)))

    parts = []
    for channel in SUPPRESSION_CHANNELS:
        reasons = [(reason, when) for c, reason, when in candidates if c == channel]
        times = np.vstack([when for _, when in reasons])
        first = times.argmin(axis=0)  # the first event suppresses the channel; later ones change nothing
        at = times[first, np.arange(n)]
        users_hit = np.flatnonzero(at != NO_TIME)
        parts.append(
            pd.DataFrame(
                {
                    "user_id": users_hit + 1,
                    "channel": channel,
                    "reason": np.array([r for r, _ in reasons], object)[first[users_hit]],
                    "suppressed_at": _utc(at[users_hit]),
                }
            )
        )
    rows = pd.concat(parts, ignore_index=True)
    rows["user_id"] = rows["user_id"].astype(np.int64)
    rows["updated_at"] = rows["suppressed_at"]
    return rows.sort_values("user_id", kind="stable", ignore_index=True)  # channels stay in interface order
