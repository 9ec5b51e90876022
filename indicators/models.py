"""Online models: an anomaly ensemble and a supervised model that learns from dispositions.

One :class:`ModelSet` per Kafka partition (per backtest), so a partition's models move with
the partition on a rebalance and are checkpointed with it.

- Anomaly ensemble: River ``HalfSpaceTrees`` (features min-max scaled to [0, 1], as HST
  expects) and ``OneClassSVM`` (standardised features). Raw scores of different detectors mean
  different things, so each is calibrated online to a percentile among its own recent scores;
  the ensemble's value is the mean percentile. Detectors learn on every ``learn_every``-th
  transaction: learning costs 5–10x scoring, and the distribution of normal traffic does not
  need every event to be learned.
- Supervised: River ``LogisticRegression`` on the same features, taught by analysts'
  dispositions (confirmed fraud / false positive) as they arrive, however late. It contributes
  only once it has seen ``min_labels`` of each class. It reads only the non-zero features
  (:func:`sparse_input`), a third of them on the generator's stream: with no L1/L2 penalty a
  zero feature adds nothing to the dot product and gets a zero gradient, so AdaGrad leaves its
  weight alone, and the model learns and predicts exactly as on every feature, at a third of
  the cost. AdaGrad gives each feature its own step size, so no scaler is needed; a scaler's
  statistics would come from the few, alerted, transactions analysts judge, not from the
  traffic scored. On the generator's stream this cut the ranking errors left after an hour's
  dispositions by about half (ROC AUC 0.926 with a scaler and plain SGD, 0.966 without) and
  the cost of learning one by two thirds.

Checkpoints are zlib-compressed pickles (:meth:`ModelSet.dumps`); what was learned since the
last checkpoint is the loss bound on a crash (``checkpoint_every`` transactions per partition).
"""

from __future__ import annotations

import bisect
import math
import pickle
import zlib
from collections import deque
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from river import anomaly, compose, linear_model, optim, preprocessing

from indicators.base import NO_HIT, Signal
from streams.contract import Transaction

CHECKPOINT_FORMAT = 1


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HSTParams(_Config):
    n_trees: int = Field(5, ge=1, le=50, description="trees; 25x15 costs ~1.4 ms/event and 52 MB, 5x8 ~15 us")
    height: int = Field(8, ge=2, le=15)
    window_size: int = Field(250, ge=10)


class SVMParams(_Config):
    nu: float = Field(0.02, gt=0, lt=1, description="expected share of outliers")


# What the anomaly detectors look at: the transaction's own numbers and the indicators that
# measure a degree. Yes/no indicators and list lookups (new device, high-risk MCC) add nothing
# a detector can rank by, but each feature costs scaling work on every transaction.
ANOMALY_FEATURES = (
    "log_amount", "hour_sin", "hour_cos", "count_velocity", "amount_velocity", "amount_zscore",
    "amount_ewma_ratio", "max_multiple", "amount_velocity_baseline", "pass_through", "impossible_travel",
    "geo_distance_from_home", "decline_ratio", "cash_intensity", "distinct_merchants_small", "cross_border_ratio",
)
TX_FEATURES = ("log_amount", "hour_sin", "hour_cos")


class AnomalyParams(_Config):
    enabled: bool = True
    features: list[str] = Field(list(ANOMALY_FEATURES), min_length=1,
                                description="what the detectors see: log_amount, hour_sin, hour_cos or indicator names")
    weight: float = Field(25.0, ge=0, le=100, description="points at full strength")
    detectors: list[Literal["half_space_trees", "one_class_svm"]] = ["half_space_trees", "one_class_svm"]
    hst: HSTParams = HSTParams()
    svm: SVMParams = SVMParams()
    learn_every: int = Field(4, ge=1, description="detectors learn one transaction in this many")
    warmup: int = Field(1000, ge=0, description="transactions seen before the ensemble may contribute")
    calibration: int = Field(2000, ge=100, description="recent scores each percentile is taken over")
    hit_percentile: float = Field(0.995, gt=0.5, lt=1, description="hit at or above this percentile")
    seed: int = 42

    def points(self, percentile: float) -> float:
        """The ensemble's points at ``percentile``: none below the hit percentile, half the
        weight at it, the full weight at the very top.

        >>> AnomalyParams().points(0.99), AnomalyParams().points(0.995), AnomalyParams().points(1.0)
        (0.0, 12.5, 25.0)
        """
        if percentile < self.hit_percentile:
            return 0.0
        return self.weight * min(1.0, 0.5 + (percentile - self.hit_percentile) / (1 - self.hit_percentile))


