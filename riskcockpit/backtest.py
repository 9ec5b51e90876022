"""Backtest: score a file of historical transactions with the worker's own scoring core.

The file (CSV, Parquet or JSON lines) is mapped to the transaction contract by a small YAML
mapping, every row is validated by :class:`riskcockpit.ground.contract.Transaction` exactly as the worker
validates a Kafka record, and the valid ones are scored by :class:`riskcockpit.indicators.scoring.Scorer`
in event-time order with per-account state dicts kept in memory, staged and partitioned as
the worker is (:mod:`riskcockpit.backtest_stages`). There is no second
implementation of anything: what the backtest says is what the worker would have said.

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

Anything else, empty cells included, stops the backtest naming the rows. Each label is fed to
the scorer (``Scorer.feedback(record, label)``) as an analyst's disposition ``feedback_delay``
after its transaction's event time, never earlier: before a transaction at time *t* is scored,
every disposition due at or before *t* is delivered.

Row numbers (rejected file, errors): the 1-based data row for CSV (the header is not counted,
so file line = row + 1), the 1-based row for Parquet, the line number for JSON lines.

Output (``--out``, Parquet), one row per valid input transaction in event-time order: ``tx_id``,
``ts`` (UTC, ms), ``account_id``, ``partition`` (whose models scored it), ``amount``, ``risk_score`` (0–100), ``tier`` (0–3),
``model_score``, ``label_free_score`` (the score without the supervised model), ``fraud_probability``
(−1 before the model contributes), ``regime`` (``label-free``, ``blended`` or ``supervised``: how much
of the score the supervised model made), ``config_hash``, ``reasons`` (JSON text, as in ``risk.scores``), ``label`` (with
``--labels``) and ``ind_<name>`` per enabled indicator: ``record["features"][name]``, the
indicator's value (null: not applicable). Malformed rows go, with
their row number, reason and original values, to ``OUT.rejected.jsonl``. Metrics count a
repeated ``tx_id`` once, and its disposition is fed back once.
"""

from __future__ import annotations

import csv
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator

from riskcockpit.ground.durations import parse_duration_ms
from riskcockpit.ground.tiers import TIER_NAMES
from riskcockpit.indicators.scoring import Scorer, ScoringConfig
from riskcockpit.backtest_stages import ProcessFailed, partition_of, score_staged
from riskcockpit.ground.yamlfile import ConfigError, read_yaml, validate
from riskcockpit.ground.contract import Transaction, _reason

REQUIRED = ("tx_id", "ts", "account_id", "amount")
FIELDS = tuple(Transaction.model_fields)
NUMERIC = frozenset({"amount", "lat", "lon"})
TEXT = frozenset(FIELDS) - NUMERIC - {"ts", "attributes"}
NO_DEFAULT = frozenset({"tx_id", "ts"})  # a constant id or time would make every row the same transaction

FRAUD_LABELS = ("true", "1", "t", "yes", "y", "fraud", "fraudulent", "positive", "confirmed")
LEGIT_LABELS = ("false", "0", "f", "no", "n", "legit", "legitimate", "genuine", "negative")
_LABELS = {**{v: True for v in FRAUD_LABELS}, **{v: False for v in LEGIT_LABELS}}

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


# ------------------------------------------------------------------------------------------------ scoring


def load_config_file(path: str | Path) -> ScoringConfig:
    """A scoring config file in the format of ``config/indicators.yaml``."""
    path = Path(path)
    try:
        return validate(ScoringConfig, read_yaml(path), error=BacktestError)
    except ConfigError as exc:
        raise BacktestError(str(exc)) from None


@dataclass
class Result:
    loaded: Loaded
    out: Path
    rejected_file: Path | None
    scored: int
    duplicates: int
    fed_back: int
    seconds: float
    scoring_seconds: float
    metrics: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    table: Any = None  # pyarrow.Table: what was written to ``out``

    @property
    def rate(self) -> float:
        return self.scored / self.seconds if self.seconds else float("inf")


def feed_plan(loaded: Loaded, delay: int) -> tuple[list, list[int | None], int]:
    """What the staged scoring takes: (items: (transaction, label to feed back or None), due: when
    each label is delivered, distinct tx_ids). A repeated tx_id is fed back once, its first label;
    from a label file only the file's labels, when each became known."""
    fed = loaded.fed
    seen: set[str] = set()
    items, due = [], []
    for _, tx, label in loaded.items:
        feed = label if tx.tx_id not in seen and (fed is None or tx.tx_id in fed) else None
        known = fed.get(tx.tx_id) if fed else None
        items.append((tx, feed))
        # Never before the transaction: a label cannot teach the decision it has not seen yet.
        due.append(None if feed is None else tx.ts_ms + delay if known is None else max(tx.ts_ms, known))
        seen.add(tx.tx_id)
    return items, due, len(seen)


