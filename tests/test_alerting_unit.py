"""Alert notifications, unit level: routing, grouping, inhibition, silences, escalation, signing,
templates, backoff, rate limiting, offsets, configuration errors. No Kafka, no sleeping: the
notifier is driven with explicit times."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from riskcockpit.alerting import config as alerting_config
from riskcockpit.alerting.backoff import backoff_delay, next_delay, parse_retry_after
from riskcockpit.alerting.config import RetryPolicy, parse
from riskcockpit.alerting.labels import alert_labels
from riskcockpit.alerting.matchers import Matcher
from riskcockpit.alerting.notifier import Notifier
from riskcockpit.alerting.offsets import OffsetTracker
from riskcockpit.alerting.ratelimit import TokenBucket
from riskcockpit.alerting.receivers import build
from riskcockpit.alerting.routing import Router
from riskcockpit.alerting.signing import dingtalk_sign, feishu_sign, notification_id, signature, signed_headers, verify
from riskcockpit.alerting.silences import SilenceSet, expired, new_silence
from riskcockpit.alerting.templates import Message, fit
from riskcockpit.ground.yamlfile import ConfigError

T0 = 1_800_000_000.0  # a fixed "now" for the notifier


def alert(aid, account="A1", tier=1, indicators=("large_amount",), at=T0, **more):
    record = {"tx_id": aid, "account_id": account, "tier": tier, "score": 30 + 20 * tier, "amount": 1234.5,
              "currency": "EUR", "channel": "transfer", "country": "NL", "scenario": "",
              "ts": datetime.fromtimestamp(at, UTC).isoformat(),
              "scored_at": datetime.fromtimestamp(at, UTC).isoformat(),
              "reasons": [{"indicator": name, "value": 1, "contribution": 40 - i, "reason": f"{name} fired"}
                          for i, name in enumerate(indicators)]}
    record.update(more)
    return record


def make_config(body: str) -> alerting_config.AlertingConfig:
    return parse(body, "test.yaml")


RECEIVERS = """
receivers:
  - {name: default, type: webhook, url: "http://127.0.0.1:1/d", secret_env: S}
  - {name: critical, type: webhook, url: "http://127.0.0.1:1/c", secret_env: S}
  - {name: aml, type: webhook, url: "http://127.0.0.1:1/a", secret_env: S}
  - {name: cards, type: webhook, url: "http://127.0.0.1:1/k", secret_env: S}
  - {name: oncall, type: webhook, url: "http://127.0.0.1:1/o", secret_env: S}
"""


# ---------------------------------------------------------------- matchers and labels

@pytest.mark.parametrize("text,labels,expected", [
    ('tier="3"', {"tier": "3"}, True),
    ("tier=3", {"tier": "3"}, True),
    ('tier!="3"', {"tier": "2"}, True),
    ('channel=~"card|atm"', {"channel": "atm"}, True),
    ('channel=~"card"', {"channel": "cards"}, False),  # anchored, as in Alertmanager
    ('country!~"NL|DE"', {"country": "FR"}, True),
    ('country!~"NL|DE"', {"country": "NL"}, False),
    ('segment=""', {}, True),  # an absent label is the empty string
    ('indicator="structuring"', {"indicators": "large_amount,structuring"}, True),
    ('indicator=~"new_.*"', {"indicators": "large_amount,new_device"}, True),
    ('indicator!="structuring"', {"indicators": "large_amount,structuring"}, False),
    ('indicator!~"new_.*"', {"indicators": "large_amount"}, True),
    (r'comment="say \"hi\""', {"comment": 'say "hi"'}, True),
])
def test_matchers(text, labels, expected):
    assert Matcher.parse(text).matches(labels) is expected


@pytest.mark.parametrize("text", ["tier", "=3", 'tier=~"("', 'tier="3', "1tier=3"])
def test_bad_matchers_say_what_is_wrong(text):
    with pytest.raises(ValueError):
        Matcher.parse(text)


def test_labels_of_an_alert():
    labels = alert_labels(alert("t1", indicators=("structuring", "large_amount"), tier=2,
                                attributes={"segment": "retail", "branch": 12, "nested": {"x": 1}}))
    assert labels["tier"] == "2" and labels["account_id"] == "A1" and labels["alert_id"] == "t1"
    assert labels["indicators"] == "large_amount,structuring"
    assert labels["segment"] == "retail" and labels["branch"] == "12" and "nested" not in labels


# ---------------------------------------------------------------- routing

ROUTES = """
route:
  receivers: [default]
  group_by: [account_id]
  group_wait: 10s
  routes:
    - name: critical
      matchers: ['tier="3"']
      receivers: [critical]
      group_wait: 0s
      continue: true
    - name: aml
      matchers: ['indicator=~"structuring|pass_through"']
      receivers: [aml]
      routes:
        - matchers: ['country!~"NL|BE"']
          receivers: [aml, oncall]
    - name: cards
      matchers: ['channel=~"card|atm"']
      receiver: cards
