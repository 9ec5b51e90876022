"""Audit history from the store, in either store mode, while the stack runs or not.

With a ClickHouse server every process queries it directly. The embedded store (chdb) admits
one process, the cockpit while the stack runs; then the same query runs inside the cockpit
behind ``/api/audit/<kind>``, so the answer is the same either way.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from datetime import datetime
from typing import Any

import requests

from riskcockpit.settings import Settings
from riskcockpit.store import queries
from riskcockpit.store.client import StoreLocked, StoreUnavailable, connect, describe


class Unreachable(RuntimeError):
    pass


def fetch(settings: Settings, kind: str, since: datetime | None, until: datetime | None, tier: int | None,
          account: str | None, limit: int) -> list[dict[str, Any]]:
    try:
        client = connect(settings.store)
    except StoreLocked:
        return _through_cockpit(settings, kind, since, until, tier, account, limit)
    except StoreUnavailable as exc:
        raise Unreachable(str(exc)) from exc
    from riskcockpit.store.migrate import migrate

    migrate(client, settings.store.database)
    return queries.history(client, settings.store.database, kind, since, until, tier, account, limit)


def _through_cockpit(settings, kind, since, until, tier, account, limit) -> list[dict[str, Any]]:
    params = {"since": since.isoformat() if since else None, "until": until.isoformat() if until else None,
              "tier": tier, "account": account, "limit": limit}
    url = f"{settings.cockpit.url}/api/audit/{kind}"
    try:
        response = requests.get(url, params={k: v for k, v in params.items() if v is not None}, timeout=60)
    except requests.RequestException as exc:
        raise Unreachable(
            f"{describe(settings.store)} is locked by another process, and the cockpit at {settings.cockpit.url} "
            f"does not answer ({exc.__class__.__name__}); is the stack running?"
        ) from exc
    if response.status_code != 200:
        raise Unreachable(f"cockpit answered {response.status_code} for {url}: {response.text[:300]}")
    return response.json()


# Kinds whose rows are decisions: score, tier, reasons and the config they were made with.
VERIFIABLE = ("alerts", "scores")


def stored_configs(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, str]]:
    """The ``configs`` audit rows as scoring configs by hash, and why any cannot be used (it no
    longer validates against this version's indicators, or its content hashes otherwise)."""
    from riskcockpit.indicators.scoring import ScoringConfig

    usable, unusable = {}, {}
    for row in rows:
        try:
            config = ScoringConfig.model_validate(json.loads(row["config"]))
        except ValueError as exc:  # not JSON, or pydantic's ValidationError
            unusable[row["config_hash"]] = f"stored config {row['config_hash']} does not load: {exc}".splitlines()[0]
            continue
        if config.hash != row["config_hash"]:
            unusable[row["config_hash"]] = f"stored config {row['config_hash']} hashes to {config.hash}"
        else:
            usable[config.hash] = config
    return usable, unusable


def verify(rows: list[dict[str, Any]], configs: dict[str, Any], unusable: dict[str, str] | None = None) -> Counter:
    """Recompute each decision from its stored reasons with the config it names (``configs``:
    ``ScoringConfig`` by hash), as an auditor would: sets ``recomputed`` on each row to ``ok``,
    ``differs: …`` or why its config is not at hand, and returns how many of each."""
    from riskcockpit.indicators.scoring import recompute

    tally: Counter = Counter()
    for row in rows:
        config = configs.get(row["config_hash"])
        if config is None:
            row["recomputed"] = (unusable or {}).get(row["config_hash"]) or f"config {row['config_hash']} not at hand"
            tally["no config"] += 1
            continue
        try:
            score, tier = recompute(row, config)
        except ValueError as exc:  # a reason its config does not know: not what that config produced
            row["recomputed"] = f"differs: {exc}"
            tally["differs"] += 1
            continue
        # The store keeps the score as Float32: two decimals, as scored, survive it.
        same = (score, tier) == (round(float(row["score"]), 2), int(row["tier"]))
        row["recomputed"] = "ok" if same else f"differs: score {score}, tier {tier}"
        tally["ok" if same else "differs"] += 1
    return tally


def render(rows: list[dict[str, Any]], kind: str, fmt: str, extra: tuple[str, ...] = ()) -> str:
    plain = [{k: queries.json_safe(v) for k, v in row.items()} for row in rows]
    if fmt == "json":
        return json.dumps(plain, ensure_ascii=False, indent=None)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[*queries.AUDIT_COLUMNS[kind], *extra], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(plain)
    return out.getvalue()
