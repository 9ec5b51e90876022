"""Online anomaly model: River HalfSpaceTrees over features scaled to [0, 1].

HST's raw score has no fixed meaning, so it is calibrated online to a percentile among the
model's recent scores: "this transaction is stranger than 99.5 % of the last 2,000".
"""

from __future__ import annotations

import bisect
import math
from collections import deque

from pydantic import BaseModel, ConfigDict, Field
from river import anomaly, compose, preprocessing

from indicators.base import Signal
from streams.contract import Transaction


class AnomalyParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    weight: float = Field(25.0, ge=0, le=100, description="points at full strength")
    n_trees: int = Field(10, ge=1, le=50, description="HST trees; 25x15 costs ~1.4 ms/event, 10x8 ~60 us")
    height: int = Field(8, ge=2, le=15)
    window_size: int = Field(250, ge=10)
    seed: int = 42
    warmup: int = Field(1000, ge=0, description="transactions learned before the model may contribute")
    calibration: int = Field(2000, ge=100, description="recent scores the percentile is taken over")
    hit_percentile: float = Field(0.995, gt=0.5, lt=1, description="hit at or above this percentile")
    utc_offset_hours: float = Field(8.0, ge=-12, le=14)


class AnomalyModel:
    """Scores then learns one transaction; contributes only when its percentile is extreme.

    >>> from indicators.base import tx_at
    >>> model = AnomalyModel(AnomalyParams(warmup=50, calibration=100))
    >>> sigs = [model.score_one(tx_at(m, 100 + m % 7), []) for m in range(300)]
    >>> sigs[10].value is None, 0 <= sigs[-1].value <= 1
    (True, True)
    """

    name = "anomaly_model"

    def __init__(self, params: AnomalyParams):
        self.params = params
        self.pipeline = compose.Pipeline(
            preprocessing.MinMaxScaler(),
            anomaly.HalfSpaceTrees(
                n_trees=params.n_trees, height=params.height, window_size=params.window_size, seed=params.seed
            ),
        )
        self.seen = 0
        self._recent: deque[float] = deque()
        self._sorted: list[float] = []

    def features(self, tx: Transaction, signals: list[Signal]) -> dict[str, float]:
        hour = (tx.ts_ms / 3_600_000 + self.params.utc_offset_hours) % 24
        x = {
            "log_amount": math.log1p(tx.amount),
            "hour_sin": math.sin(hour * math.pi / 12),
            "hour_cos": math.cos(hour * math.pi / 12),
        }
        for sig in signals:
            # Indicator values are features too; "not applicable" is neutral 0.
            x[sig.name] = min(float(sig.value), 1e6) if sig.value is not None else 0.0
        return x

    def _percentile(self, raw: float) -> float:
        rank = bisect.bisect_left(self._sorted, raw) / max(len(self._sorted), 1)
        bisect.insort(self._sorted, raw)
        self._recent.append(raw)
        if len(self._recent) > self.params.calibration:
            old = self._recent.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        return rank

    def score_one(self, tx: Transaction, signals: list[Signal]) -> Signal:
        x = self.features(tx, signals)
        raw = self.pipeline.score_one(x)
        self.pipeline.learn_one(x)
        self.seen += 1
        pct = self._percentile(raw)
        if self.seen <= self.params.warmup:
            return Signal(self.name, None, False, f"warming up ({self.seen}/{self.params.warmup})")
        return Signal(self.name, round(pct, 4), pct >= self.params.hit_percentile,
                      f"stranger than {pct:.1%} of recent transactions (HST)")

    def strength(self, signal: Signal) -> float:
        """0 below the hit percentile, rising linearly to 1 at the very top."""
        if signal.value is None or signal.value < self.params.hit_percentile:
            return 0.0
        return min(1.0, (signal.value - self.params.hit_percentile) / (1 - self.params.hit_percentile) + 0.5)