""" + RECEIVERS


def route_labels(**values):
    base = {"tier": "1", "channel": "transfer", "country": "NL", "indicators": ""}
    base.update(values)
    return base


def test_routes_first_match_wins_unless_continue():
    router = Router(make_config(ROUTES))
    assert router.receivers(route_labels()) == ["default"]
    # critical continues, so the alert also reaches the next matching sibling (aml) — but not cards
    assert router.receivers(route_labels(tier="3", indicators="structuring", channel="card")) == ["critical", "aml"]
    # without continue, the first matching sibling stops the search
    assert router.receivers(route_labels(indicators="structuring", channel="card")) == ["aml"]
    assert router.receivers(route_labels(channel="atm")) == ["cards"]


def test_regex_child_route_and_inherited_settings():
    router = Router(make_config(ROUTES))
    matched = router.match(route_labels(indicators="pass_through", country="RU"))
    assert [r.receivers for r in matched] == [["aml", "oncall"]]
    assert matched[0].group_by == ["account_id"] and matched[0].group_wait == 10
    critical = router.match(route_labels(tier="3"))[0]
    assert critical.group_wait == 0 and critical.name == "critical"
    assert critical.group_key({"account_id": "A9"}) == critical.group_key({"account_id": "A9", "tier": "2"})


# ---------------------------------------------------------------- configuration errors

def test_config_errors_name_file_and_line(tmp_path):
    path = tmp_path / "alerting.yaml"
    path.write_text("""route:
  receivers: [default]
  group_wait: soon
  routes:
    - matchers: ['tier=~"("']
      receivers: [default]
receivers:
  - name: default
    type: webhook
    url: http://127.0.0.1/x
    secret_env: S
    retry:
      max_attempts: 0
  - name: robot
    type: pager
    url: http://x
sla:
  tier9: 5m
""")
    with pytest.raises(ConfigError) as caught:
        alerting_config.load(path)
    lines = str(caught.value).splitlines()
    assert lines[0].startswith(f"{path}:3: route.group_wait: 'soon' is not a duration")
    assert lines[1].startswith(f"{path}:5: route.routes.0.matchers.0:") and "regular expression" in lines[1]
    assert lines[2].startswith(f"{path}:13: receivers.0.retry.max_attempts:")
    assert lines[3].startswith(f"{path}:15: receivers.1.type:")
    assert lines[4].startswith(f"{path}:18: sla.tier9:")


def test_config_cross_reference_errors_have_lines_too():
    body = """route:
  receivers: [default]
  routes:
    - matchers: ['tier="3"']
      receivers: [default, nobody]
      escalation: [ghost]
receivers:
  - {name: default, type: webhook, url: "http://h/x", secret_env: S}
  - {name: default, type: slack, url: "http://h/y"}