class SupervisedParams(_Config):
    enabled: bool = True
    weight: float = Field(40.0, ge=0, le=100, description="points at probability 1")
    min_labels: int = Field(20, ge=1, description="dispositions of each class before it contributes")
    learning_rate: float = Field(0.1, gt=0, le=1, description="AdaGrad's base step size")
    fraud_weight: float = Field(5.0, gt=0, description="confirmed frauds count this much more than false positives")
    hit_probability: float = Field(0.5, gt=0, lt=1, description="listed as a reason from this probability")

    def points(self, probability: float) -> float:
        """The supervised model's points: its weight times the fraud probability, hit or not."""
        return self.weight * probability


class ModelParams(_Config):
    anomaly: AnomalyParams = AnomalyParams()
    supervised: SupervisedParams = SupervisedParams()
    checkpoint_every: int = Field(5000, ge=100, description="transactions per partition between checkpoints")
    utc_offset_hours: float = Field(8.0, ge=-12, le=14, description="customers' local time, for the hour features")


def features(tx: Transaction, signals: list[Signal], utc_offset_hours: float) -> dict[str, float | None]:
    """What the decision saw, stored with each score: every indicator's raw value (None: not
    applicable) and the transaction's own numbers. Models read it through :func:`model_input`."""
    hour = (tx.ts_ms / 3_600_000 + utc_offset_hours) % 24
    x: dict[str, float | None] = {  # keys: TX_FEATURES
        "log_amount": round(math.log1p(tx.amount), 6),
        "hour_sin": round(math.sin(hour * math.pi / 12), 6),
        "hour_cos": round(math.cos(hour * math.pi / 12), 6),
    }
    for sig in signals:
        x[sig.name] = sig.value
    return x


def model_input(x: dict[str, float | None], keys=None) -> dict[str, float]:
    """"Not applicable" (or absent) is neutral 0; large values are log-compressed so none dominates.

    >>> model_input({"a": None, "b": 0.5, "c": -99.0}), model_input({"a": 3.0}, ["a", "z"])
    ({'a': 0.0, 'b': 0.5, 'c': -4.605170185988092}, {'a': 1.3862943611198906, 'z': 0.0})
    """
    out, get, log1p = {}, x.get, math.log1p
    for k in x if keys is None else keys:  # a plain loop: half the cost of a comprehension here
        v = get(k)
        out[k] = 0.0 if v is None else log1p(v) if v > 1 else -log1p(-v) if v < -1 else float(v)
    return out


def sparse_input(x: dict[str, float | None]) -> dict[str, float]:
    """:func:`model_input` without the features that are 0, for the supervised model.

    >>> sparse_input({"a": None, "b": 0.0, "c": 3.0, "d": -0.5})
    {'c': 1.3862943611198906, 'd': -0.5}
    """
    return model_input({k: v for k, v in x.items() if v})  # None and 0 are both model_input's neutral 0


class Percentile:
    """Rank of a score among the last ``size`` scores (sorted list + FIFO)."""

    def __init__(self, size: int):
        self.size = size
        self.recent: deque[float] = deque()
        self.sorted: list[float] = []

    def update(self, value: float) -> float:
        rank = bisect.bisect_left(self.sorted, value) / len(self.sorted) if self.sorted else 0.0
        bisect.insort(self.sorted, value)
        self.recent.append(value)
        if len(self.recent) > self.size:
            del self.sorted[bisect.bisect_left(self.sorted, self.recent.popleft())]
        return rank


