"""The transactions contract: what is scored and what goes to the DLQ, with which reason."""

import json
import math

import pytest

from riskcockpit.ground.contract import InvalidRecord, parse_transaction

GOOD = {"tx_id": "t1", "ts": "2026-11-22T10:00:00+08:00", "account_id": "A1", "amount": 12.5}


def raw(**changes):
    record = {**GOOD, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not ...}).encode()


def test_only_required_fields_are_enough():
    tx = parse_transaction(raw())
    assert tx.ts.utcoffset().total_seconds() == 0 and tx.ts.hour == 2
    assert tx.channel is None and tx.attributes == {}


def test_epoch_milliseconds_and_optional_fields():
    tx = parse_transaction(raw(ts=1_767_225_600_000, channel="card", country="CN", ip="10.0.0.1",
                               status="declined", attributes={"k": 1}, extra_field="ignored"))
    assert tx.ts_ms == 1_767_225_600_000 and tx.status == "declined" and tx.attributes == {"k": 1}


@pytest.mark.parametrize(
    "payload, fragment",
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "not a JSON object"),
        (raw(tx_id=...), "tx_id: required field missing"),
        (raw(amount=0), "amount: Input should be greater than 0"),
        (raw(amount=-5), "amount: Input should be greater than 0"),
        (raw(amount="12.5"), "amount: Input should be a valid number"),
        (b'{"tx_id":"t","ts":1767225600000,"account_id":"A","amount":NaN}', "amount: Input should be a finite number"),
        (raw(ts=1_767_225_600), "seconds given?"),
        (raw(ts="2026-11-22T10:00:00"), "needs a zone"),
        (raw(ts="yesterday"), "not ISO-8601"),
        (raw(ts="2999-01-01T00:00:00Z"), "in the future"),
        (raw(ts=True), "ts:"),
        (raw(account_id=""), "account_id: String should have at least 1 character"),
        (raw(account_id=42), "account_id: Input should be a valid string"),
        (raw(country="China"), "country:"),
        (raw(direction="sideways"), "direction:"),
        (raw(lat=123.0), "lat:"),
        (raw(ip="999.1.1.1"), "ip:"),
        (raw(attributes="x"), "attributes:"),
    ],
)
def test_bad_records_name_what_is_wrong(payload, fragment):
    with pytest.raises(InvalidRecord) as info:
        parse_transaction(payload)
    assert fragment in info.value.reason


def test_oversized_record_is_refused_before_parsing():
    with pytest.raises(InvalidRecord, match="oversized: 70000 bytes > 65536"):
        parse_transaction(b" " * 70000)


def test_null_value():
    with pytest.raises(InvalidRecord, match="null"):
        parse_transaction(None)


def test_nan_never_reaches_scoring():
    assert math.isfinite(parse_transaction(raw(amount=1e-9)).amount)


VALID = b'{"tx_id":"t1","ts":1767225600000,"account_id":"A1","amount":12.5}'


@pytest.mark.parametrize(
    "payload, fragment",
    [
        (b"[" * 20_000 + b"]" * 20_000, "nested deeper than 8 levels"),
        (raw(attributes={"a": [[[[[[[[1]]]]]]]]}), "nested deeper than 8 levels"),
        (VALID[:-1] + b',"amount2":' + b"9" * 5000 + b"}", "a number of 5000 digits"),
        (VALID[:-1] + b',"x":1e999}', "beyond a float's range"),
        (raw(ts="0001-01-01T00:00:00+14:00"), "ts: does not fit a date once converted to UTC"),
        (raw(ts="9999-12-31T23:59:59-14:00"), "ts: does not fit a date"),
        (VALID[:-1] + b',"amount":13}', "amount: key given more than once"),
        (raw(tx_id="t\x001"), "tx_id: control character in an id"),
        (raw(account_id="A\u00851"), "account_id: control character in an id"),
        (raw(merchant_id="M\n"), "merchant_id: control character in an id"),
        (raw(amount=1e308), "amount: 1e+308 is above the maximum of 1e+12"),
        (raw(attributes={"note": "\ud800"}), "lone surrogate"),
    ],
)
def test_records_no_reader_would_read_alike_are_refused(payload, fragment):
    with pytest.raises(InvalidRecord) as info:
        parse_transaction(payload)
    assert fragment in info.value.reason


def test_the_maximum_amount_is_the_callers_and_text_in_other_scripts_is_fine():
    assert parse_transaction(raw(amount=5e12), max_amount=1e13).amount == 5e12
    tx = parse_transaction(raw(merchant_id="北京烤鸭店", attributes={"备注": "\u4e2d"}))
    assert tx.merchant_id == "北京烤鸭店"


def test_an_alert_of_one_account_is_never_the_alert_of_another():
    one, other = parse_transaction(raw(account_id="A1")), parse_transaction(raw(account_id="A2"))
    assert one.tx_id == other.tx_id and one.decision_id != other.decision_id


@pytest.mark.parametrize(("attributes", "reason"), [
    (b'{"": Infinity}', "attributes: inf is not a finite number"),
    (b'{"a": [1, {"b": NaN}]}', "attributes: nan is not a finite number"),
    (b'{"": -9223372036854775809}', "attributes: integer -9223372036854775809 does not fit 64 bits"),
    (b'{"": 18446744073709551616}', "attributes: integer 18446744073709551616 does not fit 64 bits"),
])
def test_attributes_that_would_not_travel_between_stages_are_refused(attributes, reason):
    record = b'{"tx_id":"t","ts":1767225600000,"account_id":"A","amount":1,"attributes":' + attributes + b"}"
    with pytest.raises(InvalidRecord) as exc:
        parse_transaction(record)
    assert exc.value.reason == reason


def test_attributes_at_the_edges_of_64_bits_are_kept():
    record = b'{"tx_id":"t","ts":1767225600000,"account_id":"A","amount":1,"attributes":{"lo":-9223372036854775808,"hi":18446744073709551615,"f":1e308}}'
    assert parse_transaction(record).attributes == {"lo": -(2**63), "hi": 2**64 - 1, "f": 1e308}
