"""Offline commands: ``backtest``, ``replay`` and the indicator catalog (``indicators list|show``).

Registered on the main group in :mod:`riskcockpit.cli`::

    from riskcockpit.cmd_offline import backfill, backtest, indicators_group, labels, replay
    cli.add_command(backtest)
    cli.add_command(backfill)
    cli.add_command(replay)
    cli.add_command(labels)
    cli.add_command(indicators_group)

Each command reads settings through ``obj.settings()`` (the main group's ``Context``), so
``--config-dir`` and ``--kafka`` apply as everywhere else.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path

import click

from riskcockpit.context import settings_of
from riskcockpit.ground.runtime import tune_gc
from riskcockpit.ground.yamlfile import ConfigError


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


def scoring_config(obj, config_file: str | None):
    """``config_file`` if given, else the config folder's ``indicators.yaml``; errors name the file."""
    from riskcockpit.backtest.history import BacktestError
    from riskcockpit.backtest.run import load_config_file
    from riskcockpit.indicators.scoring import load_scoring_config

    try:
        if config_file:
            return load_config_file(config_file)
        return load_scoring_config(settings_of(obj).config_dir)
    except (BacktestError, ConfigError) as exc:
        raise click.ClickException(f"scoring configuration error:\n{exc}") from None


def _load(file: str, mapping_file: str, labels: str | None = None):
    from riskcockpit.backtest.history import BacktestError, load_mapping, load_transactions

    try:
        return load_transactions(file, load_mapping(mapping_file), labels)
    except BacktestError as exc:
        raise click.ClickException(str(exc)) from None


def _load_labelled(file: str, mapping_file: str, labels: str | None, label_file: str | None,
                   label_mapping: str | None):
    """The transactions with their labels, from a column (``--labels``) or a label file."""
    from riskcockpit.backtest.history import BacktestError

    if label_file and (labels or not label_mapping):
        raise click.UsageError("--label-file needs --label-mapping, and replaces --labels")
    loaded = _load(file, mapping_file, labels)
    _report_rejected(loaded)
    if label_file:
        from riskcockpit.labels import attach, load_label_mapping, load_labels

        try:
            loaded, unmatched = attach(loaded, load_labels(label_file, load_label_mapping(label_mapping)))
        except BacktestError as exc:
            raise click.ClickException(str(exc)) from None
        if unmatched:
            click.echo(f"{unmatched} labels of {label_file} name no transaction of {file}", err=True)
    return loaded


def _label_options(command):
    """--labels, --label-file, --label-mapping and --feedback-delay, as the backtest and backfill read them."""
    for option in reversed((
        click.option("--labels", help="column holding the disposition (fraud: 1/true/yes/fraud…, "
                                      "legit: 0/false/no/legit…)"),
        click.option("--label-file", type=_FILE,
                     help="a label file as `riskcockpit labels` reads it (chargebacks, case outcomes): its verdicts "
                          "are fed back when each became known; transactions it does not name count as legitimate"),
        click.option("--label-mapping", type=_FILE,
                     help="the label file's mapping (tx_id, account_id, label [, known_at])"),
        click.option("--feedback-delay", default="7d", show_default=True,
                     help="dispositions reach the model this long after the transaction (event time), "
                          "unless the label file says when"),
    )):
        command = option(command)
    return command


def _delay_ms(feedback_delay: str) -> int:
    from riskcockpit.ground.durations import parse_duration_ms

    try:
        delay = parse_duration_ms(feedback_delay)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--feedback-delay") from None
    if delay < 0:
        raise click.BadParameter(f"must not be negative (got {feedback_delay!r})", param_hint="--feedback-delay")
    return delay


def _report_rejected(loaded) -> None:
    from riskcockpit.backtest.history import rejection_summary

    for line in rejection_summary(loaded):
        click.echo(line, err=True)


_FILE = click.Path(exists=True, dir_okay=False)


@click.command()
@click.argument("file", type=_FILE)
@click.option("--mapping", "mapping_file", required=True, type=_FILE,
              help="YAML mapping of the file's columns to the transaction schema")
@click.option("--config", "config_file", type=_FILE,
              help="a scoring config file (format of config/indicators.yaml) instead of the config folder's")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Parquet file of results; rejected rows go to OUT.rejected.jsonl")
@click.option("--baseline", "baseline_file", type=_FILE,
              help="also score with this scoring config (e.g. config/indicators.yaml, the live one) and print "
                   "how alerts per tier change; its rows go to OUT.baseline.parquet")
@_label_options
@click.option("--partitions", type=click.IntRange(1, 1024),
              help="score as a worker over this many partitions, each with its own models "
                   "[default: kafka.partitions of the settings]")
