"""Online models: an anomaly ensemble, the indicators' rarity, and a supervised model that
learns from every label.

One :class:`ModelSet` per Kafka partition (per backtest), so a partition's models move with
the partition on a rebalance and are checkpointed with it.

- Anomaly ensemble: River ``HalfSpaceTrees`` (features min-max scaled to [0, 1], as HST
  expects) and ``OneClassSVM`` (standardised features). Raw scores of different detectors mean
  different things, so each is calibrated online to a percentile among its own recent scores;
  the ensemble's value is the mean percentile. Detectors learn one transaction in
  ``learn_every``, chosen by tx_id (:func:`riskcockpit.indicators.evidence.one_in`): learning costs 5–10x
  scoring, and the distribution of normal traffic does not need every event to be learned.
- Rarity (:mod:`riskcockpit.indicators.evidence`): each indicator's recent values, to grade its evidence.
- Supervised: River ``LogisticRegression`` over crossed one-hot bins of the stored features
  (:func:`crossed`): each feature's bin, the amount, the local hour and the merchant category
  and their crosses, so a linear learner learns thresholds ("above X at this kind of
  merchant") and interactions. It learns from every disposition, however late (analysts'
  verdicts and bulk labels alike): every confirmed fraud, and ``negative_share`` of the rest
  chosen by tx_id (negative subsampling: fraud is rare, and every legitimate label would drown
  it); its probability is corrected back to all traffic (:meth:`SupervisedParams.calibrated`).
  It contributes once it has seen ``min_labels`` of each class, with a share of the score that
  grows to its full share at ``full_after`` confirmed frauds: all of the score when labels
  cover the traffic, half when they cover only a selected part (:meth:`SupervisedParams.share`).

Checkpoints are zlib-compressed pickles (:meth:`ModelSet.dumps`); what was learned since the
last checkpoint is the loss bound on a crash (``checkpoint_every`` transactions per partition).
By default a partition is checkpointed with every batch that scored one of its transactions:
a worker killed after delivering a batch but before its offsets were committed gets the batch
again, and its models must already hold it, or the same transaction could be answered two ways.
"""

from __future__ import annotations

import bisect
import io
import math
import pickle
import zlib
from math import log1p
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from river import anomaly, compose, linear_model, optim, preprocessing

from riskcockpit.ground.contract import Transaction
from riskcockpit.indicators.base import NO_HIT, Signal
from riskcockpit.indicators.evidence import EvidenceParams, Rarity, Tail, one_in

CHECKPOINT_FORMAT = 3


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
    min_labels: int = Field(20, ge=1, description="dispositions of each class before it contributes")
    full_after: int = Field(200, ge=1, description="confirmed frauds from which it has its full share of the score")
    learning_rate: float = Field(0.1, gt=0, le=1, description="AdaGrad's base step size")
    negative_share: float = Field(0.2, gt=0, le=1,
                                  description="share of false-positive / legitimate labels learned; every fraud is")
    hit_probability: float = Field(0.5, gt=0, lt=1, description="listed as a reason from this probability")

    def share(self, frauds: int, labelled: int, scored: int) -> float:
        """How much of the score the model's probability makes.

        It grows from none at ``min_labels`` confirmed frauds to its full share at
        ``full_after``, linearly. The full share is all of the score when labels come for the
        whole traffic (chargebacks, case files: ``labelled`` ≈ ``scored``), and half when they
        come for a small selected part of it (analysts judge what was alerted): a model that
        never saw the rest must not overrule the label-free evidence on it.

        >>> p = SupervisedParams(min_labels=20, full_after=220)
        >>> p.share(10, 100, 100), p.share(120, 1000, 1000), p.share(5000, 9000, 10000), p.share(5000, 10, 10000)
        (0.0, 0.5, 0.95, 0.5005)
        """
        if frauds <= self.min_labels:
            return 0.0
        ramp = min(1.0, (frauds - self.min_labels) / max(1, self.full_after - self.min_labels))
        return ramp * (0.5 + 0.5 * min(1.0, labelled / max(1, scored)))

    def learns(self, key: str, is_fraud: bool) -> bool:
        """Negative subsampling, the same for a key on every run: every fraud, a share of the rest."""
        return is_fraud or zlib.crc32(key.encode()) % 10_000 < self.negative_share * 10_000

    def calibrated(self, p: float) -> float:
        """The probability on all traffic, from the model's on the subsampled labels (prior
        correction: the odds of fraud were raised by ``1 / negative_share``)."""
        q = self.negative_share
        return p * q / (p * q + 1.0 - p) if p < 1.0 else 1.0


class ModelParams(_Config):
    evidence: EvidenceParams = EvidenceParams()
    anomaly: AnomalyParams = AnomalyParams()
    supervised: SupervisedParams = SupervisedParams()
    checkpoint_every: int = Field(1, ge=1, description="transactions per partition between checkpoints; "
                                  "1: with every batch")
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
    if tx.mcc is not None:
        x["mcc_code"] = float(tx.mcc)  # the category, for the supervised model's crosses
    for sig in signals:
        x[sig.name] = sig.value
    return x


