"""Versioned schema migrations, applied in order at start by every process that writes.

Each file ``migrations/NNNN_name.sql`` holds statements separated by ``;`` at line ends, with
``{db}`` standing for the configured database. Applied versions are recorded in
``schema_migrations``; a version is never applied twice.
"""

from __future__ import annotations

import re
from importlib import resources

from clickhouse_connect.driver.client import Client

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def available() -> list[tuple[int, str, str]]:
    found = []
    for item in resources.files("riskcockpit.store").joinpath("migrations").iterdir():
        match = _NAME.match(item.name)
        if match:
            found.append((int(match[1]), match[2], item.read_text(encoding="utf-8")))
    return sorted(found)


def _statements(sql: str) -> list[str]:
    no_comments = "\n".join(line.split("--", 1)[0] for line in sql.splitlines())
    return [s.strip() for s in re.split(r";\s*(?:\n|$)", no_comments) if s.strip()]


def migrate(client: Client, database: str) -> list[int]:
    """Apply pending migrations; returns the versions applied now."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = MergeTree ORDER BY version"
    )
    done = {row[0] for row in client.query(f"SELECT version FROM {database}.schema_migrations").result_rows}
    applied = []
    for version, name, sql in available():
        if version in done:
            continue
        for statement in _statements(sql):
            client.command(statement.replace("{db}", database))
        client.insert(f"{database}.schema_migrations", [[version, name]], column_names=["version", "name"])
        applied.append(version)
    return applied
