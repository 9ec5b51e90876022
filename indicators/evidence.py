"""Label-free evidence: how rare an indicator's value is on the traffic it scores.

An indicator's threshold says yes or no; its value says how far. The score reads the value
instead: each indicator's value is ranked among the recent values it took on this partition's
traffic, and its evidence is the surprisal of that rank, ``−ln P(V ≥ v)`` (or ``P(V ≤ v)`` for
an indicator whose risky side is low, such as the share of an account's activity at this
hour). The indicators already measure against the entity (its own mean, pace, hours, home);
the rank adds the population: a z-score of 3 that one transaction in four reaches says little,
one that one in a thousand reaches says much. An indicator that fires on a fifth of the
traffic earns ``ln 5`` nats at most, below the ``common`` level where evidence starts to count.

Points follow from evidence as ``weight · (1 − exp(−max(0, s − ln common) / scale))``: none for
a value at least one in ``common`` transactions reach, rising with rarity towards the
indicator's configured weight. They are combined as before (``scoring.combine``), so the risk
officer's weights still bound what each indicator may add.

The ranks are learned online, per partition, from one transaction in ``learn_every``, over
the last ``window`` values of each indicator, and checkpointed with the partition's models.
Which transaction is learned depends on its tx_id alone (:func:`one_in`), not on its place in
the stream: with several workers, transactions that took an entity stage in another worker
are decided a little later than their neighbours, and a sample by position learned another
set of values on every run, which moved the rarest ranks and with them many alerts.
Until ``warmup`` transactions have been seen there is no reference yet, and a hit counts at
its full weight, as a threshold would.

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
from hashlib import blake2b

from pydantic import BaseModel, ConfigDict, Field

from riskcockpit.indicators.base import REGISTRY, Signal


class EvidenceParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    common: float = Field(20.0, gt=1, description="a value one transaction in this many reaches adds nothing")
    scale: float = Field(2.0, gt=0, description="nats of surprisal beyond `common` for 63% of the weight")
    window: int = Field(5000, ge=100, description="recent values each indicator is ranked among")
    learn_every: int = Field(4, ge=1, description="one transaction in this many joins the reference")
    warmup: int = Field(1000, ge=0, description="transactions seen before values are ranked; a hit counts fully before")

    def points(self, weight: float, surprisal: float) -> float:
        """An indicator's points: none up to the `common` level, its weight at infinite rarity.

        >>> p = EvidenceParams()
        >>> p.points(20, math.log(20)), round(p.points(20, math.log(20) + 2), 2), round(p.points(20, 20), 2)
        (0.0, 12.64, 20.0)
        """
        excess = surprisal - math.log(self.common)
        return 0.0 if excess <= 0 else weight * (1.0 - math.exp(-excess / self.scale))


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
