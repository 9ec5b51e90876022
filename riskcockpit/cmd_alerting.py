"""Commands: ``riskcockpit notifier``, ``alerting check|route``, ``silence add|list|expire``,
``webhook test|verify``. Registered on the main ``riskcockpit`` group by ``riskcockpit/cli.py``.

Each command reads settings through the main group's context object (``ctx.obj.settings()``),
so ``--config-dir`` and ``--kafka`` apply; outside that group, from the default folder.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from riskcockpit.context import settings_of
from riskcockpit.ground.yamlfile import ConfigError
from riskcockpit.settings import Settings


def _settings(ctx: click.Context) -> Settings:
    return settings_of(ctx.find_root().obj)


def _config(settings: Settings, file: str | None):
    from riskcockpit.alerting import config as alerting_config

    path = Path(file) if file else alerting_config.default_path(settings.config_dir)
    try:
        return alerting_config.load(path)
    except ConfigError as exc:
        raise click.ClickException(f"configuration error:\n{exc}") from None


def _cockpit_url(settings: Settings, config) -> str:
    return config.cockpit_url or settings.cockpit.url


FILE_OPTION = click.option("--file", "file", type=click.Path(dir_okay=False),
                           help="alerting configuration (default: alerting.yaml in the config folder)")


# ---------------------------------------------------------------- notifier

@click.command()
@FILE_OPTION
@click.option("--only", type=click.Choice(["notifier", "delivery"]), help="run one of the two loops")
@click.option("--allow-missing-secrets", is_flag=True,
              help="start even if a receiver's environment variables are unset; its notifications are dead-lettered")
@click.pass_context
def notifier(ctx, file, only, allow_missing_secrets):
    """Route alerts to receivers: the notifier loop and the delivery loop."""
    import signal
    import threading

    from riskcockpit.alerting.delivery import DeliveryService
    from riskcockpit.alerting.notifier import NotifierService
    from riskcockpit.alerting.receivers import MissingSecret

    settings = _settings(ctx)
    config = _config(settings, file)
    missing = config.missing_env()
    if missing and not allow_missing_secrets and only != "notifier":
        raise click.ClickException(f"{config.source}: environment variables not set: {', '.join(missing)} "
                                   "(or start with --allow-missing-secrets)")
    services = []
    if only != "delivery":
        services.append(NotifierService(config, settings.kafka.servers, settings.kafka.partitions))
    if only != "notifier":
        try:
            services.append(DeliveryService(config, settings.kafka.servers, _cockpit_url(settings, config),
                                            settings.kafka.partitions, allow_missing_secrets=allow_missing_secrets))
        except MissingSecret as exc:
            raise click.ClickException(str(exc)) from None
    stopped = threading.Event()

    def stop(*_):
        stopped.set()
        for service in services:
            service.stop()

    signal.signal(signal.SIGTERM, stop)
    threads = [service.start_thread() for service in services]
    code = 0
    try:
        while not stopped.is_set():
            if any(not t.is_alive() for t in threads):
                code = 1
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop()
        for thread in threads:
            thread.join(30)
    failed = [s for s in services if s.error is not None]
    if failed or code:
        raise click.ClickException("; ".join(f"{type(s).__name__} failed: {s.error}" for s in failed)
                                   or "a loop stopped unexpectedly")


# ---------------------------------------------------------------- alerting check | route

@click.group()
def alerting():
    """Check the alerting configuration and try its routes."""


@alerting.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.pass_context
def alerting_check(ctx, file):
    """Validate FILE (default: alerting.yaml in the config folder); errors name file and line."""
    from riskcockpit.alerting import config as alerting_config
    from riskcockpit.alerting.routing import Router
    from riskcockpit.ground.durations import format_duration

    if file is None:
        file = str(alerting_config.default_path(_settings(ctx).config_dir))
    try:
        config = alerting_config.load(file)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    routes = sum(1 for _ in Router(config).walk())
    for warning in alerting_config.warnings(config):
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"{file}: OK: {routes} route(s), {len(config.receivers)} receiver(s), "
               f"{len(config.inhibit_rules)} inhibit rule(s), SLA "
               + (", ".join(f"{k} {format_duration(v)}" for k, v in sorted(config.sla.items())) or "none"))


@alerting.command("route")
@FILE_OPTION
@click.option("--tier", type=click.IntRange(1, 3), help="the alert's tier")
@click.option("--label", "labels", multiple=True, metavar="NAME=VALUE",
              help="a label of the alert (repeatable); indicator=X adds one indicator")
@click.option("--verbose", "-v", is_flag=True, help="show the matching routes, grouping and escalation")
@click.pass_context
def alerting_route(ctx, file, tier, labels, verbose):
    """Print the receivers an alert with these labels would reach (like amtool config routes test)."""
    from riskcockpit.alerting.routing import Router
    from riskcockpit.ground.durations import format_duration

    config = _config(_settings(ctx), file)
    values: dict[str, str] = {}
    indicators: list[str] = []
    for item in labels:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--label")
        if name in ("indicator", "indicators"):
            indicators += [v for v in value.split(",") if v]
        else:
            values[name.strip()] = value
    if tier is not None:
        values["tier"] = str(tier)
    values["indicators"] = ",".join(sorted(set(indicators)))
    router = Router(config)
    matched = router.match(values)
    click.echo(",".join(router.receivers(values)))
    if verbose:
        for route in matched:
            click.echo(f"  {route.describe()}: receivers {', '.join(route.receivers)}; group by "
                       f"{', '.join(route.group_by) or '(nothing)'} -> {route.group_key(values)}; "
                       f"wait {format_duration(route.group_wait)}, interval {format_duration(route.group_interval)}, "
                       f"repeat {format_duration(route.repeat_interval)}"
                       + (f"; escalation {', '.join(route.escalation)}" if route.escalation else ""))


# ---------------------------------------------------------------- silences

@click.group()
def silence():
    """Mute notifications for matching alerts for a while; every change is recorded."""


def _kafka(settings: Settings, action):
    """Run ``action``; a broker that cannot be reached is a one-line error, not a traceback."""
    from kafka.errors import KafkaError

    from riskcockpit.ground.kafka import BrokerError
    try:
        return action()
    except (BrokerError, KafkaError, RuntimeError, OSError) as exc:
        raise click.ClickException(f"Kafka at {settings.kafka.servers}: {exc}") from None


def _silences(settings: Settings):
    from riskcockpit.alerting import bus
    from riskcockpit.alerting.silences import SilenceSet
    from riskcockpit.ground import topics

    def read():
        bus.ensure_alerting_topics(settings.kafka.servers, settings.kafka.partitions)
        folded = SilenceSet()
        for event in bus.read_until_end(settings.kafka.servers, topics.SILENCES):
            try:
                folded.apply(event)
            except (KeyError, ValueError, TypeError):
                continue
        return folded

    return _kafka(settings, read)


def _publish_silence(settings: Settings, item) -> None:
    from riskcockpit.alerting import bus
    from riskcockpit.ground import topics

    def publish():
        bus.ensure_alerting_topics(settings.kafka.servers, settings.kafka.partitions)
        producer = bus.producer(settings.kafka.servers)
        try:
            producer.send(topics.SILENCES, key=item.silence_id.encode(),
                          value=json.dumps(item.to_event(), ensure_ascii=False).encode()).get(timeout=30)
        finally:
            producer.close(timeout=10)

    _kafka(settings, publish)


def _when(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not ISO-8601 such as 2026-11-22T18:00:00+08:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@silence.command("add")
@click.argument("matchers", nargs=-1)
@click.option("--matcher", "-m", "more", multiple=True, help='a matcher such as account_id="A42" (repeatable)')
@click.option("--duration", "-d", default="1h", show_default=True, help="how long, e.g. 30m, 2h, 1d")
@click.option("--until", "until", help="end time instead of --duration (ISO-8601)")
@click.option("--start", help="start later than now (ISO-8601)")
@click.option("--author", "-a", default=lambda: os.environ.get("RISKCOCKPIT_USER") or getpass.getuser(),
              help="who mutes (default: $RISKCOCKPIT_USER or the login name)")
@click.option("--comment", "-c", required=True, help="why (required)")
@click.pass_context
def silence_add(ctx, matchers, more, duration, until, start, author, comment):
    """Mute alerts matching all MATCHERS, e.g. account_id="A42" 'indicator=~"new_.*"'."""
    from riskcockpit.alerting.silences import new_silence
    from riskcockpit.ground.durations import parse_duration

    now = datetime.now(UTC)
    starts = _when(start) if start else now
    if until:
        ends = _when(until)
    else:
        try:
            ends = starts + timedelta(seconds=parse_duration(duration))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--duration") from None
    try:
        item = new_silence(list(matchers) + list(more), author, comment, ends, starts, now)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    _publish_silence(_settings(ctx), item)
    click.echo(item.silence_id)


@silence.command("list")
@click.option("--all", "include_expired", is_flag=True, help="include expired silences")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def silence_list(ctx, include_expired, fmt):
    """Silences, active and pending (with --all also expired), with who changed them last."""
    now = datetime.now(UTC)
    items = _silences(_settings(ctx)).listed(now, include_expired)
    if fmt == "json":
        click.echo(json.dumps([dict(s.to_event(), state=s.state(now)) for s in items], ensure_ascii=False))
        return
    if not items:
        click.echo("no silences" + ("" if include_expired else " (active or pending); --all shows expired ones"))
        return
    for s in items:
        change = f"; {s.event} by {s.changed_by} at {s.changed_at:%Y-%m-%d %H:%M:%S}Z" if s.version > 1 else ""
        click.echo(f"{s.silence_id}  {s.state(now):8}  {' '.join(str(m) for m in s.matchers)}  "
                   f"{s.starts_at:%Y-%m-%d %H:%M:%S}Z → {s.ends_at:%Y-%m-%d %H:%M:%S}Z  "
                   f"by {s.created_by}: {s.comment}{change}")


@silence.command("expire")
@click.argument("silence_ids", nargs=-1, required=True)
@click.option("--author", "-a", default=lambda: os.environ.get("RISKCOCKPIT_USER") or getpass.getuser(),
              help="who ends it (default: $RISKCOCKPIT_USER or the login name)")
@click.option("--comment", "-c", default="", help="why it ends early")
@click.pass_context
def silence_expire(ctx, silence_ids, author, comment):
    """End silences now (an id prefix is enough)."""
    from riskcockpit.alerting.silences import expired

    settings = _settings(ctx)
    known = _silences(settings)
    now = datetime.now(UTC)
    for prefix in silence_ids:
        try:
            item = known.find(prefix)
        except KeyError as exc:
            raise click.ClickException(exc.args[0]) from None
        if item.state(now) == "expired":
            click.echo(f"{item.silence_id} already expired")
            continue
        _publish_silence(settings, expired(item, author, now, comment))
        click.echo(f"{item.silence_id} expired")


# ---------------------------------------------------------------- webhook test | verify

@click.group()
def webhook():
    """Try a receiver, or check a signed request as a receiver would."""


def sample_job(receiver: str, tier: int = 3) -> dict:
    from riskcockpit.alerting.labels import alert_labels
    from riskcockpit.alerting.notifier import alert_summary
    from riskcockpit.alerting.signing import notification_id

    now = datetime.now(UTC)
    alert = {"tx_id": f"sample-{uuid.uuid4().hex[:8]}", "account_id": "A000042",
             "ts": now.isoformat(timespec="seconds"),
             "amount": 9800.0, "currency": "EUR", "channel": "transfer", "country": "NL", "score": 91.5,
             "tier": tier, "scenario": "sample", "scored_at": now.isoformat(timespec="milliseconds"),
             "reasons": [{"indicator": "structuring", "value": 4, "contribution": 45.0,
                          "reason": "4 transfers just below 10,000 within 24h"},
                         {"indicator": "new_country", "value": "NL", "contribution": 25.0,
                          "reason": "first transaction from NL"}]}
    labels = alert_labels(alert)
    group_key = f"test:{json.dumps({'account_id': labels['account_id']})}"
    return {"notification_id": notification_id(receiver, group_key, [labels["alert_id"]], "test"), "kind": "firing",
            "receiver": receiver, "route": "test", "route_name": "webhook test", "group_key": group_key,
            "group_labels": {"account_id": labels["account_id"]}, "tier": tier,
            "alerts": [alert_summary(alert, labels)], "alert_ids": [labels["alert_id"]], "truncated": 0,
            "open_alerts": 1, "sequence": "test", "created_at": now.isoformat(timespec="milliseconds")}


@webhook.command("test")
@click.argument("receiver")
@FILE_OPTION
@click.option("--tier", type=click.IntRange(1, 3), default=3, show_default=True)
@click.option("--attempts", type=click.IntRange(1, 20), default=1, show_default=True,
              help="attempts before giving up (the receiver's own retry policy applies in between)")
@click.pass_context
def webhook_test(ctx, receiver, file, tier, attempts):
    """Send a signed sample notification to RECEIVER and say what it answered."""
    from riskcockpit.alerting.delivery import Deliverer
    from riskcockpit.alerting.receivers import MissingSecret

    settings = _settings(ctx)
    config = _config(settings, file)
    names = [r.name for r in config.receivers]
    if receiver not in names:
        raise click.BadParameter(f"no receiver {receiver!r}; defined: {', '.join(names)}", param_hint="RECEIVER")
    trimmed = config.model_copy(update={"receivers": [config.receiver(receiver)]})
    attempts_seen: list[dict] = []
    try:
        deliverer = Deliverer(trimmed, _cockpit_url(settings, config), record=attempts_seen.append)
    except MissingSecret as exc:
        raise click.ClickException(str(exc)) from None
    job = sample_job(receiver, tier)
    outcome = deliverer.deliver(job, max_attempts=attempts)
    for a in attempts_seen:
        status = a["status_code"] or "no answer"
        click.echo(f"attempt {a['attempt']}: {status} in {a['latency_ms']:.0f} ms"
                   + (f" ({a['error']})" if a["error"] else ""))
    click.echo(f"{outcome.status}: notification {job['notification_id']}")
    if outcome.status != "delivered":
        sys.exit(1)


@webhook.command("verify")
@click.argument("bodyfile", type=click.File("rb"))
@click.option("--secret-env", required=True, help="environment variable holding the signing secret")
@click.option("--timestamp", required=True, help="the X-Riskcockpit-Timestamp header")
@click.option("--signature", required=True, help="the X-Riskcockpit-Signature header (sha256=…)")
@click.option("--max-age", type=float, help="also refuse timestamps more than this many seconds from now")
def webhook_verify(bodyfile, secret_env, timestamp, signature, max_age):
    """Check a received request's signature over the raw BODYFILE ('-' for stdin); exit 0 if valid, 1 if not."""
    from riskcockpit.alerting.signing import check

    secret = os.environ.get(secret_env)
    if not secret:
        raise click.ClickException(f"environment variable {secret_env} is not set")
    problem = check(secret, timestamp, bodyfile.read(), signature, max_age=max_age)
    if problem:
        click.echo(f"invalid: {problem}", err=True)
        sys.exit(1)
    click.echo("valid")
