"""Real components for the tests: an Apache Kafka broker (KRaft) and the embedded ClickHouse.

The broker is the same ``EmbeddedBroker`` that ``riskcockpit kafka start`` runs, on free
ports. chdb admits one open path per process, so the test process keeps one session-wide
store and isolates tests by database; processes under test (cockpit) get their own paths.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from riskcockpit.broker import EmbeddedBroker, free_port
from riskcockpit.settings import load_settings

REPO = Path(__file__).resolve().parents[1]
# Fixtures that start a broker or processes: a test that asks for one is an integration test.
INTEGRATION_FIXTURES = {"kafka", "fresh_kafka", "processes"}


def pytest_collection_modifyitems(items):
    for item in items:
        if INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _unit_tests_start_no_process(request, monkeypatch):
    """A test not marked ``integration`` that starts a process (a broker, a worker, the stack)
    fails, so ``pytest -m "not integration"`` stays quick and needs no broker."""
    if request.node.get_closest_marker("integration") is None:
        def refuse(*args, **kwargs):
            raise AssertionError("this test starts a process: mark it integration "
                                 "(pytestmark = pytest.mark.integration)")
        monkeypatch.setattr(subprocess, "Popen", refuse)


def start_broker(data_dir: Path, partitions: int = 4) -> EmbeddedBroker:
    broker = EmbeddedBroker(data_dir, port=free_port(), controller_port=free_port(), partitions=partitions,
                            heap="512m")
    broker.start()
    return broker


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    """One broker for tests that use their own topic contents (unique ids, own consumer groups)."""
    broker = start_broker(tmp_path_factory.mktemp("kafka"))
    yield broker
    broker.stop()


@pytest.fixture
def fresh_kafka(tmp_path_factory):
    """A broker of its own, for tests that read whole topics (pipeline, DLQ, crash recovery)."""
    broker = start_broker(tmp_path_factory.mktemp("kafka-fresh"))
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def store_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("store")


@pytest.fixture
def env(monkeypatch, store_dir):
    """Environment for settings in this process: session store, a database of the test's own."""
    values = {
        "RISKCOCKPIT_DATA_DIR": str(store_dir),
        "RISKCOCKPIT_STORE__DATABASE": f"t_{uuid.uuid4().hex[:10]}",
    }
    for key in [k for k in os.environ if k.startswith("RISKCOCKPIT_")]:
        monkeypatch.delenv(key)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


@pytest.fixture
def settings(env):
    return load_settings()


def crashed_agent(output: str) -> str | None:
    """The report of a crashed Faust agent in a process's ``output``, or None. Faust logs the
    crash and restarts the agent, so a worker with a dead stage would otherwise look healthy."""
    crash = output.find("Crashed reason=")
    return None if crash < 0 else output[max(0, crash - 300):crash + 1500]


class Processes:
    """``riskcockpit`` subprocesses, stopped (and their output kept) at the end of a test."""

    def __init__(self, root: Path):
        self.root = root
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.root / f"{name}-{len(self.procs)}.log", "wb")
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("RISKCOCKPIT_")} | env
        proc = subprocess.Popen([sys.executable, "-m", "riskcockpit", *args], env=full_env, stdout=log,
                                stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def output(self, i: int) -> str:
        """What process ``i`` has written so far."""
        return (self.root / f"{self.procs[i][0]}-{i}.log").read_text(errors="replace")

    def log(self, name: str) -> str:
        return "\n".join(self.output(i) for i, (n, _) in enumerate(self.procs) if n == name)

    def assert_alive(self) -> None:
        """Every process runs, and none has a crashed Faust agent (see :func:`crashed_agent`)."""
        for i, (name, proc) in enumerate(self.procs):
            text = self.output(i)
            if proc.poll() is not None and proc.returncode not in (0, -9, -15):
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{text[-3000:]}")
            if crash := crashed_agent(text):
                raise AssertionError(f"{name} has a crashed agent:\n{crash}")

    def tails(self, chars: int = 2500) -> str:
        """The end of every process's output, for a failure message."""
        return "\n".join(f"--- {name} (exit {proc.poll()}):\n{self.output(i)[-chars:]}"
                         for i, (name, proc) in enumerate(self.procs))

    def stop_all(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in reversed(self.procs):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def processes(tmp_path):
    procs = Processes(tmp_path)
    yield procs
    try:
        procs.assert_alive()  # a crash after the test's last look counts too
    finally:
        procs.stop_all()


def wait_for(predicate, timeout: float, interval: float = 0.5, what: str = "condition", processes=None):
    """Poll until ``predicate()`` is truthy; fail at once if one of ``processes`` died."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if processes is not None:
            processes.assert_alive()
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    # The processes' own words are what explains a timeout in CI, where nothing else is kept.
    output = f"\n{processes.tails()}" if processes is not None else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r}){output}")