"""
    with pytest.raises(ConfigError) as caught:
        parse(body, "f.yaml")
    text = str(caught.value)
    assert "f.yaml:5: route.routes.0.receivers.1: unknown receiver 'nobody'" in text
    assert "f.yaml:6: route.routes.0.escalation.0: unknown receiver 'ghost'" in text
    assert "f.yaml:9: receivers.1.name: receiver 'default' is defined twice" in text


def test_yaml_syntax_and_duplicate_keys():
    with pytest.raises(ConfigError, match=r"^s.yaml:3: invalid YAML"):
        parse("route:\n  receivers: [a\nreceivers: x\n", "s.yaml")
    body = "route:\n  receivers: [a]\n  group_wait: 1s\n  group_wait: 2s\nreceivers:\n" \
           "  - {name: a, type: webhook, url: 'http://h', secret_env: S}\n"
    with pytest.raises(ConfigError, match=r"s.yaml:4: route.group_wait: 'group_wait' appears twice"):
        parse(body, "s.yaml")


def test_receiver_rules_and_secrets_only_by_name():
    with pytest.raises(ConfigError, match="webhook receiver needs secret_env"):
        parse("route: {receivers: [a]}\nreceivers:\n  - {name: a, type: webhook, url: 'http://h'}\n", "r.yaml")
    with pytest.raises(ConfigError, match="exactly one of url and url_env"):
        parse("route: {receivers: [a]}\nreceivers:\n  - {name: a, type: slack}\n", "r.yaml")
    config = parse("route: {receivers: [a]}\nreceivers:\n  - {name: a, type: wecom, url: 'https://qyapi.weixin.qq.com/"
                   "cgi-bin/webhook/send?key=abc'}\n", "r.yaml")
    assert any("url_env" in w for w in alerting_config.warnings(config, environ={}))


def test_the_shipped_configuration_is_valid():
    config = alerting_config.load(alerting_config.default_path(alerting_config.Path(__file__).parents[1] / "config"))
    router = Router(config)
    labels = alert_labels(alert("x", tier=3, indicators=("structuring",)))
    assert router.receivers(labels) == ["case-management", "fraud-oncall-dingtalk", "aml-feishu"]
    assert config.sla_for(3) == 900 and config.sla_for(1) is None


# ---------------------------------------------------------------- grouping, inhibition, silences, escalation

GROUPING = """
route:
  receivers: [default]
  group_by: [account_id]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
  routes:
    - matchers: ['tier="3"']
      group_wait: 0s
      escalation: [oncall]
inhibit_rules:
  - source_matchers: ['tier="3"']
    target_matchers: ['tier=~"1|2"']
    equal: [account_id]
