"""The contract of topic ``transactions``: one JSON object per record, keyed by account.

Required: ``tx_id``, ``ts`` (ISO-8601 with zone, or epoch milliseconds), ``account_id``,
``amount`` (a JSON number > 0, finite, at most the worker's ``max_amount``). Everything else is
optional; unknown keys are ignored so producers can add fields without breaking the worker.
A record that fails any rule is not scored: :func:`parse_transaction` raises
:class:`InvalidRecord` whose ``reason`` names the field, and the worker forwards the original
bytes to ``transactions.dlq``.

Refused as well, because a reader downstream would read them differently or not at all: a key
given twice (which one did the producer mean?), values nested deeper than ``MAX_DEPTH``,
integers longer than ``MAX_INT_DIGITS`` digits, numbers beyond a float's range (and, among the
attributes, non-finite numbers and integers beyond 64 bits), text with
control characters or lone surrogates in an id, timestamps that do not fit a date.

A decision is identified by its account and ``tx_id`` together (:func:`decision_id`): a
producer must keep ``tx_id`` unique within an account; two accounts may reuse one.

>>> tx = parse_transaction(b'{"tx_id":"t1","ts":1767225600000,"account_id":"A1","amount":12.5}')
>>> tx.ts.isoformat(), tx.amount
('2026-01-01T00:00:00+00:00', 12.5)
>>> parse_transaction(b'{"tx_id":"t1","ts":1767225600000,"account_id":"A1","amount":-3}')
Traceback (most recent call last):
...
riskcockpit.ground.contract.InvalidRecord: amount: Input should be greater than 0 (got -3)
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime, timedelta
from functools import cached_property, lru_cache
from ipaddress import ip_address
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# Earliest plausible booking time; anything older is a unit mistake (seconds sent as ms).
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
# Clocks of producers drift; a day ahead is tolerated, more is a bad timestamp.
MAX_FUTURE = timedelta(days=1)
MAX_RECORD_BYTES = 65536
# A unit guard, not a limit of business: an amount sent in the wrong unit (or garbage) would
# otherwise enter every window sum and mean of the account. Configurable as worker.max_amount.
MAX_AMOUNT = 1e12
# Objects and arrays inside one another; a transaction needs two (the record, its attributes).
MAX_DEPTH = 8
# An epoch in milliseconds has 13; Python refuses to parse integers past 4,300 digits anyway.
MAX_INT_DIGITS = 20
# What a 64-bit integer holds, signed below and unsigned above, as orjson writes them.
INT_MIN, INT_MAX = -(2**63), 2**64 - 1

# Control characters (C0, DEL, C1) and line separators in an id break logs, CSV exports and
# the cockpit's grid, and make two ids that look the same differ.
ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]+$"
Text = Annotated[str, Field(min_length=1, max_length=128, strict=True, pattern=ID_PATTERN)]


class InvalidRecord(ValueError):
    """A record that breaks the contract; ``reason`` is what goes to the DLQ."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@lru_cache(maxsize=65_536)
def _canonical_ip(value: str) -> str:
    """An IP address in its canonical text; a device's or a customer's address recurs, and
    ``ipaddress`` parses in Python (a third of validating a record that has one)."""
    return str(ip_address(value))


class Transaction(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    tx_id: Text
    ts: datetime
    account_id: Text
    amount: Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None
    direction: Literal["debit", "credit"] | None = None
    channel: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")] | None = None
    counterparty_id: Text | None = None
    merchant_id: Text | None = None
    mcc: Annotated[str, Field(pattern=r"^\d{4}$")] | None = None
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] | None = None
    device_id: Text | None = None
    ip: str | None = None
    lat: Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)] | None = None
    lon: Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)] | None = None
    status: Literal["approved", "declined"] | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("ts", mode="before")
    @classmethod
    def _timestamp(cls, value: Any) -> datetime:
        if isinstance(value, bool):
            raise ValueError("expected ISO-8601 text with a zone or epoch milliseconds")
        if isinstance(value, int | float):
            if not math.isfinite(value):
                raise ValueError("not a finite number")
            try:
                moment = datetime.fromtimestamp(value / 1000.0, tz=UTC)
            except (OverflowError, OSError, ValueError):
                raise ValueError("epoch milliseconds out of range") from None
            if moment < EARLIEST and value > 0:
                raise ValueError(f"{moment.date()} is before {EARLIEST.year}: epoch milliseconds expected, seconds given?")
        elif isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                raise ValueError("not ISO-8601 (e.g. 2026-11-22T10:00:00+08:00)") from None
            if moment.tzinfo is None:
                raise ValueError("ISO-8601 timestamp needs a zone (Z or +hh:mm)")
            try:
                moment = moment.astimezone(UTC)
            except OverflowError:
                raise ValueError("does not fit a date once converted to UTC") from None
        else:
            raise ValueError("expected ISO-8601 text with a zone or epoch milliseconds")
        if moment < EARLIEST:
            raise ValueError(f"{moment.isoformat()} is before {EARLIEST.year}")
        if moment > datetime.now(UTC) + MAX_FUTURE:
            raise ValueError(f"{moment.isoformat()} is more than a day in the future")
        return moment

    @field_validator("attributes")
    @classmethod
    def _attributes(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Attributes travel on between stages as JSON, which has no NaN or infinity, and as
        # orjson, which has no integer beyond 64 bits: either would not come back as it went.
        stack: list[Any] = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, float) and not math.isfinite(item):
                raise ValueError(f"{item} is not a finite number")
            elif isinstance(item, int) and not isinstance(item, bool) and not INT_MIN <= item <= INT_MAX:
                raise ValueError(f"integer {item} does not fit 64 bits")
        return value

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        return None if value is None else _canonical_ip(value)

    @cached_property
    def ts_ms(self) -> int:
        return int(self.ts.timestamp() * 1000)

    @cached_property
    def decision_id(self) -> str:
        return decision_id(self.account_id, self.tx_id)


