"""Novelty: a value the entity has never used, or only started using moments ago.

One mechanism, several fields: each indicator remembers the entity's last ``memory`` distinct
values with when they were first seen. A value is new if unseen, and stays "fresh" for
``fresh`` after its first use, so a whole burst from a fraudster's new device hits, not only
its first transaction. It hits only once the entity had habits (``min_history``) before.

The indicators built on it live in their families' modules."""

from __future__ import annotations

from operator import attrgetter
from typing import ClassVar

from pydantic import Field

from riskcockpit.ground.durations import DurationMs
from riskcockpit.indicators.base import Indicator, Params


class NoveltyParams(Params):
    min_history: int = Field(3, ge=0, description="transactions with this field before a new value counts")
    memory: int = Field(32, ge=1, description="distinct values remembered per entity (bounds state)")
    fresh: DurationMs = Field(3_600_000, description="a value first used less than this long ago still counts as new")


class Novelty(Indicator):
    field: ClassVar[str]
    Params = NoveltyParams

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._known = self.signal(0.0, False, f"known {self.field}")
        if type(self)._value is Novelty._value:
            self._value = attrgetter(self.field)  # the same read, without a Python-level call

    def _value(self, tx):
        """The value judged: the field itself here; a subclass may derive it (an IP's network)."""
        return getattr(tx, self.field)

    def score_one(self, state, tx):
        value, p = self._value(tx), self.p
        # Values are distinct and the most recently used is last, where a known value usually is.
        for seen, first_ms, history in reversed(state.get("seen", ())):
            if seen == value:
                age = tx.ts_ms - first_ms
                if age < p.fresh and history >= p.min_history:
                    return self.signal(1.0, True,
                                       f"{self.field} {value} first used {age // 60_000} min ago")
                return self._known
        n = state.get("n", 0)
        return self.signal(1.0, n >= p.min_history, f"{self.field} {value} never seen in {n} transactions")

    def learn_one(self, state, tx):
        value = self._value(tx)
        seen = state.setdefault("seen", [])
        n = state.get("n", 0)
        for item in reversed(seen):
            if item[0] == value:
                if item is not seen[-1]:
                    seen.remove(item)  # most recently used last, so the stalest is forgotten first
                    seen.append(item)
                break
        else:
            seen.append([value, tx.ts_ms, n])
            del seen[: -self.p.memory]
        state["n"] = n + 1
