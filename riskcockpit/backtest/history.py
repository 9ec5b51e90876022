"""A file of historical transactions, read, mapped to the transaction contract and validated.

The file (CSV, Parquet or JSON lines) is mapped to the contract by a small YAML mapping, and
every row is validated by :class:`riskcockpit.ground.contract.Transaction` exactly as the worker
validates a Kafka record. The backtest, the backfill and the replay read their files here;
the bulk labels' reader (:mod:`riskcockpit.labels`) shares its formats, times and labels.

Mapping file (``--mapping``)::

    columns:            # schema field: source column
      tx_id: id
      ts: booked_at
      account_id: customer
      amount: value
      attributes.batch: batch   # a column into the free-form attributes object
    defaults:           # constants for fields the file lacks, or fills its empty cells
      currency: EUR
    timezone: Asia/Shanghai     # only for timestamps written without a zone

Timestamps may be ISO-8601 text with a zone, epoch milliseconds (numbers or digit strings)
or typed timestamps (Parquet / pandas). Timestamps without a zone are refused unless the
mapping says which ``timezone`` they were booked in. Empty cells (CSV ``""``, null, NaN)
count as absent. Integer ids in typed files become text (``4711`` → ``"4711"``; an integer
``mcc`` is zero-padded to four digits); nothing else is coerced, so a row the worker would
send to the DLQ is rejected here with the worker's reason.

Labels (``--labels COLUMN``): case-insensitive, surrounding blanks ignored.

- fraud: ``true``, ``1`` (also 1.0), ``t``, ``yes``, ``y``, ``fraud``, ``fraudulent``, ``positive``, ``confirmed``
- legitimate: ``false``, ``0`` (also 0.0), ``f``, ``no``, ``n``, ``legit``, ``legitimate``, ``genuine``, ``negative``

Anything else, empty cells included, stops the backtest naming the rows.

Row numbers (rejected file, errors): the 1-based data row for CSV (the header is not counted,
so file line = row + 1), the 1-based row for Parquet, the line number for JSON lines.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator

from riskcockpit.ground.contract import Transaction, _reason
from riskcockpit.ground.yamlfile import ConfigError, read_yaml, validate

REQUIRED = ("tx_id", "ts", "account_id", "amount")
FIELDS = tuple(Transaction.model_fields)
NUMERIC = frozenset({"amount", "lat", "lon"})
TEXT = frozenset(FIELDS) - NUMERIC - {"ts", "attributes"}
NO_DEFAULT = frozenset({"tx_id", "ts"})  # a constant id or time would make every row the same transaction

FRAUD_LABELS = ("true", "1", "t", "yes", "y", "fraud", "fraudulent", "positive", "confirmed")
LEGIT_LABELS = ("false", "0", "f", "no", "n", "legit", "legitimate", "genuine", "negative")
_LABELS = {**dict.fromkeys(FRAUD_LABELS, True), **dict.fromkeys(LEGIT_LABELS, False)}

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)


class BacktestError(Exception):
    """A problem with the input that stops the run (mapping, file, labels): the message says what and where."""


# ----------------------------------------------------------------------------------------------- mapping


def check_zone(value: str | None) -> str | None:
    """A mapping's ``timezone``: None or an IANA zone name."""
    if value is not None:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone such as Asia/Shanghai or Europe/Berlin") from None
    return value


