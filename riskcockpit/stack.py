"""``riskcockpit run``: the whole stack on one machine, stopped cleanly by Ctrl-C.

Processes: the embedded Kafka broker (unless ``kafka.bootstrap`` names one), a Faust worker,
the cockpit (which owns the embedded store and runs the sink inside it; with a ClickHouse
server the sink runs as its own process), the alert notifier and the synthetic generator. Each is the same
``riskcockpit <command>`` a deployment would run separately.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from rich.console import Console

from riskcockpit.broker import EmbeddedBroker, port_open
from riskcockpit.ground import topics
from riskcockpit.ground.kafka import ensure_topics
from riskcockpit.settings import Settings

console = Console(stderr=True)


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "riskcockpit", *args], env=env, start_new_session=True)


def _stop(procs: list[tuple[str, subprocess.Popen]], timeout: float = 20.0) -> None:
    for _, proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for name, proc in reversed(procs):
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            console.print(f"[yellow]{name} did not stop in time; killing it")
            proc.kill()
            proc.wait()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run(settings: Settings, generate: bool = True) -> int:
    # Stop on Ctrl-C and on SIGTERM alike, also when started in the background, where a shell
    # leaves SIGINT ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    broker = None
    env = dict(os.environ, RISKCOCKPIT_CONFIG_DIR=str(settings.config_dir),
               RISKCOCKPIT_DATA_DIR=str(settings.data_dir.resolve()))
    if settings.kafka.embedded:
        broker = EmbeddedBroker.from_settings(settings)
        if not broker.running():
            console.print(f"starting Kafka {broker.bootstrap} (data in {broker.data_dir}) …")
            broker.start()
        else:
            broker = None  # someone else started it; leave it running on exit
    ensure_topics(settings.kafka.servers, settings.kafka.partitions, topics.ALL)
    if port_open(settings.cockpit.host, settings.cockpit.port):
        console.print(f"[red]{settings.cockpit.url} is already in use; stop the other cockpit or set cockpit.port")
        if broker:
            broker.stop()
        return 2
    procs: list[tuple[str, subprocess.Popen]] = [("worker", _spawn(["worker"], env))]
    if not settings.store.embedded:
        procs.append(("sink", _spawn(["sink"], env)))
    procs.append(("cockpit", _spawn(["cockpit"], env)))
    # Receivers whose secrets are not in the environment dead-letter their notifications
    # instead of stopping the demo; `riskcockpit audit deliveries` shows them.
    procs.append(("notifier", _spawn(["notifier", "--allow-missing-secrets"], env)))
    if generate:
        g = settings.generator
        procs.append(("generator", _spawn(["generate", "--rate", str(g.rate), "--seed", str(g.seed), "--quiet"], env)))
    while not port_open(settings.cockpit.host, settings.cockpit.port) and time.monotonic() - started < 120:
        time.sleep(0.5)
    console.print(f"[bold green]cockpit at {settings.cockpit.url}[/] (up in {time.monotonic() - started:.1f}s); "
                  "Ctrl-C stops everything")
    code = 0
    try:
        while True:
            for name, proc in procs:
                if proc.poll() is not None:
                    console.print(f"[red]{name} exited with {proc.returncode}; stopping the stack")
                    raise SystemExit(1)
            time.sleep(1)
    except KeyboardInterrupt:
        console.print("stopping …")
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        _stop(procs)
        if broker:
            broker.stop()
        console.print("stopped")
    return code