def model_input(x: dict[str, float | None], keys=None) -> dict[str, float]:
    """"Not applicable" (or absent) is neutral 0; large values are log-compressed so none dominates.
    A value that is not finite is neutral too: one NaN learned would make every later
    prediction of the model NaN, and its checkpoint would keep it.

    >>> model_input({"a": None, "b": 0.5, "c": -99.0}), model_input({"a": 3.0}, ["a", "z"])
    ({'a': 0.0, 'b': 0.5, 'c': -4.605170185988092}, {'a': 1.3862943611198906, 'z': 0.0})
    >>> model_input({"a": float("nan"), "b": float("inf")})
    {'a': 0.0, 'b': 0.0}
    """
    out, get, log1p, finite = {}, x.get, math.log1p, math.isfinite
    for k in x if keys is None else keys:  # a plain loop: half the cost of a comprehension here
        v = get(k)
        out[k] = 0.0 if v is None or not finite(v) else log1p(v) if v > 1 else -log1p(-v) if v < -1 else float(v)
    return out


_OWN = frozenset(TX_FEATURES) | {"mcc_code", "label_free_score", "model_probability"}


def stack_input(stored: dict[str, float | None], evidence: EvidenceParams) -> dict[str, float]:
    """The stacker's input: the model's log-odds (0 with a flag while it is silent) and the
    label-free score as its units of evidence, which add up as log-odds do; as a plain 0–100
    figure the carried evidence of a burst hardly moved it near the top.

    >>> stack_input({"label_free_score": 50.0, "model_probability": 0.5}, EvidenceParams(score_scale=1))
    {'model': 0.0, 'has_model': 1.0, 'label_free': 0.6931471805599453}
    """
    p = stored.get("model_probability")
    p = -1.0 if p is None else p
    q = min(max(p, 1e-6), 1 - 1e-6)
    return {"model": math.log(q / (1 - q)) if p >= 0 else 0.0, "has_model": 1.0 if p >= 0 else 0.0,
            "label_free": evidence.units_of_score(stored.get("label_free_score") or 0.0)}


def crossed(x: dict[str, float | None]) -> dict[str, float]:
    """The supervised model's input: one-hot bins, so a linear model learns thresholds.

    Each non-zero feature becomes its bin (half a unit of :func:`model_input`'s log scale);
    the amount (a quarter of a log unit), the local hour and the merchant category become
    bins too, and are crossed pairwise, with the amount against the account's usual at that
    category crossed with both: "above X at this kind of merchant", "above X at night".

    >>> sorted(crossed({"log_amount": 5.3, "hour_sin": 0.0, "hour_cos": -1.0, "mcc_code": 5411.0,
    ...                 "amount_zscore": 3.0, "new_device": 0.0, "unusual_hour": None}))
    ['a21', 'a21h12', 'a21m5411', 'amount_zscore=2', 'h12', 'm5411', 'm5411h12']
    """
    binned = model_input({k: v for k, v in x.items() if v and k not in _OWN})
    out = {f"{k}={int(v * 2)}": 1.0 for k, v in binned.items()}
    a = f"a{int(x.get('log_amount', 0.0) * 4)}"
    h = f"h{int(round(math.atan2(x.get('hour_sin', 0.0), x.get('hour_cos', 1.0)) * 12 / math.pi)) % 24}"
    out[a] = out[h] = out[a + h] = 1.0
    mcc = x.get("mcc_code")
    if mcc is not None:
        m = f"m{int(mcc):04d}"
        out[m] = out[a + m] = out[m + h] = 1.0
        ratio = x.get("category_amount_ratio")
        if ratio and math.isfinite(ratio):
            c = f"c{int(log1p(ratio) * 2)}"
            out[c + m] = out[c + a] = 1.0
    return out


class Percentile(Tail):
    """Rank of a score among the last ``size`` scores, before it joins them."""

    __slots__ = ()

    def update(self, value: float) -> float:
        rank = bisect.bisect_left(self.sorted, value) / len(self.sorted) if self.sorted else 0.0
        self.add(value)
        return rank



class _CheckpointUnpickler(pickle.Unpickler):
    """Reads checkpoints written before the code became one package, whose pickles name our
    classes by their old top-level modules (``indicators.evidence.Tail``)."""

    FORMER_TOP_LEVEL = frozenset({"indicators", "streams", "store", "alerting", "dashboard"})

    def find_class(self, module: str, name: str):
        if module.partition(".")[0] in self.FORMER_TOP_LEVEL:
            module = f"riskcockpit.{module}"
        return super().find_class(module, name)

