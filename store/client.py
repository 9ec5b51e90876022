"""One way to reach ClickHouse: a server URL in production, embedded chdb by default.

Only one process may open a chdb path; a second one fails on the path's lock. In embedded
mode the cockpit process owns the store (and runs the sink inside it); every other process
reaches the data through the cockpit's HTTP API. See :class:`StoreLocked`.
"""

from __future__ import annotations

import fcntl
import threading
from pathlib import Path
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from riskcockpit.store.settings import StoreSettings


class StoreUnavailable(RuntimeError):
    """The store cannot be opened or reached; the message says which one and why."""


class StoreLocked(StoreUnavailable):
    """Another process holds the embedded store (chdb allows one process per path)."""


_clients: dict[str, Client] = {}
_lock = threading.Lock()


def describe(store: StoreSettings) -> str:
    if store.url:
        parsed = urlparse(store.url)
        return f"ClickHouse server {parsed.hostname}:{parsed.port or 8123}"
    return f"embedded ClickHouse (chdb) at {store.chdb_path}"


def connect(store: StoreSettings) -> Client:
    """A client for the configured store; one per process for chdb (the lock is per process)."""
    target = store.url or f"chdb:{store.chdb_path}"
    with _lock:
        if target in _clients:
            return _clients[target]
        client = _open(store)
        _clients[target] = client
        return client


def held_by_another_process(path: Path) -> bool:
    """ClickHouse holds an flock on ``<path>/status`` while it has the path open; probe it.

    Probing first keeps chdb from printing its own lock error, and tells "locked" apart from
    other failures, which chdb reports alike.
    """
    status = path / "status"
    if not status.exists():
        return False
    with open(status, "rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _open(store: StoreSettings) -> Client:
    if store.url:
        try:
            client = clickhouse_connect.get_client(dsn=store.url, database="default")
            client.command(f"CREATE DATABASE IF NOT EXISTS {store.database}")
            return client
        except Exception as exc:  # the driver raises several unrelated types for "not reachable"
            raise StoreUnavailable(f"{describe(store)} is not reachable: {exc}") from exc
    path: Path = store.chdb_path
    path.mkdir(parents=True, exist_ok=True)
    if held_by_another_process(path):
        raise StoreLocked(f"{describe(store)} is held by another process (the cockpit owns it while the stack runs)")
    try:
        client = clickhouse_connect.get_client(interface="chdb", path=str(path))
        client.command(f"CREATE DATABASE IF NOT EXISTS {store.database}")
        return client
    except Exception as exc:
        raise StoreUnavailable(f"{describe(store)} cannot be opened: {exc}") from exc
