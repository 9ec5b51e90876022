"""``riskcockpit``: one command line for every process of the stack and for the audit tools."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import click

from riskcockpit.context import Context


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromtimestamp(int(value) / 1000, UTC) if value.isdigit() else datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not ISO-8601 (2026-11-22T08:00:00+08:00) or epoch ms") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config-dir", envvar="RISKCOCKPIT_CONFIG_DIR", type=click.Path(file_okay=False),
              help="folder with riskcockpit.yaml and indicators.yaml (default: the shipped config/)")
@click.option("--kafka", "kafka_bootstrap", help="bootstrap servers of an existing Kafka (else the embedded broker)")
@click.option("--clickhouse-url", help="http://user:pass@host:8123/db of a ClickHouse server (else embedded chdb)")
@click.option("--data-dir", type=click.Path(file_okay=False), help="broker data and embedded store")
@click.pass_context
def cli(ctx, config_dir, kafka_bootstrap, clickhouse_url, data_dir):
    """Streaming risk-monitoring cockpit: Kafka → Faust → River → ClickHouse → Dash."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = Context(config_dir, {"kafka.bootstrap": kafka_bootstrap, "store.url": clickhouse_url,
                                   "data_dir": data_dir})


@cli.command()
@click.option("--no-generator", is_flag=True, help="start without synthetic traffic")
@click.pass_obj
def run(obj: Context, no_generator):
    """Start the whole stack on this machine (Kafka, worker, sink, cockpit, generator)."""
    from riskcockpit.stack import run as run_stack

    sys.exit(run_stack(obj.settings(), generate=not no_generator))


@cli.group()
def kafka():
    """Manage the embedded single-node Kafka (KRaft)."""


def _embedded(obj: Context, secure: bool = False):
    from riskcockpit.broker import EmbeddedBroker
    settings = obj.settings()
    if not settings.kafka.embedded:
        raise click.ClickException(f"kafka.bootstrap is set ({settings.kafka.bootstrap}): that broker is not managed here")
    return EmbeddedBroker.from_settings(settings, secure)


@kafka.command("start")
@click.option("--secure", is_flag=True,
              help="SASL/SCRAM listener and ACLs, a principal per component (only when first formatted)")
@click.option("--foreground", is_flag=True, help="stay until the broker stops; SIGTERM stops it (a container)")
@click.pass_obj
def kafka_start(obj, secure, foreground):
    """Start the embedded broker in the background."""
    from riskcockpit.ground.kafka import BrokerError
    broker = _embedded(obj, secure)
    try:
        if foreground:
            click.echo(f"starting Kafka on {broker.host}:{broker.port}, data in {broker.data_dir}")
            sys.exit(broker.run(ready=lambda: click.echo(f"ready: {broker.status()}")))
        broker.start()
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(broker.status())


@kafka.command("credentials")
@click.argument("principal")
@click.pass_obj
def kafka_credentials(obj, principal):
    """Print the environment a component needs to run as PRINCIPAL on the secured embedded broker
    (ingest, worker, sink, cockpit, notifier, operator)."""
    broker = _embedded(obj)
    if not broker.secure:
        raise click.ClickException("the embedded broker is not secured (riskcockpit kafka start --secure)")
    if principal not in broker.credentials():
        raise click.ClickException(f"no principal {principal!r}; there are {', '.join(broker.credentials())}")
    for key, value in broker.environment(principal).items():
        click.echo(f"{key}={value}")


@kafka.command("stop")
@click.pass_obj
def kafka_stop(obj):
    """Stop the embedded broker."""
    broker = _embedded(obj)
    click.echo("stopped" if broker.stop() else "was not running")


@kafka.command("status")
@click.pass_obj
def kafka_status(obj):
    """Say whether the embedded broker runs; exit 1 if not."""
    broker = _embedded(obj)
    click.echo(broker.status())
    sys.exit(0 if broker.running() else 1)


@cli.command()
@click.option("--loglevel", default="info", type=click.Choice(["crit", "error", "warn", "info", "debug"]))
@click.pass_obj
def worker(obj: Context, loglevel):
    """Run a Faust worker: validate, score and publish transactions."""
    from riskcockpit.streams.worker import run as run_worker

    settings = obj.settings()
    run_worker(settings.worker, settings.kafka, settings.config_dir, settings.faust_dir, loglevel)


@cli.command()
@click.pass_obj
def sink(obj: Context):
    """Copy the result topics into ClickHouse (own process: server store only)."""
    from riskcockpit.store.client import StoreUnavailable, connect
    from riskcockpit.streams.sink import Sink

    settings = obj.settings()
    try:
        the_sink = Sink(settings.sink, settings.kafka, connect(settings.store), settings.store.database)
    except StoreUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    _stop_on_sigterm(the_sink.stop)
    the_sink.run()


def _stop_on_sigterm(stop) -> None:
    import signal

    def handler(signum, frame):
        stop()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


@cli.command()
@click.option("--host", help="interface to listen on (default cockpit.host)")
@click.option("--port", type=int, help="port (default cockpit.port)")
@click.pass_obj
def cockpit(obj: Context, host, port):
    """Serve the cockpit; with the embedded store it also runs the sink (chdb admits one process)."""
    from riskcockpit.dashboard.app import create_app
    from riskcockpit.store.client import StoreUnavailable, connect
    from riskcockpit.store.migrate import migrate
    from riskcockpit.streams.actions import ActionPublisher
    from riskcockpit.streams.sink import Sink

    settings = obj.settings(**{"cockpit.host": host, "cockpit.port": port})
    try:
        client = connect(settings.store)
    except StoreUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    migrate(client, settings.store.database)
    the_sink = None
    if settings.store.embedded:
        the_sink = Sink(settings.sink, settings.kafka, client, settings.store.database)
        the_sink.start_thread()
    publisher = ActionPublisher(settings.kafka.servers)
    app = create_app(settings.cockpit, client, settings.store.database, publish_action=publisher.publish)

    def stop():
        if the_sink:
            the_sink.stop()
        publisher.close()

    _stop_on_sigterm(stop)
    try:
        app.run(host=settings.cockpit.host, port=settings.cockpit.port, debug=False, use_reloader=False)
    except KeyboardInterrupt:
        pass
    finally:
        stop()


