"""Delivery against a real HTTP receiver on loopback (aiohttp, recording every request):
signatures, retries through an outage, Retry-After, dead-lettering, rate limits, secrets kept
out of logs, the README's receiver-side snippet, and the commands around them."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from riskcockpit.alerting.config import parse
from riskcockpit.alerting.delivery import Deliverer, Lane, dead_letter
from riskcockpit.alerting.signing import signature, verify
from riskcockpit.alerting.testing import RecordingReceiver
from riskcockpit.cli import Context
from riskcockpit.cmd_alerting import alerting, sample_job, webhook

REPO = Path(__file__).resolve().parents[1]
SECRET = "whsec-unit-7f3a9c1e5d"


@pytest.fixture
def receiver():
    with RecordingReceiver() as rx:
        yield rx


def config_for(url: str, extra: str = "", retry: str = "{max_attempts: 30, initial_backoff: 50ms, max_backoff: 200ms}",
               rate: str = "{requests: 1000, per: 1s, burst: 1000}", kind: str = "webhook", url_line: str | None = None,
               concurrency: int = 4):
    url_line = url_line or f"url: {url}"
    return parse(f"""
route:
  receivers: [hook]
receivers:
  - name: hook
    type: {kind}
    {url_line}
    secret_env: HOOK_SECRET
    timeout: 2s
    concurrency: {concurrency}
    retry: {retry}
    rate_limit: {rate}
{extra}
""", "test.yaml")


def deliverer(config, attempts=None, **env):
    return Deliverer(config, "http://cockpit.test:8050", record=(attempts.append if attempts is not None else None),
                     environ={"HOOK_SECRET": SECRET, **env})


def test_requests_are_signed_and_a_tampered_body_fails(receiver):
    outcome = deliverer(config_for(receiver.url)).deliver(sample_job("hook"))
    assert outcome.status == "delivered" and outcome.attempts == 1
    [request] = receiver.received()
    ts, sig = request.headers["X-Riskcockpit-Timestamp"], request.headers["X-Riskcockpit-Signature"]
    assert abs(int(ts) - time.time()) < 5 and re.fullmatch(r"sha256=[0-9a-f]{64}", sig)
    assert verify(SECRET, ts, request.body, sig)
    assert not verify(SECRET, ts, request.body.replace(b"A000042", b"A000043"), sig)
    assert not verify("wrong-secret", ts, request.body, sig)
    body = request.json()
    assert body["id"] == request.notification_id and body["tier"] == 3 and body["tier_name"] == "critical"
    assert body["alerts"][0]["url"].startswith("http://cockpit.test:8050/?account=A000042&alert=")
    assert "structuring (+45)" in body["text"]


def test_readme_snippet_verifies_a_real_signed_request(receiver, monkeypatch):
    readme = (REPO / "alerting" / "README.md").read_text()
    block = re.search(r"<!-- verify-snippet -->\s*```python\n(.*?)```\s*<!-- /verify-snippet -->", readme, re.S)[1]
    assert len(block.strip().splitlines()) <= 10
    deliverer(config_for(receiver.url)).deliver(sample_job("hook"))
    [request] = receiver.received()
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    namespace: dict = {}
    exec(compile(block, "alerting/README.md", "exec"), namespace)
    check = namespace["riskcockpit_request_ok"]
    assert check(request.headers, request.body) is True
    assert check(request.headers, request.body + b" ") is False
    stale = dict(request.headers, **{"X-Riskcockpit-Timestamp": str(int(time.time()) - 3600)})
    assert check(stale, request.body) is False


def test_receiver_down_then_failing_then_up_gets_it_once_with_one_id(receiver):
    attempts: list[dict] = []
    job = sample_job("hook")
    receiver.go_down()
    phase = {"status": 500}
    receiver.respond = lambda request: (phase["status"], {}, '{"error":"busy"}')
    result = {}
    d = deliverer(config_for(receiver.url), attempts)
    thread = threading.Thread(target=lambda: result.update(o=d.deliver(job)))
    thread.start()
    time.sleep(0.8)  # connection refused meanwhile
    receiver.go_up()
    time.sleep(0.8)  # answered with 500 meanwhile
    phase["status"] = 200
    thread.join(20)
    assert result["o"].status == "delivered"
    statuses = [a["status_code"] for a in attempts]
    assert statuses[0] == 0 and 500 in statuses and statuses[-1] == 200 and statuses.count(200) == 1
    assert {a["notification_id"] for a in attempts} == {job["notification_id"]}
    assert [a["attempt"] for a in attempts] == list(range(1, len(attempts) + 1))
    assert attempts[0]["error"].startswith("connection error") and attempts[-1]["outcome"] == "delivered"
    assert {r.notification_id for r in receiver.received()} == {job["notification_id"]}
    assert len(receiver.received(ok_only=True)) == 1


def test_retry_after_is_honoured(receiver):
    answers = iter([(429, {"Retry-After": "1"}, "{}"), (503, {"Retry-After": "1"}, "{}")])
    receiver.respond = lambda request: next(answers, (200, {}, "{}"))
    outcome = deliverer(config_for(receiver.url)).deliver(sample_job("hook"))
    assert outcome.status == "delivered" and outcome.attempts == 3
    times = [r.at for r in receiver.received()]
    assert times[1] - times[0] >= 0.95 and times[2] - times[1] >= 0.95


def test_dead_letter_after_max_attempts_and_at_once_for_a_client_error(receiver):
    receiver.respond = lambda request: (500, {}, '{"error":"down"}')
    attempts: list[dict] = []
    job = sample_job("hook")
    d = deliverer(config_for(receiver.url, retry="{max_attempts: 4, initial_backoff: 10ms}"), attempts)
    outcome = d.deliver(job)
    assert (outcome.status, outcome.attempts, outcome.last_status) == ("dead_letter", 4, 500)
    assert [a["outcome"] for a in attempts] == ["retry", "retry", "retry", "dead_letter"]
    record = dead_letter(job, outcome)
    assert record["job"] == job and record["last_error"].startswith("HTTP 500")
    receiver.respond = lambda request: (400, {}, '{"error":"bad payload"}')
    outcome = deliverer(config_for(receiver.url)).deliver(sample_job("hook"))
    assert (outcome.status, outcome.attempts) == ("dead_letter", 1)


def run_lane(d: Deliverer, jobs: list[dict]) -> tuple[Lane, dict]:
    done: dict = {}
    workers = d.receivers["hook"].config.effective_concurrency()
    lane = Lane(d, "hook", lambda token, job, outcome: done.update({token: (outcome, time.time())}), workers).start()
    for i, job in enumerate(jobs):
        lane.put(i, job)
    return lane, done


def test_a_job_in_retry_does_not_block_the_receivers_other_jobs(receiver):
    jobs = [sample_job("hook") for _ in range(4)]
    poison = {"id": jobs[0]["notification_id"], "healed": False}
    receiver.respond = lambda r: (500, {}, "{}") if r.notification_id == poison["id"] and not poison["healed"] \
        else (200, {}, "{}")
    d = deliverer(config_for(receiver.url, retry="{max_attempts: 50, initial_backoff: 200ms, max_backoff: 400ms}"))
    started = time.time()
    lane, done = run_lane(d, jobs)
    wait_for_condition(lambda: {1, 2, 3} <= set(done), 5)
    assert 0 not in done and max(t for _, t in done.values()) - started < 1.0
    poison["healed"] = True
    wait_for_condition(lambda: 0 in done, 5)
    assert done[0][0].status == "delivered" and done[0][0].attempts >= 2
    d.stopping.set()
    lane.close()
    lane.join(5)


def test_a_slow_webhook_gets_requests_in_parallel(receiver):
    receiver.latency = 0.3
    d = deliverer(config_for(receiver.url, extra=""))
    assert d.receivers["hook"].config.effective_concurrency() == 4
    started = time.monotonic()
    lane, done = run_lane(d, [sample_job("hook") for _ in range(8)])
    assert len(lane.threads) == 4
    wait_for_condition(lambda: len(done) == 8, 10)
    assert time.monotonic() - started < 1.5  # one at a time would take 2.4 s
    d.stopping.set()
    lane.close()
    lane.join(5)


def test_retry_after_pauses_the_whole_receiver(receiver):
    first = {"sent": False}

    def respond(request):
        if not first["sent"]:
            first["sent"] = True
            return 429, {"Retry-After": "1"}, "{}"
        return 200, {}, "{}"

    receiver.respond = respond
    # one request at a time: requests already in flight when the 429 arrives cannot be recalled
    d = deliverer(config_for(receiver.url, retry="{max_attempts: 5, initial_backoff: 10ms}", concurrency=1))
    lane, done = run_lane(d, [sample_job("hook") for _ in range(3)])
    wait_for_condition(lambda: len(done) == 3, 10)
    times = [r.at for r in receiver.received()]
    assert len(times) == 4 and min(times[1:]) - times[0] >= 0.95
    d.stopping.set()
    lane.close()
    lane.join(5)


def wait_for_condition(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_rate_limit_spaces_requests(receiver):
    d = deliverer(config_for(receiver.url, rate="{requests: 5, per: 1s, burst: 2}"))
    started = time.time()
    for _ in range(10):
        assert d.deliver(sample_job("hook")).status == "delivered"
    times = sorted(r.at for r in receiver.received())
    # At most 2 tokens at the start, then 5 a second: the 10th token cannot be taken before 1.6 s. Measured from
    # the start, not from the first arrival: a slow first request (a new connection) shortens that span.
    assert len(times) == 10 and times[-1] - started >= 8 * 0.2 - 0.01
    # No minimum gap: a token bucket rightly lets a request follow a slow one sooner (its tokens
    # accumulated meanwhile); the limit is what any window may hold.
    for start in range(len(times)):  # never more than burst + rate * window in any window
        in_window = [t for t in times if times[start] <= t < times[start] + 1.0]
        assert len(in_window) <= 2 + 5


def test_secrets_never_reach_logs_or_records(receiver, caplog):
    token = "xoxb-TOKEN-0123456789abcdef"
    url = f"{receiver.url}?access_token={token}"
    caplog.set_level(logging.DEBUG)
    for name in ("urllib3", "urllib3.connectionpool"):  # other libraries quieten urllib3; we want its URL lines
        caplog.set_level(logging.DEBUG, logger=name)
    attempts: list[dict] = []
    config = config_for("", kind="slack", url_line="url_env: ROBOT_URL",
                        retry="{max_attempts: 2, initial_backoff: 10ms}")
    d = deliverer(config, attempts, ROBOT_URL=url)
    assert d.deliver(sample_job("hook")).status == "delivered"
    # a receiver that echoes the request URL back in its error must not smuggle it into the records
    receiver.respond = lambda request: (500, {}, json.dumps({"error": f"cannot handle {url}", "q": request.query}))
    failed = d.deliver(sample_job("hook"))
    receiver.go_down()
    refused = d.deliver(sample_job("hook"))
    assert failed.status == refused.status == "dead_letter"
    assert receiver.received()[0].query == {"access_token": token}  # the token was used
    texts = [caplog.text, json.dumps(attempts), json.dumps(dead_letter(sample_job("hook"), failed)), repr(d.receivers)]
    assert any("POST" in record.getMessage() for record in caplog.records)  # urllib3's request line was logged
    for text in texts:
        assert token not in text and SECRET not in text


def test_a_receiver_without_its_secret_refuses_to_start_or_dead_letters(receiver):
    from riskcockpit.alerting.receivers import MissingSecret

    config = config_for(receiver.url)
    with pytest.raises(MissingSecret, match="HOOK_SECRET is not set"):
        Deliverer(config, "http://c", environ={})
    attempts: list[dict] = []
    d = Deliverer(config, "http://c", record=attempts.append, environ={}, allow_missing_secrets=True)
    outcome = d.deliver(sample_job("hook"))
    assert outcome.status == "dead_letter" and "HOOK_SECRET is not set" in outcome.last_error
    assert attempts[0]["outcome"] == "dead_letter" and receiver.received() == []


# ---------------------------------------------------------------- commands

@pytest.fixture
def cli_obj(env):
    return Context(None, {})


def test_webhook_test_command(receiver, tmp_path, cli_obj, monkeypatch):
    path = tmp_path / "alerting.yaml"
    path.write_text(f"""route: {{receivers: [hook]}}