sla: {tier3: 15m}
""" + RECEIVERS


@pytest.fixture
def notifier():
    return Notifier(make_config(GROUPING))


def test_a_burst_within_group_wait_is_one_notification(notifier):
    for i in range(100):
        notifier.add_alert(alert(f"b{i}"), T0 + i * 0.1, token=("p0", i))
    assert notifier.flush(T0 + 29) == []
    [job] = notifier.flush(T0 + 30)
    assert job["kind"] == "firing" and job["receiver"] == "default" and len(job["alert_ids"]) == 100
    assert job["group_labels"] == {"account_id": "A1"} and len(job["alerts"]) == 100
    assert sorted(notifier.take_released()) == [("p0", i) for i in range(100)]
    # a later alert waits for group_interval, and lists only what is new
    notifier.add_alert(alert("b100"), T0 + 40)
    assert notifier.flush(T0 + 60) == []
    [later] = notifier.flush(T0 + 30 + 300)
    assert later["alert_ids"] == ["b100"] and later["open_alerts"] == 101


def test_open_alerts_repeat_and_acknowledged_ones_stop(notifier):
    notifier.add_alert(alert("r1"), T0)
    notifier.add_alert(alert("r2"), T0)
    assert len(notifier.flush(T0 + 30)) == 1
    notifier.apply_action({"alert_id": "r1", "action": "acknowledge"}, T0 + 60)
    assert notifier.flush(T0 + 30 + 4 * 3600 - 1) == []
    [repeat] = notifier.flush(T0 + 30 + 4 * 3600)
    assert repeat["kind"] == "repeat" and repeat["alert_ids"] == ["r2"]
    notifier.apply_action({"alert_id": "r2", "action": "disposition"}, T0 + 5 * 3600)
    assert notifier.flush(T0 + 30 + 8 * 3600) == [] and not notifier.grouper.groups
    # a replayed alert that was already closed stays closed
    notifier.add_alert(alert("r2"), T0 + 9 * 3600)
    assert notifier.flush(T0 + 10 * 3600) == []


def test_tier3_inhibits_lesser_alerts_of_the_same_account_while_open(notifier):
    notifier.add_alert(alert("crit", tier=3), T0)
    [first] = notifier.flush(T0)
    assert first["alert_ids"] == ["crit"] and first["tier"] == 3
    notifier.add_alert(alert("low1", tier=1), T0 + 1)
    notifier.add_alert(alert("low2", tier=2), T0 + 2)
    notifier.add_alert(alert("other", tier=1, account="A2"), T0 + 2)
    jobs = notifier.flush(T0 + 40)
    assert [j["alert_ids"] for j in jobs] == [["other"]]
    notifier.apply_action({"alert_id": "crit", "action": "acknowledge"}, T0 + 50)
    notifier.add_alert(alert("low3", tier=1), T0 + 60)
    [after] = notifier.flush(T0 + 40 + 300)
    assert after["alert_ids"] == ["low3"]  # muted alerts are not announced later


def test_silences_mute_while_active_and_expire(notifier):
    now = datetime.fromtimestamp(T0, UTC)
    silence = new_silence(['account_id="A1"'], "alice", "known test account", now + timedelta(minutes=1), now=now)
    notifier.apply_silence(silence.to_event())
    notifier.add_alert(alert("s1"), T0)
    notifier.add_alert(alert("s2", account="A2"), T0)
    assert [j["alert_ids"] for j in notifier.flush(T0 + 30)] == [["s2"]]
    notifier.add_alert(alert("s3"), T0 + 61)
    [job] = notifier.flush(T0 + 61 + 30)
    assert job["alert_ids"] == ["s3"]
    # expiring early takes effect at once
    second = new_silence(['account_id="A3"'], "bob", "noisy", now + timedelta(hours=1), now=now)
    notifier.apply_silence(second.to_event())
    notifier.apply_silence(expired(second, "carol", now + timedelta(seconds=100)).to_event())
    notifier.add_alert(alert("s4", account="A3"), T0 + 101)
    assert [j["alert_ids"] for j in notifier.flush(T0 + 101 + 30)] == [["s4"]]


def test_silence_rules_and_folding():
    now = datetime.now(UTC)
    with pytest.raises(ValueError, match="comment"):
        new_silence(['account_id="A1"'], "alice", " ", now + timedelta(hours=1))
    with pytest.raises(ValueError, match="name"):
        new_silence(['account_id=~".*"'], "alice", "all of it", now + timedelta(hours=1))
    with pytest.raises(ValueError, match="over"):
        new_silence(['account_id="A1"'], "alice", "late", now - timedelta(hours=1), starts_at=now - timedelta(hours=2))
    s = new_silence(['account_id="A1"'], "alice", "why", now + timedelta(hours=1))
    ended = expired(s, "bob", now + timedelta(minutes=5), "done")
    folded = SilenceSet()
    folded.apply(ended.to_event())
    folded.apply(s.to_event())  # an older version arriving late does not undo the expiry
    current = folded.find(s.silence_id[:6])
    assert current.version == 2 and current.changed_by == "bob" and current.created_by == "alice"
    assert current.state(now + timedelta(minutes=6)) == "expired"


def test_escalation_once_per_sla_period_until_acknowledged(notifier):
    notifier.add_alert(alert("e1", tier=3), T0, token=("p", 7))
    [first] = notifier.flush(T0)
    assert first["receiver"] == "default"
    assert notifier.take_released() == []  # held: it may still need escalating after a restart
    assert notifier.flush(T0 + 899) == []
    [esc] = notifier.flush(T0 + 900)
    assert esc["kind"] == "escalation" and esc["receiver"] == "oncall" and esc["periods"] == {"e1": 1}
    assert esc["sla_seconds"] == 900 and esc["alerts"][0]["escalation_period"] == 1
    assert notifier.flush(T0 + 1700) == []
    [again] = notifier.flush(T0 + 1800)
    assert again["periods"] == {"e1": 2} and again["notification_id"] != esc["notification_id"]
    notifier.apply_action({"alert_id": "e1", "action": "acknowledge"}, T0 + 1900)
    assert notifier.take_released() == [("p", 7)]
    assert notifier.flush(T0 + 2700) == []


def test_a_late_alert_escalates_at_once_for_the_current_period(notifier):
    notifier.add_alert(alert("late", tier=3, at=T0 - 2000), T0)
    jobs = notifier.flush(T0)
    assert sorted(j["kind"] for j in jobs) == ["escalation", "firing"]
    assert next(j for j in jobs if j["kind"] == "escalation")["periods"] == {"late": 2}


def test_restart_does_not_announce_again_what_was_sent(notifier):
    notifier.add_alert(alert("x1", tier=3), T0)
    jobs = notifier.flush(T0)
    notifier.add_alert(alert("x2", tier=3), T0 + 1)
    jobs += notifier.flush(T0 + 900)
    assert sorted(j["kind"] for j in jobs) == ["escalation", "firing", "firing"]
    # the process dies; the new one reads its jobs back from risk.notifications, then the replay
    restarted = Notifier(make_config(GROUPING))
    for job in jobs:
        restarted.remember(job)
    restarted.add_alert(alert("x1", tier=3), T0 + 950, token=("p", 1))
    restarted.add_alert(alert("x2", tier=3), T0 + 950, token=("p", 2))
    restarted.add_alert(alert("x3", tier=3, at=T0 + 940), T0 + 950, token=("p", 3))
    [new] = restarted.flush(T0 + 950)
    assert new["kind"] == "firing" and new["alert_ids"] == ["x3"]
    [esc] = restarted.flush(T0 + 1800)
    assert esc["periods"] == {"x1": 2, "x2": 2}  # period 1 was sent before the crash
    [esc3] = restarted.flush(T0 + 940 + 900)
    assert esc3["periods"] == {"x3": 1}


def test_alert_ids_and_keys_are_stable():
    one = notification_id("r", "g", ["b", "a"], "firing")
    assert one == notification_id("r", "g", ["a", "b"], "firing")
    assert one != notification_id("r", "g", ["a", "b"], "repeat:1") != notification_id("r2", "g", ["a", "b"], "firing")


def test_offsets_commit_only_below_the_oldest_held():
    tracker = OffsetTracker()
    for offset in range(5):
        tracker.add("p0", offset)
    tracker.done("p0", 0)
    tracker.done("p0", 2)
    assert tracker.committable() == {"p0": 1}
    tracker.mark_committed({"p0": 1})
    assert tracker.committable() == {}
    for offset in (1, 3, 4):
        tracker.done("p0", offset)
    assert tracker.committable() == {"p0": 5}


# ---------------------------------------------------------------- signing

def test_signature_is_hmac_sha256_over_timestamp_dot_body():
    body = b'{"a":1}'
    expected = "sha256=" + hmac.new(b"k3y", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature("k3y", 1700000000, body) == expected
    headers = signed_headers("k3y", body, "nid", timestamp=1700000000)
    assert headers == {"X-Riskcockpit-Timestamp": "1700000000", "X-Riskcockpit-Id": "nid",
                       "X-Riskcockpit-Signature": expected}
    assert verify("k3y", "1700000000", body, expected, now=1700000010)
    assert not verify("k3y", "1700000000", body + b" ", expected, now=1700000010)
    assert not verify("other", "1700000000", body, expected, now=1700000010)
    assert not verify("k3y", "1700000001", body, expected, now=1700000010)
    assert not verify("k3y", "1700000000", body, expected, now=1700001000)  # replayed later
    assert verify("k3y", "1700000000", body, expected, max_age=None)


def test_dingtalk_and_feishu_signatures_follow_their_documentation():
    mac = hmac.new(b"SEC", b"1700000000000\nSEC", hashlib.sha256).digest()
    assert dingtalk_sign("SEC", 1700000000000) == base64.b64encode(mac).decode()
    mac = hmac.new(b"1700000000\nSEC", b"", hashlib.sha256).digest()
    assert feishu_sign("SEC", 1700000000) == base64.b64encode(mac).decode()


# ---------------------------------------------------------------- templates and receivers

def sample_job(count=1, tier=3, kind="firing"):
    n = Notifier(make_config(GROUPING))
    for i in range(count):
        indicators = ("structuring", "new_country", "large_amount", "unusual_hour")
        n.add_alert(alert(f"j{i}", tier=tier, indicators=indicators), T0)
    job = n.flush(T0 + 30)[0]
    job["kind"] = kind
    return job


def test_message_shows_tier_entity_score_reasons_and_link():
    message = Message(sample_job(), "http://cockpit:8050", top_reasons=3)
    text = message.markdown()
    assert message.title == "[CRITICAL] 1 new alert(s) on account A1"
    assert "score 90.0" in text and "1,234.50 EUR" in text
    assert "structuring (+40): structuring fired" in text and "unusual_hour" not in text  # top 3 only
    assert "http://cockpit:8050/?account=A1&alert=j0" in text
    many = Message(sample_job(count=25, tier=1), "http://c")
    assert "… and 15 more" in many.plain() and many.title.startswith("[WATCH] 25 new alert(s)")
    zh = Message(sample_job(), "http://c", language="zh")
    assert zh.title.startswith("[严重]") and "账户 A1" in zh.title
    assert len(fit("预警" * 3000, 4096).encode()) <= 4096


def test_chat_payloads_and_judgements():
    job = sample_job()
    env = {"URL": "https://oapi.dingtalk.com/robot/send?access_token=TOKEN123456", "SIGN": "SECabcdef"}

    def receiver(kind, **extra):
        cfg = alerting_config.ReceiverConfig(name=kind, type=kind, url_env="URL", **extra)
        return build(cfg, "http://c", env)

    ding = receiver("dingtalk", sign_secret_env="SIGN")
    request = ding.request(job, now=1700000000.5)
    assert "access_token=TOKEN123456&timestamp=1700000000500&sign=" in request.url
    assert json.loads(request.body)["msgtype"] == "markdown"
    assert ding.judge(200, {}, '{"errcode":0,"errmsg":"ok"}').ok
    throttled = ding.judge(200, {}, '{"errcode":130101,"errmsg":"send too fast"}')
    assert not throttled.ok and throttled.retryable
    assert not ding.judge(200, {}, '{"errcode":310000,"errmsg":"sign not match"}').retryable
    feishu = receiver("feishu", sign_secret_env="SIGN")
    body = json.loads(feishu.request(job, now=1700000000).body)
    assert body["msg_type"] == "interactive" and body["timestamp"] == "1700000000"
    assert body["sign"] == feishu_sign("SECabcdef", 1700000000)
    assert json.loads(receiver("feishu", format="text").request(job).body)["msg_type"] == "text"
    wecom = json.loads(receiver("wecom").request(job).body)
    assert wecom["msgtype"] == "markdown" and "A1" in wecom["markdown"]["content"]
    slack = json.loads(receiver("slack").request(job).body)
    assert "<http://c/?account=A1&alert=j0|" in slack["text"]
    generic = build(alerting_config.ReceiverConfig(name="w", type="webhook", url="http://h/x", secret_env="S"),
                    "http://c", {"S": "k"})
    assert generic.judge(503, {"Retry-After": "7"}, "").retry_after == 7
    assert not generic.judge(404, {}, "").retryable and generic.judge(429, {}, "").retryable
    # the body of a notification does not change between attempts (only the signed timestamp does)
    assert generic.request(job, now=1).body == generic.request(job, now=99).body


# ---------------------------------------------------------------- backoff and rate limiting

def test_backoff_grows_with_jitter_and_respects_retry_after():
    policy = RetryPolicy(initial_backoff=1, max_backoff=10, multiplier=2, max_retry_after=30)
    rng = random.Random(1)
    for failures, ceiling in ((1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (9, 10)):
        delays = [backoff_delay(failures, policy, rng) for _ in range(200)]
        assert ceiling / 2 <= min(delays) and max(delays) <= ceiling
        assert max(delays) - min(delays) > ceiling / 4  # actually jittered
    assert next_delay(1, policy, 20, rng) == 20
    assert next_delay(1, policy, 3600, rng) == 30
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 - 60) == 60
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_token_bucket():
    clock = [0.0]
    bucket = TokenBucket(rate=2, burst=3, clock=lambda: clock[0])
    assert [bucket.try_take() for _ in range(3)] == [0, 0, 0]
    assert bucket.try_take() == pytest.approx(0.5)
    clock[0] = 0.5
    assert bucket.try_take() == 0
    clock[0] = 100
    assert [bucket.try_take() for _ in range(4)][:3] == [0, 0, 0]


def test_open_alerts_are_bounded_but_duties_are_kept():
    config = make_config(GROUPING.replace("sla: {tier3: 15m}", "sla: {tier3: 15m}\nnotifier: {max_open_alerts: 100}"))
    n = Notifier(config)
    n.add_alert(alert("duty", tier=3, account="Z"), T0)
    n.flush(T0)
    for i in range(300):
        n.add_alert(alert(f"w{i}", account=f"A{i}"), T0 + 1)
        n.flush(T0 + 40)
    assert len(n.alerts) <= 101 and "duty" in n.alerts and n.stats["evicted"] >= 199
    [esc] = n.flush(T0 + 900)
    assert esc["periods"] == {"duty": 1}


def test_the_sink_maps_silence_changes_and_delivery_attempts_to_rows():
    from types import SimpleNamespace

    from riskcockpit.ground import topics
    from riskcockpit.streams.sink import DELIVERY_COLUMNS, SILENCE_COLUMNS, rows_by_table

    now = datetime.now(UTC)
    change = expired(new_silence(['account_id="A1"'], "alice", "why", now + timedelta(hours=1)), "bob").to_event()
    attempt = {"attempt_id": "a1", "notification_id": "n1", "receiver": "hook", "receiver_type": "webhook",
               "kind": "firing", "group_key": "g", "attempt": 1, "status_code": 200, "latency_ms": 3.5, "error": "",
               "outcome": "delivered", "alert_ids": ["t1", "t2"], "attempted_at": now.isoformat()}
    messages = [SimpleNamespace(topic=topic, partition=0, offset=i, key=b"k", timestamp=0,
                                value=json.dumps(value).encode())
                for i, (topic, value) in enumerate([(topics.SILENCES, change), (topics.DELIVERIES, attempt)])]
    rows = rows_by_table(messages)
    assert "dlq" not in rows
    [silence_row] = rows["silences"]
    assert dict(zip(SILENCE_COLUMNS, silence_row, strict=True))["changed_by"] == "bob"
    [delivery_row] = rows["deliveries"]
    assert dict(zip(DELIVERY_COLUMNS, delivery_row, strict=True))["alert_ids"] == '["t1", "t2"]'


def test_a_replayed_alert_with_duties_keeps_its_position_held(notifier):
    notifier.add_alert(alert("dup", tier=3), T0, token=("p", 3))
    notifier.flush(T0)
    notifier.add_alert(alert("dup", tier=3), T0 + 1, token=("p", 3))  # the same record after a rebalance
    assert notifier.take_released() == []
    notifier.add_alert(alert("dup", tier=3), T0 + 2, token=("p", 9))  # re-published later
    assert notifier.take_released() == [("p", 3)]
    notifier.apply_action({"alert_id": "dup"}, T0 + 3)
    notifier.add_alert(alert("dup", tier=3), T0 + 4, token=("p", 12))
    assert notifier.take_released() == [("p", 9), ("p", 12)]