@click.option("--processes", type=click.IntRange(1, 256),
              help="processes the partitions are spread over; never changes the results [default: CPUs]")
@click.option("--test-from", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
              help="metrics only on transactions from this UTC date or time on; the rest warms the state")
@click.option("--k", "k", type=click.IntRange(1), default=100, show_default=True,
              help="entities an analyst team checks a day, for card precision@k")
@click.option("--quiet", is_flag=True, help="no progress bar")
@click.pass_obj
def backtest(obj, file, mapping_file, config_file, out, baseline_file, labels, label_file, label_mapping,
             feedback_delay, partitions, processes, test_from, k, quiet):
    """Score a CSV, Parquet or JSON-lines file of transactions with the worker's scoring core.

    Transactions are scored in event-time order with per-account state in memory, as a worker
    over --partitions partitions would: one set of models per partition. With --labels, each
    label is fed back as an analyst's disposition --feedback-delay after its transaction, and
    ROC AUC, average precision and precision / recall per tier are printed. With --baseline,
    the file is scored with that config too, and the change in alerts per tier is printed: try a
    change of thresholds, weights or rules on history before it goes live.
    """
    from riskcockpit.backtest.history import BacktestError
    from riskcockpit.backtest.metrics import format_comparison, format_metrics
    from riskcockpit.backtest.run import run_backtest
    from riskcockpit.backtest.stages import available_cpus
    from riskcockpit.indicators.scoring import Scorer
    _delay_ms(feedback_delay)
    config = scoring_config(obj, config_file)
    baseline = scoring_config(obj, baseline_file) if baseline_file else None
    partitions = partitions or settings_of(obj).kafka.partitions
    processes = min(processes or available_cpus(), partitions)
    loaded = _load_labelled(file, mapping_file, labels, label_file, label_mapping)
    scorer = Scorer(config)
    tune_gc()
    try:
        with progress_bar(len(loaded.items), f"scoring {Path(file).name}", enabled=not quiet) as progress:
            result = run_backtest(loaded, scorer, out, feedback_delay, progress, partitions, processes,
                                  test_from=test_from and test_from.replace(tzinfo=UTC), k=k)
    except BacktestError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"scored {result.scored} transactions of {loaded.rows_read} rows in {result.seconds:.1f}s "
               f"({result.rate:,.0f} tx/s; {partitions} partitions on {processes} processes; "
               f"scoring core {result.scoring_seconds:.1f} CPU-s) with config {scorer.config_hash} → {result.out}")
    if result.rejected_file:
        click.echo(f"{len(loaded.rejected)} rejected rows → {result.rejected_file}")
    if result.duplicates:
        click.echo(f"{result.duplicates} repeated tx_id answered from the dedup memory (labels fed back once)")
    if result.metrics is not None:
        click.echo(f"{result.fed_back} dispositions fed back (delay {feedback_delay})")
        click.echo(format_metrics(result.metrics))
    if baseline is not None:
        base_scorer, base_out = Scorer(baseline), Path(out).with_suffix(".baseline.parquet")
        try:
            with progress_bar(len(loaded.items), f"baseline {baseline_file}", enabled=not quiet) as progress:
                base = run_backtest(loaded, base_scorer, base_out, feedback_delay, progress, partitions, processes,
                                    write_rejects=False, test_from=test_from and test_from.replace(tzinfo=UTC), k=k)
            click.echo(f"\nbaseline {baseline_file} ({base_scorer.config_hash}) → {base_out}")
            click.echo(format_comparison(base, result, base_scorer.config_hash, scorer.config_hash))
        except BacktestError as exc:
            raise click.ClickException(str(exc)) from None


@click.command()
@click.argument("file", type=_FILE)
@click.option("--mapping", "mapping_file", required=True, type=_FILE,
              help="YAML mapping of the file's columns to the transaction schema")
