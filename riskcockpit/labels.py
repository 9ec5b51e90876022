"""Bulk labels: a file of verdicts (chargebacks, case outcomes, a fraud team's confirmed list).

``riskcockpit labels FILE --mapping MAP.yaml`` publishes each verdict to ``risk.dispositions``,
keyed by account, so it reaches the worker that scored the transaction; there it teaches the
partition's models from the worker's own record of the decision (:mod:`riskcockpit.streams.decisions`).
The backtest's ``--label-file`` reads the same file with the same code (:func:`load_labels`)
and feeds each verdict back when it became known.

Mapping (``MAP.yaml``)::

    columns:
      tx_id: transaction_ref
      account_id: card_number   # the account the transaction was scored under
      label: outcome            # fraud / legitimate words as the backtest's --labels reads them
      known_at: reported_on     # optional: when the verdict became known
    timezone: Asia/Shanghai     # only for times written without a zone

A file with a bad row (an empty id, a word that is no label, an unreadable time) is refused
whole, naming the rows, and nothing is published: a bank's label file is fixed and run again,
never half-applied. A label the worker already learned for that decision teaches nothing again,
so running a file twice is harmless.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, PrivateAttr, field_validator

from riskcockpit.backtest.history import BacktestError, _read, check_zone, epoch_ms, parse_label
from riskcockpit.ground.yamlfile import ConfigError, read_yaml, validate

FIELDS = ("tx_id", "account_id", "label", "known_at")
REQUIRED = ("tx_id", "account_id", "label")
MAX_ID = 128  # as the transaction contract's ids


class LabelMapping(BaseModel):
    """``MAP.yaml`` of a label file: which column holds the id, the account, the verdict, the time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: dict[str, str]
    timezone: str | None = None
    _source: str = PrivateAttr("the mapping")

    @field_validator("columns")
    @classmethod
    def _columns(cls, columns: dict[str, str]) -> dict[str, str]:
        problems = [f"no column for required field {name}" for name in REQUIRED if name not in columns]
        problems += [f"{name}: not a label field; known: {', '.join(FIELDS)}" for name in columns if name not in FIELDS]
        problems += [f"{name}: the source column must be a non-empty name (got {column!r})"
                     for name, column in columns.items() if not isinstance(column, str) or not column]
        if problems:
            raise ValueError("; ".join(problems))
        return columns

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return check_zone(value)


def load_label_mapping(path: str | Path) -> LabelMapping:
    path = Path(path)
    try:
        mapping = validate(LabelMapping, read_yaml(path), error=BacktestError)
    except ConfigError as exc:
        raise BacktestError(str(exc)) from None
    mapping._source = str(path)
    return mapping


@dataclass(frozen=True)
class Label:
    row: int
    tx_id: str
    account_id: str
    is_fraud: bool
    known_at_ms: int | None  # None: the file does not say when


def _id(value: Any, name: str) -> str:
    if type(value) is int:  # typed files: 4711 → "4711", as the backtest reads ids
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} is empty")
    if len(value) > MAX_ID:
        raise ValueError(f"{name} is longer than {MAX_ID} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"{name} holds a control character")
    return value


def load_labels(path: str | Path, mapping: LabelMapping) -> list[Label]:
    """Every row of a label file, in file order; :class:`BacktestError` naming the bad rows
    (up to 10 of them) if any row is not a usable label."""
    path = Path(path)
    _, columns, rows, _ = _read(path)
    absent = [f"{mapping._source}: columns.{name}: column {column!r} is not in {path} (its columns: "
              f"{', '.join(list(columns)[:40]) or 'none'})" for name, column in mapping.columns.items()
              if column not in columns]
    if absent:
        raise BacktestError("\n".join(absent))
    zone = ZoneInfo(mapping.timezone) if mapping.timezone else None
    get = mapping.columns.get
    labels: list[Label] = []
    problems: list[str] = []
    for n, row, problem in rows:
        try:
            if problem is not None:
                raise ValueError(problem)
            known = None
            if get("known_at") and row.get(get("known_at")) not in (None, ""):
                known = epoch_ms(row[get("known_at")], zone, lambda shown: f"known_at {shown} has no zone; add "
                                 f"`timezone:` to {mapping._source} or give times with a zone")
                if type(known) is not int:
                    raise ValueError(f"known_at {known!r} is not a time")
            labels.append(Label(n, _id(row.get(get("tx_id")), "tx_id"), _id(row.get(get("account_id")), "account_id"),
                                parse_label(row.get(get("label"))), known))
        except (ValueError, BacktestError) as exc:
            problems.append(f"row {n}: {exc}")
    if problems:
        shown = "\n  ".join(problems[:10]) + (f"\n  … and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise BacktestError(f"{path}: {len(problems)} of {len(rows)} rows are not usable labels; nothing was "
                            f"published:\n  {shown}")
    return labels


def attach(loaded, labels: list[Label]):
    """``loaded`` (:class:`riskcockpit.backtest.history.Loaded`) with a label file's verdicts, for the
    backtest: the file's labels are fed back, when each became known if it says so; for the
    metrics, a transaction the file does not name is legitimate (a chargeback file lists the
    frauds). Returns (loaded, labels naming no transaction of the file). A later row of the
    same tx_id overrides an earlier one, as a correction would."""
    from dataclasses import replace

    by_id = {label.tx_id: label for label in labels}
    items = [(row, tx, by_id[tx.tx_id].is_fraud if tx.tx_id in by_id else False) for row, tx, _ in loaded.items]
    present = {tx.tx_id for _, tx, _ in loaded.items}
    fed = {tx_id: label.known_at_ms for tx_id, label in by_id.items() if tx_id in present}
    return replace(loaded, items=items, fed=fed), len(by_id) - len(fed)


def disposition(label: Label, source: str, at: str) -> dict[str, Any]:
    """What ``risk.dispositions`` carries for one label: which decision, the verdict, who and when."""
    return {"tx_id": label.tx_id, "account_id": label.account_id,
            "label": "confirmed_fraud" if label.is_fraud else "false_positive",
            "actor": source, "at": at, "source": "labels",
            "known_at": None if label.known_at_ms is None else
            datetime.fromtimestamp(label.known_at_ms / 1000, UTC).isoformat(timespec="milliseconds")}


def publish(labels: list[Label], bootstrap: str, file: Path, progress: Callable[[int], None] | None = None,
            producer_configs: dict[str, Any] | None = None) -> int:
    """Send every label to ``risk.dispositions`` and wait until the broker has them all."""
    from kafka import KafkaProducer

    from riskcockpit.ground import topics
    from riskcockpit.ground.kafka import client_configs

    source = f"labels:{getpass.getuser()}:{file.name}"  # who ran it, from the OS, never from the file
    at = datetime.now(UTC).isoformat(timespec="milliseconds")
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, **client_configs(),
                             **(producer_configs or {}))
    try:
        futures = []
        for n, label in enumerate(labels, 1):
            futures.append(producer.send(topics.DISPOSITIONS, key=label.account_id.encode(),
                                         value=json.dumps(disposition(label, source, at), ensure_ascii=False).encode()))
            if progress is not None and n % 1000 == 0:
                progress(n)
        producer.flush()
        for future in futures:
            future.get(timeout=60)  # raises the delivery error of any label not stored
        if progress is not None:
            progress(len(labels))
        return len(labels)
    finally:
        producer.close(timeout=10)
