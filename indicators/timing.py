"""Time: when an entity acts, against its own daily rhythm."""

from __future__ import annotations

from pydantic import Field

from riskcockpit.indicators.base import Indicator, Params, register
from riskcockpit.indicators.support import Plain, new_signal, short_history


class UnusualHourParams(Params):
    utc_offset_hours: float = Field(8.0, ge=-12, le=14, description="customers' local time (China: +8)")
    min_history: int = Field(20, ge=1, description="transactions before the profile is trusted")
    share: float = Field(0.02, gt=0, lt=1, description="hit if this hour holds less than this share of the history")
    max_count: int = Field(2000, ge=100, description="counts are halved past this, so old habits fade")


@register
class UnusualHour(Indicator):
    """An hour of day (local time) the account rarely uses, from a 24-bin profile.

    >>> from riskcockpit.indicators.base import tx_at
    >>> ind, state = UnusualHour(utc_offset_hours=0, min_history=10), {}
    >>> for d in range(12):
    ...     _ = ind.evaluate(state, tx_at(d * 1440 + 600))   # every day at 10:00
    >>> ind.evaluate(state, tx_at(20 * 1440 + 180)).hit       # 03:00
    True
    >>> ind.evaluate(state, tx_at(21 * 1440 + 610)).hit       # 10:10
    False
    """

    name = "unusual_hour"
    risky_tail = "low"  # a rare share of the account's activity is the risk
    family = "time"
    typology = "account takeover, night-time fraud"
    Params = UnusualHourParams

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self.p = Plain(self.params)
        self._short = short_history(self.name, self.p.min_history)

    def _hour(self, tx) -> int:
        return int((tx.ts_ms / 3_600_000 + self.p.utc_offset_hours) % 24)

    def score_one(self, state, tx):
        hours = state.get("h")
        total = sum(hours) if hours else 0
        p = self.p
        if total < p.min_history:
            return self._short[total]
        hour = int((tx.ts_ms / 3_600_000 + p.utc_offset_hours) % 24)
        share = hours[hour] / total
        return new_signal((self.name, round(share, 4), share < p.share,
                           f"{hour:02d}h local holds {share:.1%} of the account's activity"))

    def learn_one(self, state, tx):
        hours = state.get("h")
        if hours is None:
            hours = state["h"] = [0] * 24
        hours[self._hour(tx)] += 1
        if sum(hours) > self.p.max_count:
            hours[:] = [h // 2 for h in hours]