class Mapping(BaseModel):
    """``MAP.yaml``: which source column feeds which field of the transaction contract."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # defaults first: the columns validator checks the required fields against both
    defaults: dict[str, Any] = Field(default_factory=dict, description="schema field: constant value")
    columns: dict[str, str] = Field(description="schema field: source column")
    timezone: str | None = Field(None, description="IANA zone of timestamps written without one")
    _source: str = PrivateAttr("the mapping")

    @staticmethod
    def _check_field(name: str) -> str:
        if name in FIELDS or (name.startswith("attributes.") and len(name) > len("attributes.")):
            return name
        raise ValueError(f"{name!r} is not a transaction field; known: {', '.join(FIELDS)}, attributes.<key>")

    @field_validator("columns")
    @classmethod
    def _columns(cls, columns: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        problems = []
        defaults = info.data.get("defaults", {})
        missing = [f for f in REQUIRED if f not in columns and f not in defaults]
        if missing:
            problems.append(f"no column for required field(s) {', '.join(missing)}")
        for name, column in columns.items():
            try:
                cls._check_field(name)
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
            if not isinstance(column, str) or not column:
                problems.append(f"{name}: the source column must be a non-empty name (got {column!r})")
        if problems:
            raise ValueError("; ".join(problems))
        return columns

    @field_validator("defaults")
    @classmethod
    def _defaults(cls, defaults: dict[str, Any]) -> dict[str, Any]:
        problems = []
        for name in defaults:
            try:
                cls._check_field(name)
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
            if name in NO_DEFAULT:
                problems.append(f"{name}: must come from a column, a constant would make every row alike")
        if problems:
            raise ValueError("; ".join(problems))
        return defaults

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return check_zone(value)

    @property
    def source(self) -> str:
        return self._source

    @property
    def zone(self) -> ZoneInfo | None:
        return ZoneInfo(self.timezone) if self.timezone else None


def load_mapping(path: str | Path) -> Mapping:
    path = Path(path)
    try:
        mapping = validate(Mapping, read_yaml(path), error=BacktestError)
    except ConfigError as exc:
        raise BacktestError(str(exc)) from None
    mapping._source = str(path)
    return mapping


# ------------------------------------------------------------------------------------------------ reading


def _format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise BacktestError(f"{path}: unknown file type {path.suffix!r}; expected .csv, .parquet, .jsonl or .ndjson")
    return fmt


def _read(path: Path) -> tuple[str, list[str], list[tuple[int, Any, str | None]], dict[str, Any]]:
    """(format, columns, [(row number, row dict or raw text, read problem)], column types)."""
    fmt = _format(path)
    if not path.is_file():
        raise BacktestError(f"{path}: file not found")
    try:
        return _read_format(path, fmt)
    except UnicodeDecodeError as exc:
        raise BacktestError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except csv.Error as exc:
        raise BacktestError(f"{path}: not readable as CSV: {exc}") from None


def _read_format(path: Path, fmt: str) -> tuple[str, list[str], list[tuple[int, Any, str | None]], dict[str, Any]]:
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or [])
            dupes = sorted({c for c in columns if columns.count(c) > 1})
            if dupes:
                raise BacktestError(f"{path}: header repeats column(s) {', '.join(dupes)}")
            rows = []
            for n, row in enumerate(reader, 1):
                problem = None
                if None in row or None in row.values():
                    width = len(columns) + len(row.get(None, ())) - sum(v is None for v in row.values())
                    problem = f"CSV row has {width} fields, the header has {len(columns)}"
                    row = {k if k is not None else "(extra)": v for k, v in row.items()}
                rows.append((n, row, problem))
        return fmt, columns, rows, {}
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise BacktestError(f"{path}: not a readable Parquet file: {exc}") from None
        types = {f.name: f.type for f in table.schema}
        return fmt, table.column_names, [(n, row, None) for n, row in enumerate(table.to_pylist(), 1)], types
    rows = []
    loads, decode_error = json.loads, json.JSONDecodeError
    with path.open(encoding="utf-8-sig") as f:
        for n, line in enumerate(f, 1):
            try:
                obj = loads(line)
            except decode_error as exc:
                if line.strip():
                    rows.append((n, line.rstrip("\n"), f"not JSON: {exc.msg} at column {exc.colno}"))
                continue
            if type(obj) is not dict:
                rows.append((n, obj, f"not a JSON object: got {type(obj).__name__}"))
                continue
            rows.append((n, obj, None))
    return fmt, _JsonColumns(rows), rows, {}


class _JsonColumns(list):
    """Columns of a JSON-lines file: a key counts as a column if any record has it (checked lazily)."""

    def __init__(self, rows: list):
        self.rows = rows
        seen: dict[str, None] = {}
        for _, obj, problem in rows[:1000]:
            if problem is None:
                seen.update(dict.fromkeys(obj))
        super().__init__(seen)

    def __contains__(self, column: object) -> bool:
        return list.__contains__(self, column) or any(
            problem is None and column in obj for _, obj, problem in self.rows)


# ------------------------------------------------------------------------------------------------ mapping rows


_GOT = re.compile(r" \(got .*?\)(?=; |$)")
_PLAIN, _TEXT, _MCC, _NUM, _TS, _ATTRS, _ATTR_KEY = range(7)


class _Mapper:
    """One source row → the transaction dict the contract validates (a hot loop: kept flat)."""

    def __init__(self, mapping: Mapping, path: Path, types: dict[str, Any]):
        self.mapping, self.path, self.zone = mapping, path, mapping.zone
        ts_column = mapping.columns.get("ts")
        ts_type = types.get(ts_column)
        if ts_type is not None and getattr(ts_type, "tz", "") is None and self.zone is None:
            raise BacktestError(self._naive(f"column {ts_column!r} holds timestamps without a zone ({ts_type})"))
        self.plan = [(name, column, self._kind(name)) for name, column in mapping.columns.items()]
        self.defaults = [(name, value) for name, value in mapping.defaults.items() if not name.startswith("attributes.")]
        self.attr_defaults = {name[len("attributes."):]: value for name, value in mapping.defaults.items()
                              if name.startswith("attributes.")}

    def _naive(self, what: str) -> str:
        return (f"{self.mapping.source}: ts: {what}; add the zone they were booked in to the mapping, "
                f"e.g. `timezone: Asia/Shanghai` (an IANA name), or give times with a zone / epoch ms")

    @staticmethod
    def _kind(name: str) -> int:
        if name == "ts":
            return _TS
        if name in NUMERIC:
            return _NUM
        if name == "mcc":
            return _MCC
        if name in TEXT:
            return _TEXT
        if name == "attributes":
            return _ATTRS
        return _ATTR_KEY if name.startswith("attributes.") else _PLAIN

    def ts(self, value: Any, row: int) -> Any:
        return epoch_ms(value, self.zone, lambda what: self._naive(f"row {row} holds {what} without a zone"))

    def __call__(self, row: dict, n: int) -> dict:
        out: dict[str, Any] = {}
        attrs: dict[str, Any] | None = None
        for name, column, kind in self.plan:
            value = row.get(column)
            # absent: null, empty text, NaN (the only value unequal to itself)
            if value is None or value == "" or value != value:
                continue
            if kind == _TEXT:
                if type(value) is int:
                    value = str(value)
            elif kind == _NUM:
                if type(value) is str:
                    try:
                        value = float(value)
                    except ValueError:
                        pass
                elif type(value) is Decimal:
                    value = float(value)
            elif kind == _TS:
                value = self.ts(value, n)
            elif kind == _MCC:
                if type(value) is int and value >= 0:
                    value = f"{value:04d}"
            elif kind == _ATTRS:
                if type(value) is str and value.lstrip().startswith("{"):
                    try:
                        value = json.loads(value)
                    except json.JSONDecodeError:
                        pass
                if type(value) is dict:
                    attrs = {**value, **(attrs or {})}
                    continue
            elif kind == _ATTR_KEY:
                if attrs is None:
                    attrs = {}
                attrs[name[len("attributes."):]] = value
                continue
            out[name] = value
        for name, value in self.defaults:
            if out.get(name) is None:
                out[name] = value
        if self.attr_defaults:
            attrs = {**self.attr_defaults, **(attrs or {})}
        if attrs is not None:
            out["attributes"] = attrs
        return out


def _ms(moment: datetime) -> int:
    return (moment - EPOCH) // ONE_MS


def epoch_ms(value: Any, zone: ZoneInfo | None, naive: Callable[[str], str]) -> Any:
    """A time cell → epoch milliseconds: typed timestamps, ISO-8601 text, epoch-ms digits. A time
    without a zone is read in ``zone``; without one, ``BacktestError(naive(shown value))``.
    Anything else comes back as it was, for the contract to reject with its own reason.

    >>> epoch_ms("2026-01-01T00:00:00Z", None, str), epoch_ms("1767225600000", None, str)
    (1767225600000, 1767225600000)
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            if zone is None:
                raise BacktestError(naive(str(value)))
            value = value.replace(tzinfo=zone)
        return _ms(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return value
        if moment.tzinfo is None:
            if zone is None:
                raise BacktestError(naive(repr(value)))
            moment = moment.replace(tzinfo=zone)
        return _ms(moment)
    return value


def parse_label(value: Any) -> bool:
    """Label cell → True (fraud) / False (legitimate); ``ValueError`` for anything else.

    >>> [parse_label(v) for v in (1, 0, True, " Fraud ", "legit", "YES", 1.0, "0")]
    [True, False, True, True, False, True, True, False]
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _LABELS:
        return _LABELS[value.strip().lower()]
    raise ValueError(f"{value!r} is not a label")


# ------------------------------------------------------------------------------------------------ loading


@dataclass
class Rejected:
    row: int
    reason: str
    values: Any


@dataclass
class Loaded:
    """Valid transactions in event-time order (stable) and the rejected rows in file order."""

    path: Path
    format: str
    rows_read: int
    items: list[tuple[int, Transaction, bool | None]]  # (row, transaction, label)
    rejected: list[Rejected]
    # From a label file (riskcockpit.labels.attach): tx_id → when its label became known (epoch
    # ms, None: not said). Only these labels are fed back; None: every label is.
    fed: dict[str, int | None] | None = None

    def reasons(self) -> Counter:
        """Counts by reason, without the offending values, so alike problems group together."""
        return Counter(_GOT.sub("", r.reason) for r in self.rejected)


def load_transactions(path: str | Path, mapping: Mapping, labels: str | None = None) -> Loaded:
    """Read, map, validate and order a file; raises :class:`BacktestError` for what stops a run."""
    path = Path(path)
    fmt, columns, rows, types = _read(path)
    absent = [(name, column) for name, column in mapping.columns.items() if column not in columns]
    if absent:
        shown = ", ".join(columns[:40]) + (" …" if len(columns) > 40 else "")
        raise BacktestError("\n".join(
            f"{mapping.source}: columns.{name}: column {column!r} is not in {path} (its columns: {shown or 'none'})"
            for name, column in absent))
    if labels is not None and labels not in columns:
        raise BacktestError(f"--labels: column {labels!r} is not in {path} (its columns: {', '.join(columns)})")
    mapper = _Mapper(mapping, path, types)
    items: list[tuple[int, Transaction, bool | None]] = []
    rejected: list[Rejected] = []
    bad_labels: list[str] = []
    for n, row, problem in rows:
        if problem is not None:
            rejected.append(Rejected(n, problem, row))
            continue
        label = None
        if labels is not None:
            try:
                label = parse_label(row.get(labels))
            except ValueError:
                bad_labels.append(f"row {n}: {row.get(labels)!r}")
                continue
        try:
            tx = Transaction.model_validate(mapper(row, n))
        except ValidationError as exc:
            rejected.append(Rejected(n, _reason(exc), row))
            continue
        items.append((n, tx, label))
    if bad_labels:
        raise BacktestError(
            f"--labels {labels}: {len(bad_labels)} row(s) hold no recognised label: {'; '.join(bad_labels[:5])}"
            f"{' …' if len(bad_labels) > 5 else ''}\n  fraud: {', '.join(FRAUD_LABELS)}"
            f"\n  legitimate: {', '.join(LEGIT_LABELS)} (case-insensitive)")
    items.sort(key=lambda item: item[1].ts_ms)  # stable: same-millisecond rows keep file order
    return Loaded(path, fmt, len(rows), items, rejected)


def write_rejected(loaded: Loaded, target: Path) -> Path | None:
    """Rejected rows as JSON lines (row, reason, original values); removes a stale file when none."""
    if not loaded.rejected:
        target.unlink(missing_ok=True)
        return None
    with target.open("w", encoding="utf-8") as f:
        for r in loaded.rejected:
            f.write(json.dumps({"row": r.row, "reason": r.reason, "values": r.values},
                               ensure_ascii=False, default=str) + "\n")
    return target


def rejection_summary(loaded: Loaded, first: int = 5) -> list[str]:
    if not loaded.rejected:
        return []
    lines = [f"{len(loaded.rejected)} of {loaded.rows_read} rows rejected (not scored):"]
    lines += [f"  {count:>7}  {reason}" for reason, count in loaded.reasons().most_common(10)]
    if len(loaded.reasons()) > 10:
        lines.append(f"  … and {len(loaded.reasons()) - 10} other reasons")
    lines.append("  first: " + "; ".join(f"row {r.row}: {r.reason}" for r in loaded.rejected[:first]))
    return lines
