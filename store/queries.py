"""Read queries shared by the cockpit and the audit tools: one definition of each question.

Live views (KPIs, alerts per minute) count by ``scored_at``, the moment the worker decided, so
a replay of old transactions still shows up as current activity; history filters by ``ts``,
the transaction's own time, which is what an auditor asks about.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Literal

from clickhouse_connect.driver.client import Client

Kind = Literal["alerts", "scores", "dlq", "actions", "deliveries", "silences", "configs"]

# Columns each audit kind returns, in order; the audit CSV header is this list.
AUDIT_COLUMNS: dict[str, tuple[str, ...]] = {
    "alerts": ("alert_id", "tx_id", "account_id", "ts", "amount", "currency", "channel", "country",
               "score", "tier", "reasons", "model_score", "fraud_probability", "features", "regime", "label_free_score",
               "config_hash", "scenario", "scored_at"),
    "scores": ("tx_id", "account_id", "ts", "amount", "currency", "channel", "direction", "country",
               "merchant_id", "counterparty_id", "device_id", "score", "tier", "reasons", "model_score",
               "fraud_probability", "features", "regime", "label_free_score", "config_hash", "scenario",
               "source_partition", "source_offset", "scored_at"),
    "dlq": ("source_topic", "source_partition", "source_offset", "key", "raw", "reason", "received_at"),
    "actions": ("action_id", "alert_id", "action", "disposition", "actor", "comment", "at"),
    "deliveries": ("attempt_id", "notification_id", "receiver", "receiver_type", "kind", "group_key", "attempt",
                   "status_code", "latency_ms", "error", "outcome", "alert_ids", "attempted_at"),
    "silences": ("event_id", "silence_id", "version", "event", "matchers", "starts_at", "ends_at", "created_by",
                 "comment", "changed_by", "changed_at"),
    "configs": ("config_hash", "config", "source", "published_at"),
}
# The time column each kind is filtered and ordered by.
TIME_COLUMN = {"alerts": "ts", "scores": "ts", "dlq": "received_at", "actions": "at", "deliveries": "attempted_at",
               "silences": "changed_at", "configs": "published_at"}


def json_safe(value: Any) -> Any:
    """A stored value as JSON can carry it: times as UTC ISO-8601, raw bytes as text, no NaN."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)  # chdb returns UTC times naive
        return aware.astimezone(UTC).isoformat(timespec="milliseconds")
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _rows(client: Client, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    result = client.query(sql, parameters=params or {})
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def kpis(client: Client, db: str) -> dict[str, Any]:
    """Throughput over the last minute, alerts per tier over 5 and 60 minutes, open alerts."""
    throughput = client.query(
        f"SELECT count() FROM {db}.scores FINAL WHERE scored_at >= now64(3) - INTERVAL 60 SECOND"
    ).result_rows[0][0]
    by_tier = client.query(
        f"""SELECT tier,
                   countIf(scored_at >= now64(3) - INTERVAL 5 MINUTE) AS last5,
                   count() AS last60
            FROM {db}.alerts FINAL
            WHERE scored_at >= now64(3) - INTERVAL 60 MINUTE
            GROUP BY tier"""
    ).result_rows
    open_alerts = client.query(
        f"""SELECT count() FROM {db}.alerts FINAL
            WHERE alert_id NOT IN (SELECT alert_id FROM {db}.actions FINAL)"""
    ).result_rows[0][0]
    alerts_5m = dict.fromkeys((1, 2, 3), 0)
    alerts_60m = dict(alerts_5m)
    for tier, last5, last60 in by_tier:
        alerts_5m[int(tier)] = int(last5)
        alerts_60m[int(tier)] = int(last60)
    return {
        "tx_per_s": throughput / 60.0,
        "alerts_5m": alerts_5m,
        "alerts_60m": alerts_60m,
        "open_alerts": int(open_alerts),
    }


def alerts_per_minute(client: Client, db: str, minutes: int = 60) -> list[dict[str, Any]]:
    return _rows(
        client,
        f"""SELECT toStartOfMinute(scored_at) AS minute, tier, count() AS alerts
            FROM {db}.alerts FINAL
            WHERE scored_at >= now64(3) - toIntervalMinute({{minutes:UInt32}})
            GROUP BY minute, tier ORDER BY minute, tier""",
        {"minutes": minutes},
    )


def latest_alerts(client: Client, db: str, limit: int = 200, tier: int | None = None) -> list[dict[str, Any]]:
    where = "WHERE tier = {tier:UInt8}" if tier else ""
    return _rows(
        client,
        f"""SELECT a.alert_id AS alert_id, a.tx_id AS tx_id, a.scored_at AS scored_at, a.ts AS ts, a.tier AS tier,
                   a.score AS score, a.account_id AS account_id, a.amount AS amount,
                   a.currency AS currency, a.channel AS channel, a.country AS country,
                   a.reasons AS reasons, a.scenario AS scenario, a.features AS features,
                   a.direction AS direction, a.merchant_id AS merchant_id, a.device_id AS device_id,
                   a.counterparty_id AS counterparty_id,
                   a.alert_id IN (SELECT alert_id FROM {db}.actions FINAL) AS acknowledged
            FROM (SELECT * FROM {db}.alerts FINAL {where} ORDER BY scored_at DESC LIMIT {{limit:UInt32}}) AS a
            ORDER BY a.scored_at DESC""",
        {"limit": limit, "tier": tier},
    )


def history(
    client: Client,
    db: str,
    kind: Kind,
    since: datetime | None = None,
    until: datetime | None = None,
    tier: int | None = None,
    account: str | None = None,
    limit: int = 100_000,
) -> list[dict[str, Any]]:
    """The audit trail of one kind, oldest first, filtered by time, tier and account."""
    if kind not in AUDIT_COLUMNS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(AUDIT_COLUMNS)}")
    time_col = TIME_COLUMN[kind]
    where, params = [], {"limit": limit}
    if since:
        where.append(f"{time_col} >= {{since:DateTime64(3, 'UTC')}}")
        params["since"] = since
    if until:
        where.append(f"{time_col} < {{until:DateTime64(3, 'UTC')}}")
        params["until"] = until
    if tier is not None:
        if kind not in ("alerts", "scores"):
            raise ValueError(f"--tier applies to alerts and scores, not {kind}")
        where.append("tier = {tier:UInt8}")
        params["tier"] = tier
    if account:
        if kind not in ("alerts", "scores"):
            raise ValueError(f"--account applies to alerts and scores, not {kind}")
        where.append("account_id = {account:String}")
        params["account"] = account
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    columns = ", ".join(AUDIT_COLUMNS[kind])
    return _rows(
        client,
        f"SELECT {columns} FROM {db}.{kind} FINAL {clause} ORDER BY {time_col} LIMIT {{limit:UInt32}}",
        params,
    )
