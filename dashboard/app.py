"""The Dash cockpit: live KPIs, alerts per minute, the latest alerts, and the audit HTTP API.

The cockpit only reads the store; an analyst's acknowledgement goes out through
``publish_action`` (the lead wires it to a Kafka producer) and comes back into the table once
the sink has written it. Everything is served from this process: Bootstrap's CSS sits in
``assets/`` because the cockpit runs on networks without internet access.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dash
import dash_ag_grid as dag
import dash_bootstrap_components as dbc
import pandas  # noqa: F401 - see below
import plotly.graph_objects as go
from clickhouse_connect.driver.client import Client
from dash import ALL, Input, Output, State, dcc, html
from flask import abort, jsonify, make_response, request

from riskcockpit.dashboard.i18n import GRID_LOCALE, LANGUAGES, language, t, tier_name
from riskcockpit.dashboard.settings import CockpitSettings
from riskcockpit.store import queries

ASSETS = Path(__file__).resolve().parent / "assets"
TIERS = (1, 2, 3)
TIER_COLORS = {1: "#e0b000", 2: "#f07c00", 3: "#d62839"}
# Row tints light enough to keep the text readable; the tier column carries the strong color.
ROW_TINTS = {1: "#fff8db", 2: "#ffe8cc", 3: "#ffd9dc"}
TOP_REASONS = 3
AUDIT_LIMIT = 100_000

# One client per process (store.client caches it), so one lock per process, shared by every app.
_STORE_LOCK = threading.Lock()
# pandas is imported above, not left to plotly: plotly peeks into sys.modules for it, and when
# another thread is halfway through importing it (the chdb driver does so on its first insert),
# plotly gets the half-initialised module and building a figure fails with "no attribute 'Series'".


def create_app(
    cockpit: CockpitSettings, client: Client, database: str, publish_action: Callable[[dict], Any] | None = None
) -> dash.Dash:
    """The cockpit, reading ``database`` through ``client``; acknowledging needs ``publish_action``."""
    db = database
    lang = language(cockpit.language)

    def store(fn: Callable, *args: Any, **kwargs: Any) -> Any:
        with _STORE_LOCK:
            return fn(client, db, *args, **kwargs)

    app = dash.Dash(
        __name__,
        assets_folder=str(ASSETS),
        serve_locally=True,
        title="Risk cockpit · 风险驾驶舱",
        update_title=None,
    )
    app.layout = _layout(cockpit, lang, can_acknowledge=publish_action is not None)
    _register_refresh(app, store, cockpit)
    _register_language(app, can_acknowledge=publish_action is not None)
    if publish_action is not None:
        _register_acknowledge(app, publish_action)
    _register_routes(app, store)
    return app


# ---------------------------------------------------------------- layout


def _label(key: str, lang: str, tag: Callable = html.Span, copy: int = 0, **kwargs: Any) -> Any:
    """A translated text; its id ``{"label": "key#copy"}`` lets one callback re-translate them all."""
    return tag(t(lang, key), id={"label": f"{key}#{copy}"}, **kwargs)


def _tile(lang: str, title_key: str, value_id: str, note: Any, color: str | None = None) -> dbc.Col:
    style = {"borderLeftColor": color} if color else {}
    return dbc.Col(
        dbc.Card(
            dbc.CardBody(
                [
                    _label(title_key, lang, html.Div, className="kpi-title", style={"color": color} if color else {}),
                    html.Div("–", id=value_id, className="kpi-value"),
                    html.Div(note, className="kpi-note"),
                ]
            ),
            class_name="kpi-tile h-100",
            style=style,
        ),
        xs=6,
        lg=True,
        class_name="mb-3",
    )


def _tiles(lang: str) -> dbc.Row:
    tiers = [
        _tile(
            lang,
            f"tier_{tier}",
            f"kpi-t{tier}-5m",
            [_label("last_5m", lang, copy=tier), " · ", _label("in_60m", lang, copy=tier), ": ",
             html.Span("–", id=f"kpi-t{tier}-60m", className="fw-semibold")],
            TIER_COLORS[tier],
        )
        for tier in TIERS
    ]
    return dbc.Row(
        [
            _tile(lang, "tps", "kpi-tps", _label("tps_note", lang)),
            *tiers,
            _tile(lang, "open_alerts", "kpi-open", _label("open_note", lang)),
        ],
        class_name="g-3",
    )


def _navbar(lang: str) -> dbc.Navbar:
    switch = dbc.RadioItems(
        id="language",
        options=[{"label": name, "value": code} for code, name in LANGUAGES.items()],
        value=lang,
        class_name="btn-group btn-group-sm",
        input_class_name="btn-check",
        label_class_name="btn btn-outline-light",
        label_checked_class_name="active",
        persistence=True,
        persistence_type="local",
    )
    return dbc.Navbar(
        dbc.Container(
            [
                html.Div(
                    [_label("title", lang, html.Span, className="navbar-brand mb-0 h1"),
                     _label("subtitle", lang, html.Span, className="navbar-text small text-white-50")],
                    className="d-flex align-items-baseline gap-2",
                ),
                html.Div(
                    [html.Span(id="updated", className="navbar-text small text-white-50"), switch],
                    className="d-flex align-items-center gap-3",
                ),
            ],
            fluid=True,
        ),
        color="dark",
        dark=True,
        class_name="mb-3",
    )


def _tier_options(lang: str) -> list[dict]:
    return [{"label": t(lang, "all"), "value": "all"}] + [
        {"label": tier_name(lang, tier), "value": str(tier)} for tier in TIERS
    ]


def _column_defs(lang: str) -> list[dict]:
    # Tier names go through a formatter so the row data stays language-free and the numeric
    # tier keeps sorting and filtering as a number.
    names = {tier: json.dumps(tier_name(lang, tier)) for tier in TIERS}
    tier_text = (f"params.value + ' · ' + "
                 f"(params.value == 3 ? {names[3]} : params.value == 2 ? {names[2]} : {names[1]})")
    number = "agNumberColumnFilter"
    return [
        # Text, not a date column: the grid's date filter would want a local date picker.
        {"field": "scored_at", "headerName": t(lang, "col_scored_at"), "sort": "desc", "width": 160,
         "cellDataType": "text"},
        {"field": "tier", "headerName": t(lang, "col_tier"), "filter": number, "width": 105,
         "valueFormatter": {"function": tier_text}, "cellClass": "tier-cell"},
        {"field": "score", "headerName": t(lang, "col_score"), "filter": number, "width": 80,
         "valueFormatter": {"function": "d3.format('.3f')(params.value)"}},
        {"field": "account_id", "headerName": t(lang, "col_account"), "width": 110},
        {"field": "tx_id", "headerName": t(lang, "col_tx"), "width": 130},
        {"field": "amount", "headerName": t(lang, "col_amount"), "filter": number, "width": 135,
         "type": "rightAligned",
         "valueFormatter": {"function": "d3.format(',.2f')(params.value) + ' ' + params.data.currency"}},
        {"field": "channel", "headerName": t(lang, "col_channel"), "width": 90},
        {"field": "country", "headerName": t(lang, "col_country"), "width": 80},
        {"field": "reasons", "headerName": t(lang, "col_reasons"), "flex": 1, "minWidth": 220,
         "tooltipField": "reasons_detail", "wrapText": True, "autoHeight": True, "cellClass": "reasons-cell"},
        {"field": "scenario", "headerName": t(lang, "col_scenario"), "width": 135},
        {"field": "acknowledged", "headerName": t(lang, "col_ack"), "width": 80, "cellClass": "text-center"},
        # The alert's own id (account and tx_id together): what actions and webhooks name.
        {"field": "alert_id", "headerName": t(lang, "col_alert"), "width": 190},
    ]


def _grid_options(lang: str, can_acknowledge: bool) -> dict:
    options = {
        "animateRows": False,
        "tooltipShowDelay": 300,
        "localeText": {**GRID_LOCALE[lang], "noRowsToShow": t(lang, "no_rows")},
    }
    if can_acknowledge:
        options["rowSelection"] = {"mode": "multiRow", "checkboxes": True, "headerCheckbox": True,
                                   "enableClickSelection": False}
    return options


def _grid(lang: str, can_acknowledge: bool) -> dag.AgGrid:
    return dag.AgGrid(
        id="alerts-grid",
        rowData=[],
        columnDefs=_column_defs(lang),
        defaultColDef={"sortable": True, "filter": True, "floatingFilter": True, "resizable": True},
        dashGridOptions=_grid_options(lang, can_acknowledge),
        # Row identity keeps the analyst's selection across refreshes.
        getRowId="params.data.alert_id",
        getRowStyle={
            "styleConditions": [
                {"condition": f"params.data.tier == {tier}", "style": {"backgroundColor": ROW_TINTS[tier]}}
                for tier in TIERS
            ]
        },
        style={"height": "560px", "width": "100%"},
    )


def _acknowledge_form(lang: str) -> dbc.Row:
    return dbc.Row(
        [
            dbc.Col(dbc.Input(id="ack-actor", type="text", size="sm", placeholder=t(lang, "actor_placeholder"),
                              persistence=True, persistence_type="local"), md=3),
            dbc.Col(dbc.Input(id="ack-comment", type="text", size="sm",
                              placeholder=t(lang, "comment_placeholder")), md=3),
            dbc.Col(dbc.Button(t(lang, "ack_button"), id="ack-button", color="primary", size="sm",
                               class_name="w-100"), md=2),
            dbc.Col(dbc.Button(t(lang, "fraud_button"), id="dispo-fraud", color="danger", size="sm",
                               class_name="w-100"), md=2),
            dbc.Col(dbc.Button(t(lang, "fp_button"), id="dispo-fp", color="secondary", size="sm",
                               class_name="w-100"), md=2),
            dbc.Col(html.Div(id="ack-feedback", className="small"), md=12, class_name="mt-2"),
        ],
        class_name="g-2 mb-2 align-items-center",
    )


def _layout(cockpit: CockpitSettings, lang: str, can_acknowledge: bool) -> html.Div:
    tier_filter = dbc.RadioItems(
        id="tier-filter",
        options=_tier_options(lang),
        value="all",
        class_name="btn-group btn-group-sm",
        input_class_name="btn-check",
        label_class_name="btn btn-outline-secondary",
        label_checked_class_name="active",
    )
    alerts_header = dbc.CardHeader(
        html.Div(
            [_label("alerts_title", lang, html.Span, className="fw-semibold"),
             html.Div([_label("tier_filter", lang, html.Span, className="small text-muted"), tier_filter],
                      className="d-flex align-items-center gap-2")],
            className="d-flex justify-content-between align-items-center",
        )
    )
    body = [_acknowledge_form(lang)] if can_acknowledge else []
    return html.Div(
        [
            _navbar(lang),
            dbc.Container(
                [
                    dbc.Alert(id="store-status", color="danger", is_open=False, class_name="py-2"),
                    _tiles(lang),
                    dbc.Card(
                        [dbc.CardHeader(_label("chart_title", lang, html.Span, className="fw-semibold")),
                         dbc.CardBody(dcc.Graph(id="alerts-chart", figure=_figure([], lang),
                                                config={"displaylogo": False, "displayModeBar": False},
                                                style={"height": "280px"}), class_name="p-1")],
                        class_name="mb-3",
                    ),
                    dbc.Card([alerts_header, dbc.CardBody([*body, _grid(lang, can_acknowledge)])], class_name="mb-4"),
                ],
                fluid=True,
            ),
            dcc.Interval(id="tick", interval=int(cockpit.refresh_seconds * 1000)),
        ]
    )


# ---------------------------------------------------------------- data shaping


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _short_number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1 or value == 0:
        return f"{value:.1f}"
    return f"{value:.2g}"


def _reasons(raw: str) -> tuple[str, str]:
    """``("new_device (1.0); amount_zscore (4.2)", full reason sentences)``, biggest contribution first."""
    try:
        items = json.loads(raw or "[]")
    except ValueError:
        return raw, raw  # shown as stored rather than hidden: an analyst should see something is off
    items = sorted(items, key=lambda r: r.get("contribution") or 0, reverse=True)
    short = [
        r["indicator"] if r.get("value") is None else f"{r['indicator']} ({_short_number(r['value'])})"
        for r in items[:TOP_REASONS]
    ]
    return "; ".join(short), " · ".join(r.get("reason") or r["indicator"] for r in items)


def _row(alert: dict) -> dict:
    short, detail = _reasons(alert["reasons"])
    return {
        "alert_id": alert["alert_id"],
        "tx_id": alert["tx_id"],
        "scored_at": _utc(alert["scored_at"]).strftime("%Y-%m-%d %H:%M:%S"),
        "tier": int(alert["tier"]),
        "score": round(float(alert["score"]), 4),
        "account_id": alert["account_id"],
        "amount": float(alert["amount"]),
        "currency": alert["currency"],
        "channel": alert["channel"],
        "country": alert["country"],
        "reasons": short,
        "reasons_detail": detail,
        "scenario": alert["scenario"],
        "acknowledged": bool(alert["acknowledged"]),
    }


def _figure(per_minute: list[dict], lang: str) -> go.Figure:
    now = datetime.now(UTC)
    fig = go.Figure()
    for tier in TIERS:
        points = [p for p in per_minute if int(p["tier"]) == tier]
        fig.add_bar(
            x=[_utc(p["minute"]) for p in points],
            y=[int(p["alerts"]) for p in points],
            name=tier_name(lang, tier),
            marker_color=TIER_COLORS[tier],
        )
    fig.update_layout(
        barmode="stack",
        template="plotly_white",
        margin={"l": 50, "r": 10, "t": 10, "b": 40},
        legend={"orientation": "h", "y": 1.08, "x": 0},
        xaxis={"title": t(lang, "chart_x"), "range": [now - timedelta(minutes=60), now + timedelta(minutes=1)]},
        yaxis={"title": t(lang, "chart_y"), "rangemode": "tozero"},
        bargap=0.1,
        # Keep the analyst's zoom across refreshes.
        uirevision="alerts",
    )
    return fig


# ---------------------------------------------------------------- callbacks


def _register_refresh(app: dash.Dash, store: Callable, cockpit: CockpitSettings) -> None:
    kpi_outputs = [Output("kpi-tps", "children"), Output("kpi-open", "children")]
    kpi_outputs += [Output(f"kpi-t{tier}-{span}", "children") for tier in TIERS for span in ("5m", "60m")]

    @app.callback(
        *kpi_outputs,
        Output("alerts-chart", "figure"),
        Output("updated", "children"),
        Output("store-status", "children"),
        Output("store-status", "is_open"),
        Input("tick", "n_intervals"),
        Input("language", "value"),
    )
    def refresh_overview(_n: int | None, lang: str) -> tuple:
        try:
            k = store(queries.kpis)
            per_minute = store(queries.alerts_per_minute, 60)
        # A failing store must not blank the page: keep the last numbers and say why.
        except Exception as exc:  # noqa: BLE001 - the drivers raise many unrelated types
            return (*[dash.no_update] * (len(kpi_outputs) + 2), t(lang, "store_error", error=exc), True)
        tiers = [f"{k[span][tier]:,}" for tier in TIERS for span in ("alerts_5m", "alerts_60m")]
        updated = t(lang, "updated", time=datetime.now(UTC).strftime("%H:%M:%S"))
        return (f"{k['tx_per_s']:,.1f}", f"{k['open_alerts']:,}", *tiers, _figure(per_minute, lang), updated, "", False)

    @app.callback(
        Output("alerts-grid", "rowData"),
        Input("tick", "n_intervals"),
        Input("tier-filter", "value"),
    )
    def refresh_alerts(_n: int | None, tier: str | None) -> list[dict]:
        chosen = int(tier) if tier and tier != "all" else None
        try:
            alerts = store(queries.latest_alerts, cockpit.table_rows, chosen)
        except Exception:  # noqa: BLE001 - reported by refresh_overview; keep the rows on screen
            return dash.no_update
        return [_row(a) for a in alerts]


def _register_language(app: dash.Dash, can_acknowledge: bool) -> None:
    outputs = [
        Output({"label": ALL}, "children"),
        Output("tier-filter", "options"),
        Output("alerts-grid", "columnDefs"),
        Output("alerts-grid", "dashGridOptions"),
    ]
    if can_acknowledge:
        outputs += [Output("ack-actor", "placeholder"), Output("ack-comment", "placeholder"),
                    Output("ack-button", "children"), Output("dispo-fraud", "children"),
                    Output("dispo-fp", "children")]

    # Runs at start too: the switch remembers the analyst's choice, which may differ from settings.
    @app.callback(*outputs, Input("language", "value"))
    def translate(lang: str) -> tuple:
        lang = language(lang)
        keys = [item["id"]["label"].split("#")[0] for item in dash.callback_context.outputs_list[0]]
        result = ([t(lang, key) for key in keys], _tier_options(lang), _column_defs(lang),
                  _grid_options(lang, can_acknowledge))
        if can_acknowledge:
            result += (t(lang, "actor_placeholder"), t(lang, "comment_placeholder"), t(lang, "ack_button"),
                       t(lang, "fraud_button"), t(lang, "fp_button"))
        return result


def _register_acknowledge(app: dash.Dash, publish_action: Callable[[dict], Any]) -> None:
    @app.callback(
        Output("ack-feedback", "children"),
        Output("ack-feedback", "className"),
        Output("ack-actor", "invalid"),
        Output("alerts-grid", "deselectAll"),
        Output("ack-comment", "value"),
        Input("ack-button", "n_clicks"),
        Input("dispo-fraud", "n_clicks"),
        Input("dispo-fp", "n_clicks"),
        State("alerts-grid", "selectedRows"),
        State("ack-actor", "value"),
        State("ack-comment", "value"),
        State("language", "value"),
        prevent_initial_call=True,
    )
    def acknowledge(_ack: int, _fraud: int, _fp: int, selected: list[dict] | None, actor: str | None,
                    comment: str | None, lang: str) -> tuple:
        disposition = {"dispo-fraud": "confirmed_fraud", "dispo-fp": "false_positive"}.get(dash.ctx.triggered_id, "")
        actor = (actor or "").strip()
        if not actor:
            return t(lang, "ack_no_actor"), "small text-danger", True, dash.no_update, dash.no_update
        if not selected:
            return t(lang, "ack_no_selection"), "small text-danger", False, dash.no_update, dash.no_update
        # A disposition may follow an acknowledgement; only a second acknowledgement is redundant.
        pending = selected if disposition else [row for row in selected if not row.get("acknowledged")]
        at = datetime.now(UTC).isoformat(timespec="milliseconds")
        sent = 0
        try:
            for row in pending:
                publish_action({
                    "action_id": uuid.uuid4().hex,
                    "alert_id": row["alert_id"],
                    "action": "disposition" if disposition else "acknowledge",
                    "disposition": disposition,
                    "actor": actor,
                    "comment": (comment or "").strip(),
                    "at": at,
                    "account_id": row.get("account_id", ""),
                })
                sent += 1
        # The producer's errors reach the analyst as text; the rows sent so far stay sent.
        except Exception as exc:  # noqa: BLE001 - any producer failure means "not sent"
            message = t(lang, "ack_failed", error=exc)
            if sent:
                message = f"{t(lang, 'ack_done', n=sent)} {message}"
            return message, "small text-danger", False, dash.no_update, dash.no_update
        message = t(lang, "dispo_done" if disposition else "ack_done", n=sent)
        if len(pending) < len(selected):
            message += " " + t(lang, "ack_skipped", n=len(selected) - len(pending))
        return message, "small text-success", False, True, ""


# ---------------------------------------------------------------- HTTP API


def _parse_time(name: str) -> datetime | None:
    raw = request.args.get(name)
    if raw in (None, ""):
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{name}: not an ISO-8601 time: {raw!r}") from None
    return _utc(parsed)


def _parse_int(name: str, low: int, high: int) -> int | None:
    raw = request.args.get(name)
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}: not a whole number: {raw!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name}: must be between {low} and {high}, got {value}")
    return value


def _register_routes(app: dash.Dash, store: Callable) -> None:
    server = app.server
    server.json.sort_keys = False  # audit rows keep the column order of queries.AUDIT_COLUMNS

    @server.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    def read(fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """``store(...)``, with an unreachable store as 503 JSON rather than Flask's HTML 500."""
        try:
            return store(fn, *args, **kwargs)
        except ValueError:
            raise
        except Exception as exc:  # noqa: BLE001 - the drivers raise many unrelated types
            abort(make_response(jsonify({"error": f"store unavailable: {exc}"}), 503))

    @server.get("/api/kpis")
    def api_kpis():
        return jsonify(read(queries.kpis))

    @server.get("/api/audit/<kind>")
    def api_audit(kind: str):
        if kind not in queries.AUDIT_COLUMNS:
            expected = ", ".join(queries.AUDIT_COLUMNS)
            return jsonify({"error": f"kind: unknown {kind!r}; expected one of {expected}"}), 404
        try:
            since, until = _parse_time("since"), _parse_time("until")
            if since and until and since >= until:
                raise ValueError("until: must be later than since")
            tier = _parse_int("tier", 1, 3)
            limit = _parse_int("limit", 1, AUDIT_LIMIT) or AUDIT_LIMIT
            account = request.args.get("account") or None
            rows = read(queries.history, kind, since=since, until=until, tier=tier, account=account, limit=limit)
        except ValueError as exc:  # a bad parameter, or history() refusing a filter for this kind
            # history() words its refusals for the CLI ("--tier"); here the parameter is "tier".
            return jsonify({"error": str(exc).replace("--", "")}), 400
        return jsonify([{key: queries.json_safe(value) for key, value in row.items()} for row in rows])
