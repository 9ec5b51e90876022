"""Label-free evidence: how rare an indicator's value is on the traffic it scores.

An indicator's threshold says yes or no; its value says how far. The score reads the value
instead: each indicator's value is ranked among the recent values it took on this partition's
traffic, and its evidence is the surprisal of that rank, ``−ln P(V ≥ v)`` (or ``P(V ≤ v)`` for
an indicator whose risky side is low, such as the share of an account's activity at this
hour). The indicators already measure against the entity (its own mean, pace, hours, home);
the rank adds the population: a z-score of 3 that one transaction in four reaches says little,
one that one in a thousand reaches says much. An indicator that fires on a fifth of the
traffic earns ``ln 5`` nats at most, below the ``common`` level where evidence starts to count.

Each indicator's evidence, in units, follows as ``1 − exp(−max(0, s − ln common) / scale)``:
none for a value at least one in ``common`` transactions reach, rising with rarity towards one
unit. Every indicator weighs the same: its rarity says how much it knows, and weights set by
hand ranked worse than equal ones on every source measured (docs/decisions/0001-score.md); a
weight of 0 keeps an indicator out of the score. A transaction's units add up, with those the
account's recent transactions left (``incident_half_life``, or the account's usual time
between transactions if shorter: fraud comes as bursts faster than the account's own pace,
and a burst of moderately rare transactions says more than each of them), and the score is
``100 · (1 − e^(−units / score_scale))`` (:meth:`EvidenceParams.score`).

The ranks are learned online, per partition, from one transaction in ``learn_every``, over
the last ``window`` values of each indicator, and checkpointed with the partition's models.
Which transaction is learned depends on its tx_id alone (:func:`one_in`), not on its place in
the stream: with several workers, transactions that took an entity stage in another worker
are decided a little later than their neighbours, and a sample by position learned another
set of values on every run, which moved the rarest ranks and with them many alerts.
Until ``warmup`` transactions have been seen there is no reference yet, and a hit counts at
its full weight, as a threshold would (:meth:`EvidenceParams.hit_units`): hits alone combine as
independent evidence, ``100 · (1 − Π(1 − weightᵢ/100))``.

>>> from riskcockpit.indicators.base import Signal
>>> rarity = Rarity(EvidenceParams(window=100, learn_every=1, warmup=10))
>>> for v in range(100):
...     _ = rarity.surprisal([Signal("z", float(v % 10), False, "")], f"t{v}")
>>> # every recent value reaches 0; one in ten reaches 9 (ln 101/11); none reaches 50 (ln 101/1)
>>> [round(s, 2) for _, s in rarity.surprisal([Signal("z", v, False, "") for v in (0.0, 9.0, 50.0)], "t100")]
[0.0, 2.22, 4.62]
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections import deque
from functools import lru_cache
from hashlib import blake2b

from pydantic import BaseModel, ConfigDict, Field, field_validator

from riskcockpit.ground.durations import parse_duration_ms
from riskcockpit.indicators.base import REGISTRY, Signal

_milliseconds = lru_cache(maxsize=16)(parse_duration_ms)  # asked on every transaction
# How fast an account's usual pace follows its recent gaps: slowly, so a burst hardly moves it.
PACE_RATE = 0.05


class EvidenceParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    common: float = Field(20.0, gt=1, description="a value one transaction in this many reaches adds nothing")
    scale: float = Field(2.0, gt=0, description="nats of surprisal beyond `common` for 63% of a unit")
    window: int = Field(5000, ge=100, description="recent values each indicator is ranked among")
    learn_every: int = Field(4, ge=1, description="one transaction in this many joins the reference")
    warmup: int = Field(1000, ge=0, description="transactions seen before values are ranked; a hit counts fully before")
    score_scale: float = Field(4.0, gt=0, description="units of evidence for a label-free score of 63: "
                                                       "100 · (1 − e^(−units / this))")
    incident_half_life: str = Field("1h", description="the evidence of an account's earlier transactions carries "
                                                      "over to its next, halving every this long; 0: not at all")

    @field_validator("incident_half_life")
    @classmethod
    def _duration(cls, value: str) -> str:
        if parse_duration_ms(value) < 0:
            raise ValueError(f"a duration of 0 or more, e.g. 1h or 30m (got {value!r})")
        return value

    def units(self, surprisal: float) -> float:
        """An indicator's evidence: none up to the `common` level, one unit at infinite rarity.

        >>> p = EvidenceParams()
        >>> p.units(math.log(20)), round(p.units(math.log(20) + 2), 4), round(p.units(30), 4)
        (0.0, 0.6321, 1.0)
        """
        excess = surprisal - math.log(self.common)
        return 0.0 if excess <= 0 else 1.0 - math.exp(-excess / self.scale)

    def score(self, units) -> tuple[float, float]:
        """(label-free score, total units): ``100 · (1 − e^(−Σ units / score_scale))``, as stored. The
        sum is exact (``math.fsum``), so the same units give the same score in any order, as an
        auditor's recomputation must.

        >>> p = EvidenceParams(score_scale=1)
        >>> p.score([]), p.score([1.0]), p.score([0.5, 0.25, 0.25])[0] == p.score([0.25, 0.5, 0.25])[0]
        ((0.0, 0.0), (63.21, 1.0), True)
        """
        total = math.fsum(units)
        return round(100 * (1 - math.exp(-total / self.score_scale)), 2), total

    def hit_units(self, points: float) -> float:
        """The units of a hit worth ``points`` on its own (a weight before warm-up, the anomaly
        ensemble's points): hits alone combine as independent evidence, ``100 · (1 − Π(1 − pᵢ/100))``.

        >>> p = EvidenceParams()
        >>> p.hit_units(0), p.score([p.hit_units(60), p.hit_units(50)])[0]
        (0.0, 80.0)
        """
        return self.units_of_score(points) if points > 0 else 0.0

    def units_of_score(self, score: float) -> float:
        """The units behind a label-free ``score``.

        >>> p = EvidenceParams()
        >>> round(p.units_of_score(p.score([2.5])[0]), 3)
        2.5
        """
        return -self.score_scale * math.log1p(-min(score, 99.99) / 100)

    @property
    def carries(self) -> bool:
        """Whether an account's evidence carries over to its next transaction at all."""
        return _milliseconds(self.incident_half_life) > 0

    def carried(self, units: float, elapsed_ms: int, usual_gap_ms: float | None = None) -> float:
        """What ``units`` of an account's evidence are worth ``elapsed_ms`` later, as stored. They
        halve every ``incident_half_life``, or every ``usual_gap_ms`` (the time between the
        account's transactions, as it usually is) if that is shorter: an account that pays
        every few minutes would otherwise pile up the ordinary evidence of its own pace.

        >>> p = EvidenceParams()
        >>> p.carried(2.0, 0), p.carried(2.0, 3_600_000), p.carried(2.0, 86_400_000), p.carried(2.0, 600_000, 600_000)
        (2.0, 1.0, 0.0, 1.0)
        """
        half_life = _milliseconds(self.incident_half_life)
        if not half_life or units <= 0:
            return 0.0
        if usual_gap_ms is not None:
            half_life = min(half_life, usual_gap_ms)
        return round(units * 0.5 ** (max(0, elapsed_ms) / half_life), 6)

    def carried_to(self, incident: list | None, ts_ms: int) -> float:
        """The units an account's ``incident`` (its state: units, time, log of its usual gap)
        carries to a transaction at ``ts_ms``; 0 without one."""
        if incident is None:
            return 0.0
        units, since_ms, log_gap = incident
        return self.carried(units, ts_ms - since_ms, None if log_gap is None else math.exp(log_gap))

    def incident_after(self, incident: list | None, ts_ms: int, total: float) -> list:
        """The account's incident once a transaction at ``ts_ms`` brought it to ``total`` units:
        with its usual time between transactions, a geometric mean (log-milliseconds, at least a
        second) that follows each gap at ``PACE_RATE``.

        >>> p = EvidenceParams()
        >>> first = p.incident_after(None, 0, 1.0)
        >>> first, p.incident_after(first, 60_000, 2.0)[2] == math.log(60_000)
        ([1.0, 0, None], True)
        """
        if incident is None:
            return [total, ts_ms, None]
        _, since_ms, log_gap = incident
        if ts_ms > since_ms:
            gap = math.log(max(1000, ts_ms - since_ms))
            log_gap = gap if log_gap is None else log_gap + PACE_RATE * (gap - log_gap)
        return [total, max(ts_ms, since_ms), log_gap]


def one_in(n: int, key: str) -> bool:
    """True for one key in ``n``, the same on every run and whatever the order of the keys.

    >>> sum(one_in(4, f"tx{i}") for i in range(10_000)), one_in(1, "any")
    (2538, True)
    """
    # A mixing hash: a CRC's low bits follow the ids' own patterns (a counter's last digits).
    # Salted: not the same keys as the supervised model's negative subsampling.
    return n == 1 or int.from_bytes(blake2b(key.encode(), digest_size=4, salt=b"rarity").digest(), "little") % n == 0


def _low_tailed() -> frozenset[str]:
    return frozenset(name for name, cls in REGISTRY.items() if cls.risky_tail == "low")


class Tail:
    """The last ``size`` values of one indicator, sorted, to rank a value among them."""

    __slots__ = ("recent", "sorted", "size")

    def __init__(self, size: int):
        self.size = size
        self.recent: deque[float] = deque()
        self.sorted: list[float] = []

    def __getstate__(self):
        # The order of arrival alone, as packed doubles: the sorted copy follows from it, and a
        # checkpoint of every batch must cost little.
        return self.size, array("d", self.recent).tobytes()

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict | type(None)):
            state = state[1]["size"], array("d", state[1]["recent"]).tobytes()  # a checkpoint from before
        self.size = state[0]
        values = array("d")
        values.frombytes(state[1])
        self.recent = deque(values)
        self.sorted = sorted(values)

    def add(self, value: float) -> None:
        bisect.insort(self.sorted, value)
        self.recent.append(value)
        if len(self.recent) > self.size:
            del self.sorted[bisect.bisect_left(self.sorted, self.recent.popleft())]