@_label_options
@click.option("--processes", type=click.IntRange(1, 256), help="processes the partitions are spread over [default: CPUs]")
@click.option("--force", is_flag=True, help="write even if the worker's tables already hold state")
@click.option("--quiet", is_flag=True, help="no progress bar")
@click.pass_obj
def backfill(obj, file, mapping_file, labels, label_file, label_mapping, feedback_delay, processes, force, quiet):
    """Warm start: build the worker's state (accounts, merchants, devices, counterparties, each
    partition's models) from a historical file, learning its labels, and write it where a
    starting worker restores it. Publishes no decision; run it before the workers start."""
    from riskcockpit.backfill import BackfillRefused, build_state, write_state
    from riskcockpit.backtest.history import BacktestError
    from riskcockpit.backtest.stages import available_cpus
    from riskcockpit.indicators.scoring import Scorer

    delay = _delay_ms(feedback_delay)
    settings = settings_of(obj)
    partitions = settings.kafka.partitions
    loaded = _load_labelled(file, mapping_file, labels, label_file, label_mapping)
    scorer = Scorer(scoring_config(obj, None))
    tune_gc()
    try:
        with progress_bar(len(loaded.items), f"backfill {Path(file).name}", enabled=not quiet) as progress:
            shards, entity_states, fed_back = build_state(loaded, scorer, partitions, delay,
                                                          min(processes or available_cpus(), partitions), progress)
            accounts, entities, models = write_state(settings, shards, entity_states, force, progress)
    except (BacktestError, BackfillRefused) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        raise click.ClickException("interrupted; the state may be partly written (run again with --force)") from None
    shown = ", ".join(f"{n} {entity}s" for entity, n in entities.items())
    click.echo(f"backfilled {len(loaded.items)} transactions ({fed_back} labels learned) with config "
               f"{scorer.config_hash}: {accounts} accounts{', ' + shown if shown else ''} and the models of "
               f"{models} of {partitions} partitions written to {settings.kafka.servers}")


@click.command()
@click.argument("file", type=_FILE)
@click.option("--mapping", "mapping_file", required=True, type=_FILE,
              help="YAML mapping of the file's columns to the transaction schema")
@click.option("--speed", default="max", show_default=True,
              help="max (as fast as possible), realtime (event-time gaps) or Nx (N times faster)")
@click.option("--rejected", "rejected_file", type=click.Path(dir_okay=False),
              help="also write the rejected rows here (JSON lines: row, reason, values)")
@click.option("--quiet", is_flag=True, help="no progress bar")
@click.pass_obj
def replay(obj, file, mapping_file, speed, rejected_file, quiet):
    """Produce a file's transactions into topic `transactions`, keyed by account, in event-time order."""
    from riskcockpit.backtest.history import write_rejected
    from riskcockpit.replay import parse_speed
    from riskcockpit.replay import replay as run_replay

    try:
        parse_speed(speed)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--speed") from None
    settings = settings_of(obj)
    loaded = _load(file, mapping_file)
    _report_rejected(loaded)
    if rejected_file:
        write_rejected(loaded, Path(rejected_file))
    try:
        sent = run_replay(loaded, settings.kafka.servers, speed, show_progress=not quiet)
    except KeyboardInterrupt:
        raise click.ClickException("interrupted") from None
    except Exception as exc:  # kafka-python: NoBrokersAvailable, KafkaTimeoutError…
        raise click.ClickException(f"could not produce to {settings.kafka.servers}: {exc}") from None
    click.echo(f"produced {sent} transactions to {settings.kafka.servers} "
               f"({len(loaded.rejected)} rejected rows skipped)")


@click.command()
@click.argument("file", type=_FILE)
@click.option("--mapping", "mapping_file", required=True, type=_FILE,
              help="YAML mapping of the file's columns: tx_id, account_id, label [, known_at]")
@click.option("--dry-run", is_flag=True, help="read and check the file, publish nothing")
@click.option("--quiet", is_flag=True, help="no progress bar")
@click.pass_obj
def labels(obj, file, mapping_file, dry_run, quiet):
    """Feed a file of verdicts (chargebacks, case outcomes) to the live models through
    `risk.dispositions`. Each teaches the worker that scored the transaction, from its own
    record of the decision; a file with a bad row is refused whole."""
    from riskcockpit.backtest.history import BacktestError
    from riskcockpit.labels import load_label_mapping, load_labels, publish

    try:
        found = load_labels(file, load_label_mapping(mapping_file))
    except BacktestError as exc:
        raise click.ClickException(str(exc)) from None
    frauds = sum(label.is_fraud for label in found)
    if dry_run:
        click.echo(f"{len(found)} labels ({frauds} fraud) read from {file}; nothing published (--dry-run)")
        return
    settings = settings_of(obj)
    try:
        with progress_bar(len(found), f"labels {Path(file).name}", enabled=not quiet) as progress:
            sent = publish(found, settings.kafka.servers, Path(file), progress)
    except KeyboardInterrupt:
        raise click.ClickException("interrupted; some labels may have been published (running the file "
                                   "again teaches each decision once)") from None
    except Exception as exc:  # kafka-python: NoBrokersAvailable, KafkaTimeoutError…
        raise click.ClickException(f"could not produce to {settings.kafka.servers}: {exc}") from None
    click.echo(f"published {sent} labels ({frauds} fraud) to {settings.kafka.servers} topic risk.dispositions")


