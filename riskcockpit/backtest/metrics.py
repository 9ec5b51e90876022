"""What a backtest measured: ranking (ROC AUC, average precision, card precision@k), each
tier's alerts, precision and recall, and how a candidate config changes a baseline's alerts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from riskcockpit.backtest.history import BacktestError
from riskcockpit.ground.tiers import TIER_NAMES

if TYPE_CHECKING:
    from riskcockpit.backtest.run import Result


def evaluate(labels: list[bool], scores: list[float], tiers: list[int], tx_ids: list[str] | None = None,
             days: list[int] | None = None, entities: list[str] | None = None, k: int = 100) -> dict:
    """ROC AUC and average precision of the score; precision / recall / volume of ``tier >= k``;
    with ``days`` (epoch days) and ``entities`` (accounts), alerts per day of each tier and card
    precision@k (:func:`card_precision_at_k`).

    Repeated ``tx_id`` (a redelivery answered from the dedup memory) count once. AUC and AP are
    ``None`` when only one class is present; precision is ``None`` for a tier with no alerts.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    if tx_ids is not None:
        keep = first_occurrences(tx_ids)
        labels, scores, tiers = [labels[i] for i in keep], [scores[i] for i in keep], [tiers[i] for i in keep]
        days = None if days is None else [days[i] for i in keep]
        entities = None if entities is None else [entities[i] for i in keep]
    n, positives = len(labels), sum(labels)
    both = 0 < positives < n
    metrics: dict[str, Any] = {
        "transactions": n, "frauds": positives,
        "roc_auc": float(roc_auc_score(labels, scores)) if both else None,
        "average_precision": float(average_precision_score(labels, scores)) if positives else None,
        "tiers": {},
    }
    for tier in (1, 2, 3):
        alerts = sum(1 for t in tiers if t >= tier)
        hits = sum(1 for t, y in zip(tiers, labels, strict=True) if t >= tier and y)
        metrics["tiers"][tier] = {
            "alerts": alerts, "alert_share": alerts / n if n else None, "true_alerts": hits,
            "precision": hits / alerts if alerts else None, "recall": hits / positives if positives else None,
        }
        if days is not None:
            metrics["tiers"][tier]["per_day"] = alerts / len(set(days)) if days else None
    if days is not None and entities is not None:
        metrics["card_precision_at_k"], metrics["k"] = card_precision_at_k(labels, scores, days, entities, k), k
    return metrics


def card_precision_at_k(labels: list[bool], scores: list[float], days: list[int], entities: list[str],
                        k: int = 100) -> float | None:
    """The share of fraudulent entities among each day's ``k`` riskiest, averaged over days.

    An entity's risk on a day is its highest score that day; an entity found fraudulent among
    the top ``k`` of an earlier day is left out (it is blocked by then), so each day asks what
    an analyst team that can check ``k`` cards a day would find that is new.

    >>> card_precision_at_k([True, False, True, False], [90, 80, 70, 10], [0, 0, 1, 1], ["a", "b", "a", "c"], k=1)
    0.5
    """
    by_day: dict[int, dict[str, tuple[float, bool]]] = {}
    for y, score, day, entity in zip(labels, scores, days, entities, strict=True):
        day_of = by_day.setdefault(day, {})
        highest, fraudulent = day_of.get(entity, (score, False))
        day_of[entity] = (max(highest, score), fraudulent or bool(y))
    detected: set[str] = set()
    precisions = []
    for day in sorted(by_day):
        ranked = sorted(((score, y, e) for e, (score, y) in by_day[day].items() if e not in detected),
                        key=lambda item: -item[0])[:k]
        if ranked:
            precisions.append(sum(y for _, y, _ in ranked) / k)
            detected |= {e for _, y, e in ranked if y}
    return sum(precisions) / len(precisions) if precisions else None


def first_occurrences(tx_ids: list[str]) -> list[int]:
    """Positions of each ``tx_id``'s first row: a repeat (a redelivery) counts once."""
    keep, seen = [], set()
    for i, tx_id in enumerate(tx_ids):
        if tx_id not in seen:
            seen.add(tx_id)
            keep.append(i)
    return keep


