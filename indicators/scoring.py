"""The scoring core: indicators + models → a 0–100 risk score and a tier.

Plain Python with no Kafka in it, so the Faust worker and offline tools run the same code.

- **Label-free**: each indicator adds evidence by how rare its value is on recent traffic, up
  to one unit (:mod:`riskcockpit.indicators.evidence`); the anomaly ensemble adds its points above its
  hit percentile; what the account's recent transactions left carries over, decaying
  (``account_incident``). The units add up, and the score is ``100 · (1 − e^(−units / scale))``
  (:meth:`~riskcockpit.indicators.evidence.EvidenceParams.score`), so it never passes 100. Each
  reason's points are its share of it.
- **Supervised**: once the partition's model has learned enough confirmed frauds, its
  probability takes a growing share of the score (:func:`blend`), all of it from
  ``models.supervised.full_after`` frauds on. Each record says which ``regime`` scored it.

Tiers are score floors from ``config/indicators.yaml``; hard rules only raise them.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

import riskcockpit.indicators  # noqa: F401  (registers the library)
from riskcockpit.ground.contract import Transaction
from riskcockpit.ground.tiers import LEVELS, TierName
from riskcockpit.ground.yamlfile import read_yaml, validate
from riskcockpit.indicators.base import ENTITY_FIELDS, REGISTRY, Evaluator, Indicator, Signal
from riskcockpit.indicators.evidence import Tail
from riskcockpit.indicators.models import TX_FEATURES, ModelParams, ModelSet, features

SCORING_FILE = "indicators.yaml"
BUDGET_REASON = "tier_budget"
# The evidence an account's earlier transactions left, carried to its next (evidence.incident_half_life).
INCIDENT_REASON = "account_incident"
# A line drawn under fewer scores than this moves with each new one.
MIN_ABOVE_LINE = 10


class Tiers(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    watch: float = Field(30, gt=0, le=100, description="tier 1 from this score")
    review: float = Field(55, gt=0, le=100, description="tier 2 from this score")
    critical: float = Field(75, gt=0, le=100, description="tier 3 from this score")
    budget: dict[TierName, float] = Field(
        default_factory=dict, description="instead of its floor, a tier for this top share of recent scores, e.g. "
                                          "critical: 0.0005 (the top 0.05 %)")
    budget_window: int = Field(20_000, ge=1000, description="recent scores per partition the shares are taken over")

    @model_validator(mode="after")
    def _ascending(self):
        if not self.watch < self.review < self.critical:
            raise ValueError(f"must ascend: watch ({self.watch}) < review ({self.review}) < critical ({self.critical})")
        for name, share in self.budget.items():
            if not 0 < share < 0.5:
                raise ValueError(f"budget.{name}: a share of traffic between 0 and 0.5 (got {share})")
        shares = [self.budget[name] for name in LEVELS if name in self.budget]
        if shares != sorted(shares, reverse=True) or len(set(shares)) != len(shares):
            raise ValueError(f"budget: a higher tier must take a smaller share (got {dict(self.budget)})")
        return self

    def tier(self, score: float, lines: dict[str, float] | None = None) -> int:
        """The highest tier whose line the score reaches: its floor, or its budget's line."""
        lines = lines or {}
        floors = (lines.get("watch", self.watch), lines.get("review", self.review), lines.get("critical", self.critical))
        return max((level for level, line in enumerate(floors, 1) if score >= line), default=0)

    def budget_lines(self, recent: list[float]) -> dict[str, float]:
        """Each budgeted tier's line among ``recent`` scores (sorted): the score its top share
        starts at, once at least ``MIN_ABOVE_LINE`` of them are above it; none before.

        >>> Tiers(budget={"critical": 0.01}).budget_lines(sorted(float(v % 100) for v in range(2000)))
        {'critical': 99.0}
        """
        n, lines = len(recent), {}
        for name, share in self.budget.items():
            if n * share >= MIN_ABOVE_LINE:
                line = recent[min(n - 1, int(n * (1 - share)))]
                if line > 0:
                    lines[name] = line
        return lines


class IndicatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    weight: float = Field(ge=0, le=100, description="points a hit adds at full strength")
    params: dict[str, Any] = Field(default_factory=dict)