class ModelSet:
    """The models of one partition.

    >>> from indicators.base import tx_at
    >>> models = ModelSet(ModelParams(anomaly=AnomalyParams(warmup=50, calibration=100)))
    >>> for m in range(200):
    ...     x = features(tx_at(m, 100 + m % 7), [], 8)
    ...     out = models.score_one(x)
    >>> 0 <= out["anomaly"] <= 1, out["fraud_probability"] is None
    (True, True)
    >>> restored = ModelSet.loads(models.dumps(), models.params)
    >>> restored.score_one(x)["anomaly"] == models.score_one(x)["anomaly"]
    True
    """

    def __init__(self, params: ModelParams):
        self.params = params
        a = params.anomaly
        self.detectors: dict[str, compose.Pipeline] = {}
        if a.enabled and "half_space_trees" in a.detectors:
            self.detectors["hst"] = compose.Pipeline(
                preprocessing.MinMaxScaler(),
                anomaly.HalfSpaceTrees(n_trees=a.hst.n_trees, height=a.hst.height, window_size=a.hst.window_size,
                                       seed=a.seed),
            )
        if a.enabled and "one_class_svm" in a.detectors:
            self.detectors["svm"] = compose.Pipeline(preprocessing.StandardScaler(), anomaly.OneClassSVM(nu=a.svm.nu))
        self.calibrators = {name: Percentile(a.calibration) for name in self.detectors}
        s = params.supervised
        # No penalty: with one, sparse_input would no longer learn what every feature would.
        self.classifier = linear_model.LogisticRegression(optimizer=optim.AdaGrad(s.learning_rate), l1=0.0, l2=0.0) \
            if s.enabled else None
        self.labels = {True: 0, False: 0}
        self.seen = 0
        self.since_checkpoint = 0

    def score_one(self, stored: dict[str, float | None]) -> dict:
        """Score, then (every ``learn_every``-th time) learn; returns calibrated outputs."""
        a = self.params.anomaly
        x = model_input(stored, a.features)
        self.seen += 1
        self.since_checkpoint += 1
        learn = self.seen % a.learn_every == 0
        percentiles = {}
        for name, detector in self.detectors.items():
            percentiles[name] = self.calibrators[name].update(detector.score_one(x))
            if learn:
                detector.learn_one(x)
        warm = self.seen > a.warmup and percentiles
        out = {
            "anomaly": round(sum(percentiles.values()) / len(percentiles), 4) if warm else None,
            "detectors": {k: round(v, 4) for k, v in percentiles.items()},
            "fraud_probability": None,
        }
        if self.classifier is not None and min(self.labels.values()) >= self.params.supervised.min_labels:
            # The supervised model sees every non-zero feature, not only the detectors' list: hits an
            # analyst confirmed may be yes/no ones.
            p = self.classifier.predict_proba_one(sparse_input(stored)).get(True, 0.0)
            out["fraud_probability"] = round(p, 4)
        return out

    def feedback(self, stored: dict[str, float | None], is_fraud: bool) -> None:
        """Learn one disposition: the features stored with the decision, and the analyst's verdict."""
        if self.classifier is None:
            return
        x = sparse_input(stored)
        weight = self.params.supervised.fraud_weight if is_fraud else 1.0
        self.classifier.learn_one(x, bool(is_fraud), w=weight)
        self.labels[bool(is_fraud)] += 1

    def anomaly_signal(self, out: dict) -> tuple[Signal, float]:
        """The ensemble as a reason with its points: 0 below the hit percentile, full at the top."""
        a = self.params.anomaly
        value = out["anomaly"]
        if value is None:
            return Signal("anomaly_model", None, False, f"warming up ({self.seen}/{a.warmup})"), 0.0
        if value < a.hit_percentile:  # a miss adds no points, so its reason is never shown
            return Signal("anomaly_model", value, False, NO_HIT), 0.0
        detail = ", ".join(f"{k} {v:.1%}" for k, v in out["detectors"].items())
        return Signal("anomaly_model", value, True, f"stranger than {value:.1%} of recent transactions ({detail})"), \
            a.points(value)

    def supervised_signal(self, out: dict) -> tuple[Signal, float]:
        p = out["fraud_probability"]
        s = self.params.supervised
        if p is None:
            return Signal("fraud_model", None, False, f"learning from dispositions {self.labels}"), 0.0
        return Signal("fraud_model", p, p >= s.hit_probability,
                      f"{p:.0%} like confirmed frauds (from {sum(self.labels.values())} dispositions)"), s.points(p)

    def due_for_checkpoint(self) -> bool:
        return self.since_checkpoint >= self.params.checkpoint_every

    def dumps(self) -> bytes:
        self.since_checkpoint = 0
        state = (CHECKPOINT_FORMAT, self.detectors, self.calibrators, self.classifier, self.labels, self.seen)
        return zlib.compress(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL), 6)

    @classmethod
    def loads(cls, blob: bytes, params: ModelParams) -> ModelSet:
        version, detectors, calibrators, classifier, labels, seen = pickle.loads(zlib.decompress(blob))
        if version != CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint format {version}, expected {CHECKPOINT_FORMAT}")
        models = cls(params)
        models.detectors, models.calibrators, models.classifier = detectors, calibrators, classifier
        models.labels, models.seen = labels, seen
        return models
