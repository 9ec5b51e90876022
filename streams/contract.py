"""The contract of topic ``transactions``: one JSON object per record, keyed by account.

Required: ``tx_id``, ``ts`` (ISO-8601 with zone, or epoch milliseconds), ``account_id``,
``amount`` (a JSON number > 0, finite). Everything else is optional; unknown keys are ignored
so producers can add fields without breaking the worker. A record that fails any rule is not
scored: :func:`parse_transaction` raises :class:`InvalidRecord` whose ``reason`` names the
field, and the worker forwards the original bytes to ``transactions.dlq``.

>>> tx = parse_transaction(b'{"tx_id":"t1","ts":1767225600000,"account_id":"A1","amount":12.5}')
>>> tx.ts.isoformat(), tx.amount
('2026-01-01T00:00:00+00:00', 12.5)
>>> parse_transaction(b'{"tx_id":"t1","ts":1767225600000,"account_id":"A1","amount":-3}')
Traceback (most recent call last):
...
streams.contract.InvalidRecord: amount: Input should be greater than 0 (got -3)
"""

from __future__ import annotations

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

Text = Annotated[str, Field(min_length=1, max_length=128, strict=True)]


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
            moment = moment.astimezone(UTC)
        else:
            raise ValueError("expected ISO-8601 text with a zone or epoch milliseconds")
        if moment < EARLIEST:
            raise ValueError(f"{moment.isoformat()} is before {EARLIEST.year}")
        if moment > datetime.now(UTC) + MAX_FUTURE:
            raise ValueError(f"{moment.isoformat()} is more than a day in the future")
        return moment

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        return None if value is None else _canonical_ip(value)

    @cached_property
    def ts_ms(self) -> int:
        return int(self.ts.timestamp() * 1000)


def parse_transaction(raw: bytes | bytearray | None, max_bytes: int = MAX_RECORD_BYTES) -> Transaction:
    """Decode and validate one record, or raise :class:`InvalidRecord` naming what was wrong."""
    if raw is None:
        raise InvalidRecord("empty record (null value)")
    if len(raw) > max_bytes:
        raise InvalidRecord(f"oversized: {len(raw)} bytes > {max_bytes}")
    try:
        obj = json.loads(raw.decode("utf-8"))  # decode first: json.loads(bytes) would guess UTF-16/32
    except UnicodeDecodeError:
        raise InvalidRecord("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InvalidRecord(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(obj, dict):
        raise InvalidRecord(f"not a JSON object: got {type(obj).__name__}")
    try:
        return Transaction.model_validate(obj)
    except ValidationError as exc:
        raise InvalidRecord(_reason(exc)) from None


def _reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "record"
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        if err["type"] == "missing":
            parts.append(f"{field}: required field missing")
        elif isinstance(got, dict | list) or got is None:
            parts.append(f"{field}: {msg}")
        else:
            parts.append(f"{field}: {msg} (got {str(got)[:64]!r})" if isinstance(got, str) else f"{field}: {msg} (got {got!r})")
    return "; ".join(parts)