@click.group("indicators")
def indicators_group():
    """The indicator library: what each one looks for, its parameters and state."""


def _active(obj) -> dict:
    from riskcockpit.indicators.scoring import load_scoring_config

    try:
        return dict(load_scoring_config(settings_of(obj).config_dir).indicators)
    except ConfigError as exc:
        raise click.ClickException(f"scoring configuration error:\n{exc}") from None


def _regimes(obj) -> str:
    """How an indicator's value reaches the score under the active config, regime by regime."""
    from riskcockpit.indicators.scoring import load_scoring_config

    models = load_scoring_config(settings_of(obj).config_dir).models
    ev, sup = models.evidence, models.supervised
    carried = (f", added to what the account's recent transactions carry (halving every {ev.incident_half_life})"
               if ev.carries else "")
    text = (f"up to one unit of evidence by the rarity of its value on recent traffic (none below 1 in "
            f"{ev.common:g}; a hit at its weight for the first {ev.warmup} transactions of a partition){carried}; "
            f"score 100·(1 − e^(−units/{ev.score_scale:g})): regime label-free")
    if sup.enabled:
        text += (f"; from {sup.min_labels} confirmed frauds the supervised model takes a growing share (blended), "
                 f"most of it from about {sup.full_after} (supervised); each score record names its regime")
    return text


@indicators_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON array instead of a table")
@click.pass_obj
def indicators_list(obj, as_json):
    """Every indicator with its family, typology, and weight in the active scoring config."""
    from riskcockpit.catalog import catalog

    active = _active(obj)
    rows = []
    for entry in sorted(catalog(), key=lambda e: e["name"]):
        item = active.get(entry["name"])
        rows.append({"name": entry["name"], "family": entry["family"], "typology": entry["typology"],
                     "requires": entry["requires"], "entity": entry["entity"], "state_bytes": entry["state_bytes"],
                     "configured": item is not None,
                     "weight": item.weight if item else None, "enabled": bool(item and item.enabled)})
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    width = max([len(r["name"]) for r in rows] + [9])
    fam = max([len(r["family"]) for r in rows] + [6])
    click.echo(f"{'indicator':<{width}}  {'family':<{fam}}  {'weight':>6}  {'enabled':<14}  typology")
    for r in rows:
        weight = f"{r['weight']:g}" if r["weight"] is not None else "-"
        enabled = ("yes" if r["enabled"] else "no") if r["configured"] else "not configured"
        click.echo(f"{r['name']:<{width}}  {r['family']:<{fam}}  {weight:>6}  {enabled:<14}  {r['typology']}")


@indicators_group.command("show")
@click.argument("name")
@click.pass_obj
def indicators_show(obj, name):
    """One indicator: typology, parameters with defaults, state kept, fields required, example."""
    from riskcockpit.catalog import STRESS, describe, fields_required
    from riskcockpit.indicators.base import REGISTRY

    if name not in REGISTRY:
        click.echo(f"Error: {name}: unknown indicator; known: {', '.join(sorted(REGISTRY))}", err=True)
        sys.exit(2)
    e = describe(REGISTRY[name])
    item = _active(obj).get(name)
    configured = (f"weight {item.weight:g}, {'enabled' if item.enabled else 'disabled'}"
                  + (f", params {json.dumps(item.params, default=str)}" if item.params else "")
                  if item else "not configured (contributes nothing)")
    lines = [e["name"], "",
             f"family:             {e['family']}",
             f"typology targeted:  {e['typology']}",
             f"fields required:    {fields_required(e)}",
             f"state kept per:     {e['entity']}",
             f"active config:      {configured}",
             f"in the score:       {_regimes(obj)}",
             "", e["description"] or "(no description)", "", "parameters:"]
    width = max([len(p["name"]) for p in e["params"]] + [4])
    for p in e["params"]:
        bounds = f" ({p['bounds']})" if p["bounds"] else ""
        lines.append(f"  {p['name']:<{width}}  {p['type']:<8} default {p['default']!s:<10} {p['description']}{bounds}")
    if not e["params"]:
        lines.append("  (none)")
    origin = "" if e["state_origin"] == "state_doc" else " (derived: no state_doc)"
    lines += ["", f"state kept{origin}: {e['state']}",
              f"state size: at most {e['state_bytes']:,} bytes of JSON per {e['entity']} ({STRESS})"]
    if e["example"]:
        lines += ["", "example:", *("  " + line for line in e["example"].splitlines())]
    click.echo("\n".join(lines))