class ModelSet:
    """The models of one partition.

    >>> from riskcockpit.indicators.base import tx_at
    >>> models = ModelSet(ModelParams(anomaly=AnomalyParams(warmup=50, calibration=100)))
    >>> for m in range(200):
    ...     x = features(tx_at(m, 100 + m % 7), [], 8)
    ...     out = models.score_one(x, f"t{m}")
    >>> 0 <= out["anomaly"] <= 1, out["fraud_probability"] is None
    (True, True)
    >>> restored = ModelSet.loads(models.dumps(), models.params)
    >>> restored.score_one(x, "t")["anomaly"] == models.score_one(x, "t")["anomaly"]
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
        # Logistic regression over crossed bins (see :func:`crossed`) learned the thresholds and
        # interactions better than River's trees and forests did on two sources, at a fraction of
        # their cost (docs/decisions/0001-score.md). AdaGrad: a step size per bin, rare bins
        # learn fast. The intercept learns slowly: the classes' balance is stable.
        self.classifier = linear_model.LogisticRegression(optimizer=optim.AdaGrad(s.learning_rate),
                                                          intercept_lr=0.01, l1=0.0, l2=0.0) if s.enabled else None
        # Every label, both classes as they come: its output is the probability on all traffic.
        self.stacker = linear_model.LogisticRegression(optimizer=optim.SGD(0.01)) if s.enabled else None
        self.rarity = Rarity(params.evidence)
        self.scores: Tail | None = None  # recent scores, for tiers by alert budget (kept by the scorer)
        self.labels = {True: 0, False: 0}
        self.seen = 0
        self.since_checkpoint = 0

    def score_one(self, stored: dict[str, float | None], key: str) -> dict:
        """Score, then (for one ``key``, the tx_id, in ``learn_every``) learn; returns calibrated outputs."""
        a = self.params.anomaly
        x = model_input(stored, a.features)
        self.seen += 1
        self.since_checkpoint += 1
        learn = one_in(a.learn_every, key)
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
        return out

    def supervise(self, stored: dict[str, float | None], label_free: float, out: dict) -> dict:
        """The supervised model's probability, once it has ``min_labels`` of each class.

        The crossed-bins model's probability and the label-free score are stacked by a small
        online logistic regression (:func:`stack_input`) that learns from the same labels how
        much each says: where the indicators' evidence is strong it keeps it, where it is noise
        it learns to ignore it. The stacked probability counts as far as labels cover the
        traffic, the model's own for the rest. Both inputs are stored with the features, so a
        late label teaches the stacker what they were when the transaction was scored.
        """
        stored["label_free_score"] = label_free
        stored["model_probability"] = -1.0
        if self.classifier is not None and min(self.labels.values()) >= self.params.supervised.min_labels:
            p = self.params.supervised.calibrated(self.classifier.predict_proba_one(crossed(stored)).get(True, 0.0))
            stored["model_probability"] = round(p, 6)
            labelled = self.labels[True] + self.labels[False]
            # The stacker learned on the labelled part of the traffic: it speaks for the rest as
            # far as labels cover it (analysts' verdicts on alerts alone cover little).
            coverage = min(1.0, labelled / max(1, self.seen))
            stacked = self.stacker.predict_proba_one(stack_input(stored, self.params.evidence)).get(True, 0.0)
            out["fraud_probability"] = round(coverage * stacked + (1 - coverage) * p, 6)
            out["supervised_share"] = round(self.params.supervised.share(self.labels[True], labelled, self.seen), 4)
        return out

    def feedback(self, stored: dict[str, float | None], is_fraud: bool, key: str = "") -> None:
        """Learn one disposition: the features stored with the decision, and the verdict.

        Every confirmed fraud is learned; of the rest, the share ``negative_share`` chosen by
        ``key`` (the tx_id), so a run learns the same labels whatever the order of processes.
        Fraud is rare: learning every legitimate label drowns the few frauds, and costs more.
        """
        if self.classifier is None:
            return
        is_fraud = bool(is_fraud)
        self.labels[is_fraud] += 1
        if self.params.supervised.learns(key, is_fraud):
            self.classifier.learn_one(crossed(stored), is_fraud)
        if stored.get("label_free_score") is not None:  # decisions from before the stacker have none
            self.stacker.learn_one(stack_input(stored, self.params.evidence), is_fraud)

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
        share = out["supervised_share"]
        return Signal("fraud_model", p, p >= s.hit_probability,
                      f"{p:.1%} like confirmed frauds (from {sum(self.labels.values())} dispositions; "
                      f"{share:.0%} of the score)"), share

    def due_for_checkpoint(self) -> bool:
        return self.since_checkpoint >= self.params.checkpoint_every

    def dumps(self) -> bytes:
        self.since_checkpoint = 0
        state = (CHECKPOINT_FORMAT, self.detectors, self.calibrators, self.classifier, self.labels, self.seen,
                 self.rarity, self.scores, self.stacker)
        return zlib.compress(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL), 1)

    @classmethod
    def loads(cls, blob: bytes, params: ModelParams) -> ModelSet:
        state = _CheckpointUnpickler(io.BytesIO(zlib.decompress(blob))).load()
        if state[0] != CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint format {state[0]}, expected {CHECKPOINT_FORMAT}")
        _, detectors, calibrators, classifier, labels, seen, rarity, scores, stacker = state
        models = cls(params)
        models.detectors, models.calibrators, models.classifier = detectors, calibrators, classifier
        models.labels, models.seen, models.rarity, models.scores, models.stacker = labels, seen, rarity, scores, stacker
        return models