class Rule(BaseModel):
    """A hard rule: when it matches, the tier is at least ``min_tier`` whatever the score."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    field: str | None = Field(None, description="a transaction field, e.g. country")
    values: list[str] = Field(default_factory=list, description="the rule matches when the field is one of these")
    indicator: str | None = Field(None, description="or: the rule matches when this indicator hits")
    min_tier: int = Field(ge=1, le=3)

    @model_validator(mode="after")
    def _one_condition(self):
        if (self.field is None) == (self.indicator is None):
            raise ValueError("give either field + values, or indicator")
        if self.field is not None:
            from riskcockpit.ground.contract import Transaction as _T

            if self.field not in _T.model_fields or self.field == "attributes":
                raise ValueError(f"field {self.field!r} is not a transaction field")
            if not self.values:
                raise ValueError("field rules need values")
        return self

    def matches(self, tx: Transaction, hits: set[str]) -> bool:
        if self.indicator is not None:
            return self.indicator in hits
        return str(getattr(tx, self.field)) in self.values


class ScoringConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tiers: Tiers = Tiers()
    indicators: dict[str, IndicatorConfig]
    rules: list[Rule] = Field(default_factory=list)
    models: ModelParams = ModelParams()
    dedup_memory: int = Field(8, ge=0, le=100, description="recent decisions kept per account to answer redeliveries")

    @model_validator(mode="wrap")
    @classmethod
    def _known_and_valid(cls, data: Any, handler):
        """Every indicator known and its params valid, each problem at its own place
        (``indicators.count_velocity.params.window``), with the config's other problems: a risk
        officer fixing the file sees every mistake at once, each at its line."""
        problems: list = []
        try:
            config = handler(data)
        except ValidationError as exc:
            problems, config = list(exc.errors()), None
        configured = data.get("indicators") if isinstance(data, dict) else None
        for name, item in configured.items() if isinstance(configured, dict) else ():
            if name not in REGISTRY:
                problems.append(_error(("indicators", name), f"unknown indicator; known: {', '.join(sorted(REGISTRY))}",
                                       None))
                continue
            params = item.get("params") if isinstance(item, dict) else None
            if not isinstance(params, dict):
                continue  # not a mapping: said by the handler, or no params at all
            try:
                REGISTRY[name].Params(**params)
            except ValidationError as exc:
                problems += [_error(("indicators", name, "params", *err["loc"]), err["msg"], err.get("input"))
                             for err in exc.errors()]
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, problems)
        return config

    @model_validator(mode="after")
    def _rules_name_enabled_indicators(self):
        for rule in self.rules:
            if rule.indicator and not (rule.indicator in self.indicators and self.indicators[rule.indicator].enabled):
                raise ValueError(f"rules.{rule.name}: indicator {rule.indicator!r} is not an enabled indicator")
        return self

    @model_validator(mode="after")
    def _model_features_exist(self):
        # Only a list written in the file must match it: the default list names the default
        # library, and a feature no enabled indicator provides is a constant 0 to the detectors.
        known = set(TX_FEATURES) | {name for name, item in self.indicators.items() if item.enabled}
        unknown = [f for f in self.models.anomaly.features if f not in known]
        if self.models.anomaly.enabled and unknown and "features" in self.models.anomaly.model_fields_set:
            raise ValueError(f"models.anomaly.features: {', '.join(map(repr, unknown))} not among "
                             f"{', '.join(TX_FEATURES)} or the enabled indicators")
        return self

    @property
    def hash(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _error(loc: tuple, msg: str, got: Any) -> dict:
    """A problem found outside pydantic's own validation, as one of its line errors."""
    return {"type": PydanticCustomError("value_error", "{msg}", {"msg": msg.removeprefix("Value error, ")}),
            "loc": loc, "input": got}


def load_scoring_config(config_dir: Path) -> ScoringConfig:
    return validate(ScoringConfig, read_yaml(Path(config_dir) / SCORING_FILE))


def blend(label_free: float, probability: float, share: float) -> float:
    """The score once the supervised model has a ``share`` of it: its probability (as 0–100)
    and the label-free score, weighed by that share.

    >>> blend(40.0, 0.9, 0.0), blend(40.0, 0.9, 0.5), blend(40.0, 0.9, 1.0)
    (40.0, 65.0, 90.0)
    """
    return round((1 - share) * label_free + share * 100 * probability, 2)