@cli.command()
@click.option("--rate", type=float, help="transactions per second (default generator.rate)")
@click.option("--duration", type=float, help="seconds to run (default: until stopped)")
@click.option("--count", type=int, help="stop after this many transactions, as fast as possible if no --rate")
@click.option("--seed", type=int, help="same seed, same stream (default generator.seed)")
@click.option("--accounts", type=int, help="number of accounts (default generator.accounts)")
@click.option("--fraud-share", type=float, help="share of transactions in fraud scenarios")
@click.option("--start", "start_time", help="event time of the first transaction (default now)")
@click.option("--out", type=click.File("w"), help="write JSON lines here instead of producing to Kafka")
@click.option("--quiet", is_flag=True, help="no progress bar")
@click.pass_obj
def generate(obj: Context, rate, duration, count, seed, accounts, fraud_share, start_time, out, quiet):
    """Produce a realistic synthetic stream with injected fraud scenarios."""
    import itertools
    import json

    from riskcockpit.streams.generator import SyntheticStream, pace

    settings = obj.settings(**{"generator.rate": rate, "generator.seed": seed, "generator.accounts": accounts,
                               "generator.fraud_share": fraud_share})
    g = settings.generator
    stream = iter(SyntheticStream(seed=g.seed, accounts=g.accounts, rate=g.rate, start=_parse_time(start_time),
                                  fraud_share=g.fraud_share))
    if count is not None:
        stream = itertools.islice(stream, count)
    if rate is not None or count is None:
        stream = pace(stream, g.rate, duration)
    if out:
        for record in stream:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        return
    from riskcockpit.streams.producer import produce

    _stop_on_sigterm(lambda: None)
    try:
        sent = produce(settings.kafka.servers, stream, total=count, show_progress=not quiet,
                       description=f"generating (seed {g.seed})")
    except KeyboardInterrupt:
        return
    if not quiet:
        click.echo(f"produced {sent} transactions to {settings.kafka.servers}", err=True)


@cli.command()
@click.argument("kind", type=click.Choice(["alerts", "scores", "dlq", "actions", "deliveries", "silences", "configs"]))
@click.option("--since", help="from this time (ISO-8601 or epoch ms), inclusive")
@click.option("--until", help="to this time, exclusive")
@click.option("--tier", type=click.IntRange(0, 3), help="only this tier (alerts, scores)")
@click.option("--account", help="only this account (alerts, scores)")
@click.option("--limit", type=click.IntRange(1), default=100_000, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True)
@click.option("--verify", is_flag=True,
              help="alerts, scores: recompute each decision from its stored reasons with the config it names "
                   "(stored in `configs` by the worker that ran it, or the one at hand) and add a `recomputed` "
                   "column (ok / differs / no config); exit 1 if any differs")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="with --verify: a scoring config file at hand besides the stored ones [default: the config "
                   "folder's]")
@click.pass_obj
def audit(obj: Context, kind, since, until, tier, account, limit, fmt, verify, config_file):
    """Print the history of decisions (alerts, scores), rejected records (dlq), people's actions,
    webhook delivery attempts (deliveries), silence changes (silences) or the scoring configs
    workers ran (configs)."""
    from riskcockpit.audit import VERIFIABLE, Unreachable, fetch, render, stored_configs
    from riskcockpit.audit import verify as verify_rows

    if (verify or config_file) and kind not in VERIFIABLE:
        raise click.UsageError(f"--verify and --config apply to {' and '.join(VERIFIABLE)}, not {kind}")
    if config_file and not verify:
        raise click.UsageError("--config needs --verify")
    settings = obj.settings()
    if verify:
        from riskcockpit.cmd_offline import scoring_config

        config = scoring_config(obj, config_file)
    try:
        rows = fetch(settings, kind, _parse_time(since), _parse_time(until), tier, account, limit)
        if verify:
            usable, unusable = stored_configs(fetch(settings, "configs", None, None, None, None, limit))
    except Unreachable as exc:
        raise click.ClickException(str(exc)) from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if not verify:
        click.echo(render(rows, kind, fmt))
        return
    tally = verify_rows(rows, {**usable, config.hash: config}, unusable)
    click.echo(render(rows, kind, fmt, extra=("recomputed",)))
    click.echo(f"verified {len(rows)} decisions: {tally['ok']} recompute to the stored score and tier, "
               f"{tally['differs']} differ, {tally['no config']} name a config neither stored nor at hand "
               f"({len(usable)} stored, {config.hash} at hand)", err=True)
    if tally["differs"]:
        raise SystemExit(1)


from riskcockpit.cmd_alerting import alerting, notifier, silence, webhook  # noqa: E402  (commands of their own modules)
from riskcockpit.cmd_offline import backfill, backtest, indicators_group, labels, replay  # noqa: E402

for command in (backtest, backfill, replay, labels, indicators_group, notifier, alerting, silence, webhook):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="riskcockpit")


if __name__ == "__main__":
    main()
