"""The flat label set of an alert: what routes, silences, inhibition and grouping look at.

An alert (the score record on ``risk.alerts``) has nested reasons; matchers want flat strings.
``indicators`` joins the alert's indicator names with commas; the matcher name ``indicator``
(singular) asks about any one of them, so ``indicator="structuring"`` matches an alert with
several reasons. Scalar ``attributes`` of the transaction become labels of their own unless
they would shadow one of the alert's fields.
"""

from __future__ import annotations

from typing import Any

FIELDS = ("account_id", "channel", "country", "currency", "scenario", "direction", "merchant_id")
# The label a multi-valued matcher name stands for.
MULTI_VALUED = {"indicator": "indicators"}


def alert_id(alert: dict[str, Any]) -> str:
    return str(alert.get("alert_id") or alert["tx_id"])


def indicators_of(alert: dict[str, Any]) -> list[str]:
    names = [str(r.get("indicator", "")) for r in alert.get("reasons") or [] if isinstance(r, dict)]
    return sorted({n for n in names if n})


def alert_labels(alert: dict[str, Any]) -> dict[str, str]:
    labels = {"alert_id": alert_id(alert), "tier": str(int(alert.get("tier") or 0))}
    for name in FIELDS:
        value = alert.get(name)
        labels[name] = "" if value is None else str(value)
    labels["indicators"] = ",".join(indicators_of(alert))
    attributes = alert.get("attributes") if isinstance(alert.get("attributes"), dict) else {}
    for name, value in attributes.items():
        if isinstance(value, str | int | float | bool) and name not in labels:
            labels[str(name)] = str(value)
    segment = alert.get("segment") or attributes.get("segment") or attributes.get("customer_segment")
    labels["segment"] = str(segment or "")
    return labels


def label_values(labels: dict[str, str], name: str) -> list[str]:
    """The values a matcher on ``name`` compares against; an absent label is the empty string."""
    if name in MULTI_VALUED:
        joined = labels.get(MULTI_VALUED[name], "")
        return joined.split(",") if joined else [""]
    return [labels.get(name, "")]