def compare(baseline: Result, candidate: Result) -> dict:
    """How ``candidate``'s config changes ``baseline``'s alerts on the same transactions: alerts
    per tier, and the transactions whose tier went up or down. Repeated ``tx_id`` count once.

    >>> import pyarrow as pa
    >>> from riskcockpit.backtest.run import Result
    >>> run = lambda tiers: Result(None, None, None, 3, 0, 0, 1.0, 1.0, table=pa.table(
    ...     {"tx_id": ["a", "b", "c"], "tier": tiers}))
    >>> change = compare(run([0, 2, 3]), run([1, 2, 1]))
    >>> change["tiers"][1], change["tiers"][3], change["up"], change["down"]
    ({'baseline': 2, 'candidate': 3}, {'baseline': 1, 'candidate': 0}, 1, 1)
    """
    ids = candidate.table["tx_id"].to_pylist()
    if baseline.table["tx_id"].to_pylist() != ids:
        raise BacktestError("the baseline and the candidate did not score the same transactions")
    keep = first_occurrences(ids)
    tiers_before, tiers_after = baseline.table["tier"].to_pylist(), candidate.table["tier"].to_pylist()
    before, after = [tiers_before[i] for i in keep], [tiers_after[i] for i in keep]
    return {"transactions": len(keep),
            "up": sum(a > b for b, a in zip(before, after, strict=True)), "down": sum(a < b for b, a in zip(before, after, strict=True)),
            "tiers": {k: {"baseline": sum(t >= k for t in before), "candidate": sum(t >= k for t in after)}
                      for k in (1, 2, 3)}}


def _num(value, pattern="{:.4f}"):
    return "n/a" if value is None else pattern.format(value)


def format_comparison(baseline: Result, candidate: Result, baseline_hash: str, candidate_hash: str) -> str:
    """The change in alert volume per tier (and in precision and recall, when labelled)."""
    change = compare(baseline, candidate)
    labelled = baseline.metrics is not None and candidate.metrics is not None
    lines = [f"baseline config {baseline_hash} → candidate config {candidate_hash}, "
             f"the same {change['transactions']} transactions:"]
    if labelled:
        for key, label in (("roc_auc", "ROC AUC"), ("average_precision", "average precision")):
            lines.append(f"{label:<18} {_num(baseline.metrics[key])} → {_num(candidate.metrics[key])}")
    lines.append((f"{'alert rule':<18} {'baseline':>8}  {'candidate':>9}  {'change':>8} {'':<7}"
                  + (f" {'precision':<15}  recall" if labelled else "")).rstrip())
    names = TIER_NAMES
    for k, volume in change["tiers"].items():
        before, after = volume["baseline"], volume["candidate"]
        relative = f"({(after - before) / before:+.0%})" if before else ""
        line = f"tier >= {k} {names[k]:<8} {before:>8}  {after:>9}  {after - before:>+8} {relative:<7}"
        if labelled:
            b, c = baseline.metrics["tiers"][k], candidate.metrics["tiers"][k]
            line += (f" {_num(b['precision']):>6} → {_num(c['precision']):<6}"
                     f"  {_num(b['recall']):>6} → {_num(c['recall'])}")
        lines.append(line.rstrip())
    lines.append(f"tier changed for {change['up'] + change['down']} of {change['transactions']} transactions: "
                 f"{change['up']} up, {change['down']} down")
    return "\n".join(lines)


def format_metrics(metrics: dict) -> str:
    since = f" from {metrics['test_from'].isoformat()}" if metrics.get("test_from") else ""
    lines = [f"labelled{since}: {metrics['transactions']} transactions, {metrics['frauds']} fraud "
             f"({_num(metrics['frauds'] / metrics['transactions'] if metrics['transactions'] else None, '{:.2%}')})",
             f"ROC AUC            {_num(metrics['roc_auc'])}",
             f"average precision  {_num(metrics['average_precision'])}"]
    if "card_precision_at_k" in metrics:
        lines.append(f"card precision@{metrics['k']:<4} {_num(metrics['card_precision_at_k'])}")
    lines.append("alert rule        alerts   share    per day  precision  recall")
    names = TIER_NAMES
    for k, m in metrics["tiers"].items():
        lines.append(f"tier >= {k} {names[int(k)]:<8} {m['alerts']:>7}  {_num(m['alert_share'], '{:>6.2%}')}  "
                     f"{_num(m.get('per_day'), '{:>7.1f}')}  {_num(m['precision']):>9}  {_num(m['recall']):>6}")
    return "\n".join(lines)