def run_backtest(loaded: Loaded, scorer: Scorer, out: str | Path, feedback_delay: str | int = "7d",
                 progress: Callable[[int, str], None] | None = None, partitions: int = 1,
                 processes: int = 1, write_rejects: bool = True, test_from: datetime | None = None,
                 k: int = 100) -> Result:
    """Score ``loaded`` in event-time order and write one Parquet row per valid transaction.

    The worker's stages over a topic of ``partitions`` partitions, spread over ``processes``
    (:mod:`riskcockpit.backtest_stages`). With labels, each disposition reaches the scorer once
    per ``tx_id`` and never before its transaction's time plus ``feedback_delay`` (from a label
    file, when it became known, if the file says so; never before its transaction). Rejected rows
    go to ``OUT.rejected.jsonl`` unless ``write_rejects`` is false (a second run of the same file).
    With ``test_from``, metrics count only the transactions from then on: the rest warms the
    state and the models, as the months before a go-live would.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    delay = parse_duration_ms(feedback_delay)
    if delay < 0:
        raise BacktestError(f"--feedback-delay: must not be negative (got {feedback_delay!r})")
    if partitions < 1 or processes < 1:
        raise BacktestError(f"--partitions and --processes must be at least 1 (got {partitions}, {processes})")
    labelled = any(label is not None for _, _, label in loaded.items)
    items, due, distinct = feed_plan(loaded, delay)
    started = time.perf_counter()
    owner = partition_of(items, partitions)
    try:
        shards = score_staged(scorer, items, due, owner, processes, progress)
    except ProcessFailed as exc:
        raise BacktestError(str(exc)) from None
    written = time.perf_counter()
    phases = {"stages": written - started}
    if progress is not None:
        progress(len(items), "writing")
    n = len(items)
    # Each process's table, back in event-time order.
    scored = pa.concat_tables([shard.table for shard in shards])
    order = np.argsort(np.concatenate([np.asarray(shard.positions, dtype=np.int64) for shard in shards]), kind="stable")
    scored = scored.take(pa.array(order))
    txs = [tx for tx, _ in items]
    arrays = {"tx_id": pa.array([tx.tx_id for tx in txs], pa.string()),
              "ts": pa.array([tx.ts for tx in txs], pa.timestamp("ms", tz="UTC")),
              "account_id": pa.array([tx.account_id for tx in txs], pa.string()),
              "partition": pa.array(owner, pa.int16()),
              "amount": pa.array([tx.amount for tx in txs], pa.float64()),
              "risk_score": scored["risk_score"], "tier": scored["tier"], "model_score": scored["model_score"],
              "label_free_score": scored["label_free_score"], "fraud_probability": scored["fraud_probability"],
              "regime": scored["regime"],
              "config_hash": pa.array([scorer.config_hash] * n, pa.string()), "reasons": scored["reasons"]}
    labels = [label for _, _, label in loaded.items]
    if labelled:
        arrays["label"] = pa.array(labels, pa.bool_())
    arrays |= {name: scored[name] for name in scored.column_names if name.startswith("ind_")}
    table = pa.table(arrays)
    table = table.replace_schema_metadata({"riskcockpit.config_hash": scorer.config_hash,
                                           "riskcockpit.source": str(loaded.path),
                                           "riskcockpit.partitions": str(partitions),
                                           "riskcockpit.feedback_delay_ms": str(delay) if labelled else ""})
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    seconds = time.perf_counter() - started
    phases["merge + write"] = time.perf_counter() - written
    rejected_file = write_rejected(loaded, out.with_suffix(".rejected.jsonl")) if write_rejects else None
    duplicates = n - distinct
    result = Result(loaded, out, rejected_file, n, duplicates, sum(s.fed_back for s in shards), seconds,
                    sum(s.core_seconds for s in shards), extra={"phases": phases}, table=table)
    if labelled:
        tested = range(n) if test_from is None else [i for i, tx in enumerate(txs) if tx.ts >= test_from]
        column = {name: table[name].to_pylist() for name in ("risk_score", "tier", "tx_id", "account_id")}
        pick = lambda name: [column[name][i] for i in tested]  # noqa: E731
        result.metrics = evaluate([labels[i] for i in tested], pick("risk_score"), pick("tier"), pick("tx_id"),
                                  [txs[i].ts_ms // 86_400_000 for i in tested], pick("account_id"), k)
        result.metrics["test_from"] = test_from
    return result


# ------------------------------------------------------------------------------------------------ metrics


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
        hits = sum(1 for t, y in zip(tiers, labels) if t >= tier and y)
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
    for y, score, day, entity in zip(labels, scores, days, entities):
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
            "up": sum(a > b for b, a in zip(before, after)), "down": sum(a < b for b, a in zip(before, after)),
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


@contextmanager
def progress_bar(total: int, description: str, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """A rich progress bar on stderr, as a callback taking the count done so far (and the stage)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[rate]:>8.0f} tx/s")]
    with Progress(*columns, console=Console(stderr=True), disable=not enabled) as bar:
        task = bar.add_task(description, total=total, rate=0.0)

        def update(done: int, stage: str | None = None) -> None:
            elapsed = bar.tasks[0].elapsed or 1e-9
            bar.update(task, completed=done, rate=done / elapsed,
                       **({"description": f"{description}: {stage}"} if stage else {}))

        yield update