def recompute(record: dict[str, Any], config: ScoringConfig) -> tuple[float, int]:
    """The score and tier of a stored decision from its reasons alone, with the config it names.

    Each reason's evidence comes from the config, not from the record's points: an indicator
    adds its units by the stored rarity of its value (``evidence``; a hit before the reference
    was warm: its weight), the anomaly ensemble's points follow from its stored percentile, the
    account's carried evidence is the stored value of ``account_incident``, the supervised
    model's probability takes its stored ``share`` of the score, and a hard rule raises the
    tier. A record whose stored score or tier differs from this was not produced by that config,
    or was altered. ``reasons`` may be the stored JSON text.

    >>> config = ScoringConfig.model_validate({"indicators": {"large_amount": {"weight": 40}}})
    >>> record = {"config_hash": config.hash, "reasons": [
    ...     {"indicator": "large_amount", "value": 5000.0, "evidence": 6.0},
    ...     {"indicator": "account_incident", "value": 0.25},
    ...     {"indicator": "fraud_model", "value": 0.5, "share": 0.5}]}
    >>> recompute(record, config)  # 1 − e^(−(6 − ln 20)/2) = 0.777 units, + 0.25: 22.66 (scale 4); half of it, half of 50
    (36.33, 1)
    """
    if record["config_hash"] != config.hash:
        raise ValueError(f"the record was scored with config {record['config_hash']}, not {config.hash}")
    reasons = record["reasons"]
    if isinstance(reasons, str):
        reasons = json.loads(reasons)
    rules = {rule.name: rule for rule in config.rules}
    models = config.models
    evidence = models.evidence
    units, floor, supervised, lines = [], 0, None, None
    for reason in reasons:
        name = reason["indicator"]
        if name.startswith("rule:"):
            rule = rules.get(name.removeprefix("rule:"))
            if rule is None:
                raise ValueError(f"reason {name!r} is not a rule of config {config.hash}")
            floor = max(floor, rule.min_tier)
        elif name == "anomaly_model":
            units.append(evidence.hit_units(models.anomaly.points(reason["value"])))
        elif name == "fraud_model":
            supervised = reason
        elif name == BUDGET_REASON:
            lines = reason["lines"]
        elif name == INCIDENT_REASON:
            units.append(reason["value"])
        elif name in config.indicators:
            weight, rarity = config.indicators[name].weight, reason.get("evidence")
            units.append(evidence.hit_units(weight) if rarity is None else evidence.units(rarity) if weight else 0.0)
        else:
            raise ValueError(f"reason {name!r} is not an indicator of config {config.hash}")
    score, _ = evidence.score(units)
    if supervised is not None:
        score = blend(score, supervised["value"], supervised["share"])
    return score, max(config.tiers.tier(score, lines), floor)