def decision_id(account_id: str, tx_id: str) -> str:
    """The id of the decision on (and the alert of) ``tx_id`` of ``account_id``: unique across
    accounts, which may reuse each other's ``tx_id``. The separator is a control character, which
    no id may contain, so no two pairs give the same text.

    >>> decision_id("A1", "t1") == decision_id("A1", "t1") != decision_id("A2", "t1")
    True
    >>> len(decision_id("A1", "t1"))
    20
    """
    return hashlib.blake2b(f"{account_id}\x1f{tx_id}".encode(), digest_size=10).hexdigest()


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise InvalidRecord(f"{twice}: key given more than once")
    return obj


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise InvalidRecord(f"a number of {len(text)} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise InvalidRecord(f"number {text[:32]!r} is beyond a float's range")
    return value


_decoder = json.JSONDecoder(object_pairs_hook=_object, parse_int=_int, parse_float=_float)


def _check_shape(obj: Any) -> None:
    """Nesting no deeper than MAX_DEPTH and no lone surrogate (from a ``\\ud800`` escape) in any text:
    such text cannot be encoded again, so a key or a log line made of it would fail later."""
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise InvalidRecord(f"nested deeper than {MAX_DEPTH} levels")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    stack.append((key, depth))
                stack.append((item, depth + 1))
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidRecord(f"text {value[:32]!r} holds a lone surrogate (an unpaired \\u escape)") from None


def parse_transaction(raw: bytes | bytearray | None, max_bytes: int = MAX_RECORD_BYTES,
                      max_amount: float = MAX_AMOUNT) -> Transaction:
    """Decode and validate one record, or raise :class:`InvalidRecord` naming what was wrong."""
    if raw is None:
        raise InvalidRecord("empty record (null value)")
    if len(raw) > max_bytes:
        raise InvalidRecord(f"oversized: {len(raw)} bytes > {max_bytes}")
    try:
        obj = _decoder.decode(raw.decode("utf-8"))  # decode first: json.loads(bytes) would guess UTF-16/32
    except UnicodeDecodeError:
        raise InvalidRecord("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InvalidRecord(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise InvalidRecord(f"nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(obj, dict):
        raise InvalidRecord(f"not a JSON object: got {type(obj).__name__}")
    # A flat record has one or two brackets and no escapes: nothing to walk.
    if raw.count(b"{") + raw.count(b"[") > 2 or b"\\u" in raw:
        _check_shape(obj)
    try:
        tx = Transaction.model_validate(obj)
    except ValidationError as exc:
        raise InvalidRecord(_reason(exc)) from None
    if tx.amount > max_amount:
        raise InvalidRecord(f"amount: {tx.amount:g} is above the maximum of {max_amount:g} (worker.max_amount)")
    return tx


def _reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "record"
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        if err["type"] == "missing":
            parts.append(f"{field}: required field missing")
        elif err["type"] == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == ID_PATTERN:
            parts.append(f"{field}: control character in an id (got {str(got)[:64]!r})")
        elif isinstance(got, dict | list) or got is None:
            parts.append(f"{field}: {msg}")
        else:
            parts.append(f"{field}: {msg} (got {str(got)[:64]!r})" if isinstance(got, str) else f"{field}: {msg} (got {got!r})")
    return "; ".join(parts)
