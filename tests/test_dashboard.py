"""The cockpit against a real embedded store, driven over HTTP the way a browser drives it.

chdb opens one store path per process (a second, different path fails with "EmbeddedServer
already initialized with path ..."), so the tests here share one module-scoped database in the
session's store (conftest ``store_dir``); none of them writes to it after setup.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dash_client import call

from riskcockpit.dashboard import i18n
from riskcockpit.dashboard.app import create_app
from riskcockpit.settings import load_settings
from riskcockpit.store import queries
from riskcockpit.store.client import connect
from riskcockpit.store.migrate import migrate

ALERT_COLUMNS = ["alert_id", "tx_id", "account_id", "ts", "amount", "currency", "channel", "country",
                 "score", "tier", "reasons", "model_score", "config_hash", "scenario", "scored_at"]
SCORE_COLUMNS = ["tx_id", "account_id", "ts", "amount", "currency", "channel", "direction", "country",
                 "merchant_id", "counterparty_id", "device_id", "score", "tier", "reasons", "model_score",
                 "config_hash", "scenario", "source_partition", "source_offset", "scored_at"]
REASONS = json.dumps([
    {"indicator": "new_device", "value": 1.0, "weight": 1.0, "contribution": 1.0, "reason": "first use of this device"},
    {"indicator": "geo_velocity", "value": None, "weight": 0.5, "contribution": 0.2, "reason": "no earlier location"},
    {"indicator": "amount_zscore", "value": 4.23, "weight": 0.5, "contribution": 2.1, "reason": "amount 4.2 sd high"},
])
SCORES_LAST_MINUTE = 120
# Alerts scored now per tier; plus one tier-1 alert from 30 minutes ago and one acknowledged.
NOW_PER_TIER = {1: 1, 2: 2, 3: 3}


def _alert(tier: int, scored_at: datetime, account: str = "acct-1") -> list[Any]:
    return [uuid.uuid4().hex, uuid.uuid4().hex, account, scored_at, 1234.5, "EUR", "card", "DE",
            0.3 + 0.2 * tier, tier, REASONS, 0.5, "cfg", "card_testing", scored_at]


class Unreachable:
    """A client whose server is down."""

    def query(self, *args, **kwargs):
        raise ConnectionError("connection refused")


@pytest.fixture(scope="module")
def store(store_dir):
    # conftest's session store (chdb opens one path per process), in a database of this module's own.
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("RISKCOCKPIT_")]:
            mp.delenv(key)
        mp.setenv("RISKCOCKPIT_DATA_DIR", str(store_dir))
        mp.setenv("RISKCOCKPIT_STORE__DATABASE", f"t_dash_{uuid.uuid4().hex[:10]}")
        settings = load_settings()
    client = connect(settings.store)
    db = settings.store.database
    migrate(client, db)
    now = datetime.now(UTC)
    alerts = [_alert(tier, now) for tier, n in NOW_PER_TIER.items() for _ in range(n)]
    alerts.append(_alert(1, now - timedelta(minutes=30), account="acct-old"))
    client.insert(f"{db}.alerts", alerts, column_names=ALERT_COLUMNS)
    scores = [[f"tx{i}", "acct-1", now, 10.0, "EUR", "card", "debit", "DE", "m", "", "d", 0.1, 0, "[]", 0.1,
               "cfg", "", 0, i, now] for i in range(SCORES_LAST_MINUTE)]
    client.insert(f"{db}.scores", scores, column_names=SCORE_COLUMNS)
    acknowledged = alerts[-1][0]
    client.insert(f"{db}.actions", [[uuid.uuid4().hex, acknowledged, "acknowledge", "", "bob", "", now]],
                  column_names=["action_id", "alert_id", "action", "disposition", "actor", "comment", "at"])
    return {"settings": settings, "client": client, "acknowledged": acknowledged}


@pytest.fixture
def published() -> list[dict]:
    return []


@pytest.fixture
def http(store, published):
    app = create_app(store["settings"].cockpit, store["client"], store["settings"].store.database,
                     publish_action=published.append)
    return app.server.test_client()


# ---------------------------------------------------------------- a browser's callback requests


def _refresh_grid(http, tier: str = "all") -> list[dict]:
    return call(http, "alerts-grid.rowData", {"tick.n_intervals": 1, "tier-filter.value": tier})[
        "alerts-grid"]["rowData"]


# ---------------------------------------------------------------- page and callbacks


def test_page_layout_and_dependencies_are_served_without_internet(http):
    assert http.get("/_dash-layout").status_code == 200
    assert http.get("/_dash-dependencies").status_code == 200
    page = http.get("/").get_data(as_text=True)
    assert not re.search(r"(src|href)=\"https?://", page), "the cockpit must not load anything from a CDN"
    assert "bootstrap.min.css" in page
    assert http.get("/assets/bootstrap.min.css").status_code == 200


def test_overview_callback_shows_kpi_numbers(http):
    response = call(http, "kpi-tps.children", {"tick.n_intervals": 1, "language.value": "en"})
    assert response["kpi-tps"]["children"] == f"{SCORES_LAST_MINUTE / 60:.1f}"
    for tier, n in NOW_PER_TIER.items():
        assert response[f"kpi-t{tier}-5m"]["children"] == str(n)
        assert response[f"kpi-t{tier}-60m"]["children"] == str(n + (tier == 1))
    total = sum(NOW_PER_TIER.values()) + 1
    assert response["kpi-open"]["children"] == str(total - 1)
    bars = {trace["name"]: sum(trace["y"]) for trace in response["alerts-chart"]["figure"]["data"]}
    assert bars == {"Watch": 2, "Review": 2, "Critical": 3}
    assert response["store-status"]["is_open"] is False


def test_grid_callback_lists_latest_alerts_of_every_tier(http, store):
    rows = _refresh_grid(http)
    assert sorted({row["tier"] for row in rows}) == [1, 2, 3]
    assert len(rows) == sum(NOW_PER_TIER.values()) + 1
    row = rows[0]
    # Biggest contribution first; an indicator without a value is named alone.
    assert row["reasons"] == "amount_zscore (4.2); new_device (1.0); geo_velocity"
    assert row["amount"] == 1234.5 and row["currency"] == "EUR"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row["scored_at"])
    assert {r["alert_id"] for r in rows if r["acknowledged"]} == {store["acknowledged"]}


def test_grid_tier_filter_keeps_only_that_tier(http):
    rows = _refresh_grid(http, tier="3")
    assert [row["tier"] for row in rows] == [3] * NOW_PER_TIER[3]


def test_store_failure_is_reported_and_keeps_the_page(store):
    http = create_app(store["settings"].cockpit, Unreachable(), store["settings"].store.database).server.test_client()
    response = call(http, "kpi-tps.children", {"tick.n_intervals": 1, "language.value": "en"})
    assert response["store-status"]["is_open"] is True
    assert "connection refused" in response["store-status"]["children"]
    assert "kpi-tps" not in response  # the last numbers stay on screen


# ---------------------------------------------------------------- language


def test_every_label_exists_in_both_languages():
    assert set(i18n.LABELS["en"]) == set(i18n.LABELS["zh"])


def test_language_switch_yields_chinese_labels(http):
    response = call(http, "tier-filter.options", {"language.value": "zh"})
    labels = {json.loads(key)["label"].split("#")[0]: value["children"]
              for key, value in response.items() if key.startswith("{")}
    assert labels["title"] == "风险驾驶舱"
    assert labels["tps"] == "交易/秒"
    assert labels["open_alerts"] == "未处理预警"
    assert [o["label"] for o in response["tier-filter"]["options"]] == ["全部", "关注", "审查", "严重"]
    headers = [c["headerName"] for c in response["alerts-grid"]["columnDefs"]]
    assert "账户" in headers and "主要原因" in headers
    assert response["ack-button"]["children"] == "确认所选预警"

    overview = call(http, "kpi-tps.children", {"tick.n_intervals": 2, "language.value": "zh"})
    assert overview["updated"]["children"].startswith("更新于")
    assert [trace["name"] for trace in overview["alerts-chart"]["figure"]["data"]] == ["关注", "审查", "严重"]


def test_default_language_comes_from_settings(store):
    settings = store["settings"]
    zh = settings.cockpit.model_copy(update={"language": "zh"})
    layout = json.dumps(create_app(zh, store["client"], settings.store.database).server.test_client().get("/_dash-layout").get_json(),
                        ensure_ascii=False)
    assert "风险驾驶舱" in layout and "Risk cockpit" not in layout


# ---------------------------------------------------------------- acknowledging


def _ack(http, rows: list[dict], actor: str | None = "alice", comment: str | None = "card blocked") -> dict:
    return call(http, "ack-feedback.children", {
        "ack-button.n_clicks": 1, "alerts-grid.selectedRows": rows, "ack-actor.value": actor,
        "ack-comment.value": comment, "language.value": "en",
    })


def test_acknowledge_publishes_one_action_per_selected_alert(http, published):
    rows = [row for row in _refresh_grid(http) if not row["acknowledged"]][:2]
    before = datetime.now(UTC)
    response = _ack(http, rows)
    assert "Acknowledged 2" in response["ack-feedback"]["children"]
    assert [a["alert_id"] for a in published] == [row["alert_id"] for row in rows]
    for action in published:
        assert re.fullmatch(r"[0-9a-f]{32}", action["action_id"])
        assert (action["action"], action["disposition"], action["actor"], action["comment"]) == (
            "acknowledge", "", "alice", "card blocked")
        at = datetime.fromisoformat(action["at"])
        assert at.utcoffset() == timedelta(0) and at >= before - timedelta(seconds=1)
    assert len({a["action_id"] for a in published}) == 2
    assert response["alerts-grid"]["deselectAll"] is True


def test_acknowledge_skips_alerts_already_acknowledged(http, published, store):
    rows = _refresh_grid(http)
    done = [row for row in rows if row["alert_id"] == store["acknowledged"]]
    open_row = next(row for row in rows if not row["acknowledged"])
    response = _ack(http, done + [open_row])
    assert [a["alert_id"] for a in published] == [open_row["alert_id"]]
    assert "1 already acknowledged" in response["ack-feedback"]["children"]


@pytest.mark.parametrize(("actor", "rows", "message"), [
    ("  ", [{"alert_id": "a1", "acknowledged": False}], "analyst name"),
    ("alice", [], "Select one or more alerts"),
])
def test_acknowledge_needs_an_analyst_and_a_selection(http, published, actor, rows, message):
    response = _ack(http, rows, actor=actor)
    assert message in response["ack-feedback"]["children"]
    assert published == []


def test_producer_failure_is_shown_not_raised(store):
    def broken(_action: dict) -> None:
        raise RuntimeError("broker down")

    http = create_app(store["settings"].cockpit, store["client"], store["settings"].store.database,
                      publish_action=broken).server.test_client()
    response = _ack(http, [{"alert_id": "a1", "acknowledged": False}])
    assert "broker down" in response["ack-feedback"]["children"]


def test_without_publisher_there_is_no_acknowledge_button(store):
    http = create_app(store["settings"].cockpit, store["client"], store["settings"].store.database).server.test_client()
    assert "ack-button" not in http.get("/_dash-layout").get_data(as_text=True)
    assert "ack-button" not in http.get("/_dash-dependencies").get_data(as_text=True)


# ---------------------------------------------------------------- HTTP API


def test_healthz(http):
    response = http.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_api_kpis(http):
    body = http.get("/api/kpis").get_json()
    assert body["alerts_5m"] == {str(t): n for t, n in NOW_PER_TIER.items()}
    assert body["open_alerts"] == sum(NOW_PER_TIER.values())


def test_audit_alerts_filtered_by_tier(http):
    response = http.get("/api/audit/alerts?tier=3")
    assert response.status_code == 200
    rows = response.get_json()
    assert [row["tier"] for row in rows] == [3] * NOW_PER_TIER[3]
    assert list(rows[0]) == list(queries.AUDIT_COLUMNS["alerts"])  # the API keeps the audit column order
    assert datetime.fromisoformat(rows[0]["ts"]).utcoffset() == timedelta(0)


def test_audit_filters_by_time_and_account(http):
    since = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    until = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    rows = http.get("/api/audit/alerts", query_string={"since": since, "until": until}).get_json()
    assert [row["account_id"] for row in rows] == ["acct-old"]
    rows = http.get("/api/audit/alerts?account=acct-old&limit=5").get_json()
    assert [row["account_id"] for row in rows] == ["acct-old"]
    assert len(http.get("/api/audit/scores?limit=7").get_json()) == 7


@pytest.mark.parametrize(("query", "parameter"), [
    ("alerts?since=garbage", "since"),
    ("alerts?until=yesterday", "until"),
    ("alerts?tier=7", "tier"),
    ("alerts?tier=high", "tier"),
    ("alerts?limit=0", "limit"),
    ("dlq?tier=1", "tier"),
])
def test_audit_bad_parameters_are_400_naming_the_parameter(http, query, parameter):
    response = http.get(f"/api/audit/{query}")
    assert response.status_code == 400
    assert response.get_json()["error"].startswith(parameter)


def test_audit_unknown_kind_is_404(http):
    response = http.get("/api/audit/passwords")
    assert response.status_code == 404 and "kind" in response.get_json()["error"]


def test_api_store_failure_is_503_json(store):
    http = create_app(store["settings"].cockpit, Unreachable(), store["settings"].store.database).server.test_client()
    for path in ("/api/kpis", "/api/audit/alerts"):
        response = http.get(path)
        assert response.status_code == 503 and "connection refused" in response.get_json()["error"]


def test_disposition_buttons_publish_verdicts_with_account_and_nothing_the_browser_could_forge(http, published):
    rows = _refresh_grid(http)[:2]
    response = call(http, "ack-feedback.children", {
        "dispo-fraud.n_clicks": 1, "alerts-grid.selectedRows": rows, "ack-actor.value": "bob",
        "ack-comment.value": "customer confirmed", "language.value": "en",
    })
    assert "Recorded 2 disposition(s)" in response["ack-feedback"]["children"]
    assert [(a["action"], a["disposition"], a["account_id"]) for a in published] == [
        ("disposition", "confirmed_fraud", row["account_id"]) for row in rows]
    assert not any("features" in a or "tx" in a for a in published)