class Rarity:
    """Per partition: each indicator's recent values, and the surprisal of a new one."""

    def __init__(self, params: EvidenceParams):
        self.params = params
        self.tails: dict[str, Tail] = {}
        self.seen = 0
        self._low = _low_tailed()

    def __getstate__(self):
        return {"params": self.params, "tails": self.tails, "seen": self.seen}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._low = _low_tailed()

    @property
    def warm(self) -> bool:
        return self.seen > self.params.warmup

    def surprisal(self, signals: list[Signal], key: str) -> list[tuple[Signal, float]]:
        """``(signal, surprisal in nats)`` of each applicable signal; then, for one ``key`` (the
        tx_id) in ``learn_every``, the values join the reference. Before warm-up every
        surprisal is 0."""
        self.seen += 1
        learn = one_in(self.params.learn_every, key)
        warm = self.seen > self.params.warmup
        tails, low, log = self.tails, self._low, math.log
        left, right = bisect.bisect_left, bisect.bisect_right
        out = []
        append = out.append
        for sig in signals:
            value = sig[1]
            if value is None:
                continue
            name = sig[0]
            tail = tails.get(name)
            if tail is None:
                tail = tails[name] = Tail(self.params.window)
            if warm:
                ranked = tail.sorted
                n = len(ranked) + 1
                if name in low:
                    # every recent value at or below it: no surprise, and no search (most values are)
                    append((sig, 0.0 if not ranked or value >= ranked[-1] else log(n / (right(ranked, value) + 1))))
                else:
                    append((sig, 0.0 if not ranked or value <= ranked[0] else log(n / (n - left(ranked, value)))))
            else:
                append((sig, 0.0))
            if learn:
                tail.add(value)
        return out