receivers:
  - {{name: hook, type: webhook, url: "{receiver.url}", secret_env: HOOK_SECRET}}
""")
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    runner = CliRunner()
    result = runner.invoke(webhook, ["test", "hook", "--file", str(path)], obj=cli_obj)
    assert result.exit_code == 0, result.output
    assert "attempt 1: 200" in result.output and "delivered: notification" in result.output
    [request] = receiver.received()
    assert verify(SECRET, request.headers["X-Riskcockpit-Timestamp"], request.body,
                  request.headers["X-Riskcockpit-Signature"])
    receiver.respond = lambda request: (502, {}, "{}")
    result = runner.invoke(webhook, ["test", "hook", "--file", str(path)], obj=cli_obj)
    assert result.exit_code == 1 and "attempt 1: 502" in result.output
    result = runner.invoke(webhook, ["test", "nobody", "--file", str(path)], obj=cli_obj)
    assert result.exit_code == 2 and "no receiver 'nobody'" in result.output
    monkeypatch.delenv("HOOK_SECRET")
    result = runner.invoke(webhook, ["test", "hook", "--file", str(path)], obj=cli_obj)
    assert result.exit_code == 1 and "HOOK_SECRET is not set" in result.output


def test_webhook_verify_command(tmp_path, monkeypatch):
    body = b'{"id":"n1","alerts":[]}'
    (tmp_path / "body.json").write_bytes(body)
    (tmp_path / "tampered.json").write_bytes(body.replace(b"n1", b"n2"))
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    ts = str(int(time.time()))
    sig = signature(SECRET, ts, body)
    runner = CliRunner()
    ok = runner.invoke(webhook, ["verify", "--secret-env", "HOOK_SECRET", "--timestamp", ts, "--signature", sig,
                                 str(tmp_path / "body.json")])
    assert ok.exit_code == 0 and ok.output.strip() == "valid"
    bad = runner.invoke(webhook, ["verify", "--secret-env", "HOOK_SECRET", "--timestamp", ts, "--signature", sig,
                                  str(tmp_path / "tampered.json")])
    assert bad.exit_code == 1 and "does not match" in bad.output
    old_ts = str(int(time.time()) - 3600)
    old = runner.invoke(webhook, ["verify", "--secret-env", "HOOK_SECRET", "--timestamp", old_ts, "--signature",
                                  signature(SECRET, old_ts, body), "--max-age", "300", str(tmp_path / "body.json")])
    assert old.exit_code == 1 and "replayed" in old.output
    stdin = runner.invoke(webhook, ["verify", "--secret-env", "HOOK_SECRET", "--timestamp", ts, "--signature", sig,
                                    "-"], input=body)
    assert stdin.exit_code == 0


def test_alerting_check_and_route_commands(tmp_path, cli_obj):
    runner = CliRunner()
    shipped = REPO / "config" / "alerting.yaml"
    ok = runner.invoke(alerting, ["check", str(shipped)], obj=cli_obj)
    assert ok.exit_code == 0
    assert "OK: 3 route(s), 4 receiver(s), 1 inhibit rule(s), SLA tier2 4h, tier3 15m" in ok.output
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text(shipped.read_text().replace("group_wait: 0s", "group_wait: instantly"))
    bad = runner.invoke(alerting, ["check", str(bad_file)], obj=cli_obj)
    line = next(i for i, text in enumerate(bad_file.read_text().splitlines(), 1) if "instantly" in text)
    assert bad.exit_code == 1 and f"{bad_file}:{line}: route.routes.0.group_wait: 'instantly'" in bad.output
    route = runner.invoke(alerting, ["route", "--file", str(shipped), "--tier", "3", "--label",
                                     "indicator=structuring", "--label", "country=NL", "-v"], obj=cli_obj)
    assert route.exit_code == 0, route.output
    assert route.output.splitlines()[0] == "case-management,fraud-oncall-dingtalk,aml-feishu"
    assert "escalation duty-manager-wecom" in route.output and "wait 0s, interval 1m, repeat 1h" in route.output
    plain = runner.invoke(alerting, ["route", "--file", str(shipped), "--tier", "1"], obj=cli_obj)
    assert plain.output.strip() == "case-management"


def test_a_job_that_cannot_even_be_attempted_is_dead_lettered_and_the_lane_goes_on(receiver):
    good = sample_job("hook")
    broken = {**sample_job("hook"), "alerts": "not a list", "group_labels": None}
    d = deliverer(config_for(receiver.url))
    lane, done = run_lane(d, [broken, good])
    wait_for_condition(lambda: len(done) == 2, 5)
    assert done[0][0].status == "dead_letter" and "Error" in done[0][0].last_error
    assert done[1][0].status == "delivered" and all(t.is_alive() for t in lane.threads)
    d.stopping.set()
    lane.close()
    lane.join(5)