class Scorer:
    """Scores transactions of one worker (or one backtest).

    Indicators keep state per entity. Those of the account run in :meth:`score`, against the
    account's state; those of a merchant, device or counterparty run in :meth:`entity_signals`,
    against that entity's state, in a stage of their own, and reach :meth:`decide` with the
    account's signals. The order of the stages and where each state is kept are the
    pipeline's (:class:`riskcockpit.indicators.pipeline.Pipeline`), which the worker, the backtest and
    the backfill run.

    ``score(tx, state)`` mutates ``state``, the account's JSON-serialisable dict, and returns
    the score record. A redelivered ``tx_id`` gets its earlier record back unchanged and
    leaves the state alone, so a replay after a crash neither double-counts nor re-decides.
    """

    def __init__(self, config: ScoringConfig):
        self.config = config
        self.config_hash = config.hash
        self.indicators: list[tuple[Indicator, float]] = [
            (REGISTRY[name](REGISTRY[name].Params(**item.params)), item.weight)
            for name, item in config.indicators.items()
            if item.enabled
        ]
        self.weights = {ind.name: weight for ind, weight in self.indicators}
        self.account = Evaluator([ind for ind, _ in self.indicators if ind.entity == "account"])
        # Stages before the account's, in ENTITY_FIELDS order: only entities some indicator needs.
        self.stages: dict[str, Evaluator] = {
            entity: Evaluator([ind for ind, _ in self.indicators if ind.entity == entity])
            for entity in ENTITY_FIELDS if entity != "account"
            and any(ind.entity == entity for ind, _ in self.indicators)}
        # One model set per source partition: it moves, and is checkpointed, with the partition.
        self.models: dict[int, ModelSet] = {}

    def model_set(self, partition: int) -> ModelSet:
        if partition not in self.models:
            self.models[partition] = ModelSet(self.config.models)
        return self.models[partition]

    def entity_signals(self, entity: str, tx: Transaction, state: dict) -> list[Signal]:
        """Score ``tx`` with the indicators kept per ``entity``, against (and into) its ``state``.

        A transaction without that entity's field gets their "not applicable" signals (pass an
        empty dict). These indicators count distinct accounts or verdicts by tx_id, so a
        redelivered transaction changes little; no dedup memory is kept per merchant.
        """
        return self.stages[entity].evaluate(state.setdefault("ind", {}), tx)

    def learn_label(self, entity: str, tx: Transaction, state: dict, is_fraud: bool) -> None:
        """Teach the indicators kept per ``entity`` an analyst's verdict on ``tx``."""
        per_indicator = state.setdefault("ind", {})
        for ind in self.stages[entity].indicators:
            ind.learn_label(per_indicator.setdefault(ind.name, {}), tx, is_fraud)

    def account_signals(self, tx: Transaction, state: dict) -> list[Signal]:
        """Score ``tx`` with the indicators kept per account, against (and into) its ``state``."""
        return self.account.evaluate(state.setdefault("ind", {}), tx)

    def score(self, tx: Transaction, state: dict, source: tuple[int, int] = (-1, -1),
              carried: list[Signal] | None = None) -> dict[str, Any]:
        """The account's indicators, then :meth:`decide` with the entity stages' ``carried`` signals."""
        recent = state.setdefault("recent", {})
        if tx.tx_id in recent:
            return recent[tx.tx_id]
        signals = self.account_signals(tx, state)
        if carried is None and self.stages:  # a caller that ran no entity stage: say so, never guess
            carried = [Signal(ind.name, None, False, "not applicable: not evaluated")
                       for stage in self.stages.values() for ind in stage.indicators]
        if carried:
            signals += carried
        return self.decide(tx, state, signals, source)

    def decide(self, tx: Transaction, state: dict, signals: list[Signal],
               source: tuple[int, int] = (-1, -1)) -> dict[str, Any]:
        """Score, tier and remember ``tx`` from all of its ``signals`` (the account's and its
        entities'), with the models of its ``source`` partition. A transaction decided before
        gets its earlier record back unchanged."""
        recent = state.setdefault("recent", {})
        if tx.tx_id in recent:
            return recent[tx.tx_id]
        x = features(tx, signals, self.config.models.utc_offset_hours)
        models = self.model_set(source[0])
        contributions = self._evidence(models, signals, tx.tx_id)  # (signal, units, surprisal)
        out = models.score_one(x, tx.tx_id)
        anomaly, anomaly_points = models.anomaly_signal(out)
        evidence = self.config.models.evidence
        contributions.append((anomaly, evidence.hit_units(anomaly_points), None))
        incident = state.get("incident")
        carried = evidence.carried_to(incident, tx.ts_ms)
        if carried:
            x[INCIDENT_REASON] = carried  # the supervised model sees the burst too
            contributions.append((Signal(INCIDENT_REASON, carried, False,
                                         f"the account's recent transactions carry {carried:.2f} units of evidence"),
                                  carried, None))
        label_free, total = evidence.score(units for _, units, _ in contributions)
        if evidence.carries:
            state["incident"] = evidence.incident_after(incident, tx.ts_ms, total)
        # Each reason's points: its share of the label-free score.
        contributions = [(sig, label_free * units / total if total else 0.0, rarity)
                         for sig, units, rarity in contributions]
        out = models.supervise(x, label_free, out)
        supervised, share = models.supervised_signal(out)
        score, regime = label_free, "label-free"
        if share > 0:
            # The switch is gradual: the model's share grows with the frauds it has learned.
            score = blend(label_free, supervised.value, share)
            contributions.append((supervised, round(share * 100 * supervised.value, 2), share))
            regime = "supervised" if share >= 0.5 else "blended"  # supervised: the model makes half or more
        record = self._record(tx, score, contributions, out, source)
        record["label_free_score"], record["regime"] = label_free, regime
        if self.config.tiers.budget:
            self._budget_tier(models, record)
        hits = {sig.name for sig in signals if sig.hit} | {sig.name for sig, _, _ in contributions if sig.hit}
        for rule in self.config.rules:
            if rule.matches(tx, hits) and rule.min_tier > record["tier"]:
                # Rules only raise the tier: the score stays what the evidence says.
                record["tier"] = rule.min_tier
                record["reasons"].insert(0, {"indicator": f"rule:{rule.name}", "value": None, "contribution": 0.0,
                                             "reason": f"hard rule {rule.name}: tier at least {rule.min_tier}"})
        record["features"] = x
        if self.config.dedup_memory:
            recent[tx.tx_id] = record
            while len(recent) > self.config.dedup_memory:
                del recent[next(iter(recent))]
        return record

    def _budget_tier(self, models: ModelSet, record: dict[str, Any]) -> None:
        """Tiers by alert budget: the lines from the partition's recent scores replace the
        floors of the budgeted tiers; the lines used are a reason, so the tier recomputes."""
        tiers = self.config.tiers
        if models.scores is None:
            models.scores = Tail(tiers.budget_window)
        lines = tiers.budget_lines(models.scores.sorted)
        models.scores.add(record["score"])
        if not lines:
            return
        record["tier"] = tiers.tier(record["score"], lines)
        shown = ", ".join(f"{name} from {line:g} (top {tiers.budget[name]:.2%})" for name, line in lines.items())
        record["reasons"].append({"indicator": BUDGET_REASON, "value": None, "lines": lines, "contribution": 0.0,
                                  "reason": f"tiers by alert budget: {shown}"})

    def _evidence(self, models: ModelSet, signals: list[Signal], key: str) -> list[tuple[Signal, float, float | None]]:
        """(signal, units, surprisal) of each indicator that adds evidence: graded by the rarity
        of its value (:mod:`riskcockpit.indicators.evidence`); before the partition's reference is warm, a
        hit at its full weight and no surprisal."""
        ranked = models.rarity.surprisal(signals, key)
        weights = self.weights
        if not models.rarity.warm:
            hit_units = self.config.models.evidence.hit_units
            return [(sig, hit_units(weights[sig.name]), None) for sig in signals if sig.hit]
        units_of = self.config.models.evidence.units
        common = math.log(self.config.models.evidence.common)
        out = []
        for sig, surprisal in ranked:
            if surprisal <= common or not weights[sig.name]:  # most values: no evidence, whatever the rounding
                continue
            surprisal = round(surprisal, 4)  # as stored, so a recomputation gets the same units
            units = units_of(surprisal)
            if units > 0:
                if not sig.hit:
                    sig = sig._replace(reason=f"{sig.value:g}: reached by 1 in {math.exp(surprisal):,.0f} "
                                              f"recent transactions")
                out.append((sig, units, surprisal))
        return out

    def feedback(self, record: dict[str, Any], is_fraud: bool) -> None:
        """Teach the supervised model one disposition, from the features stored with the decision."""
        self.model_set(record.get("source_partition", -1)).feedback(record["features"], is_fraud, record["tx_id"])

    def _record(self, tx, score, contributions, out, source) -> dict[str, Any]:
        reasons = [
            {"indicator": sig.name, "value": sig.value, "contribution": round(points, 2), "reason": sig.reason,
             **({} if evidence is None else {"share" if sig.name == "fraud_model" else "evidence": evidence})}
            for sig, points, evidence in sorted((c for c in contributions if c[1] > 0 or c[0].name == "fraud_model"),
                                                key=lambda c: -c[1])
        ]
        return {
            "tx_id": tx.tx_id,
            "alert_id": tx.decision_id,
            "account_id": tx.account_id,
            "ts": tx.ts.isoformat(timespec="milliseconds"),
            "amount": tx.amount,
            "currency": tx.currency or "",
            "channel": tx.channel or "",
            "direction": tx.direction or "",
            "country": tx.country or "",
            "merchant_id": tx.merchant_id or "",
            "counterparty_id": tx.counterparty_id or "",
            "device_id": tx.device_id or "",
            "score": score,
            "tier": self.config.tiers.tier(score),
            "reasons": reasons,
            "model_score": out["anomaly"] or 0.0,
            "fraud_probability": out["fraud_probability"] if out["fraud_probability"] is not None else -1.0,
            "config_hash": self.config_hash,
            "scenario": str(tx.attributes.get("scenario", "")),
            "source_partition": source[0],
            "source_offset": source[1],
            "scored_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
