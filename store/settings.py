"""The store's settings (section ``store`` of ``riskcockpit.yaml``): a ClickHouse server, or the
embedded one (chdb) in a folder of this machine."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

from pydantic import Field, model_validator

from riskcockpit.ground.settings import Section


class StoreSettings(Section):
    url: str | None = Field(None, description="http(s)://user:pass@host:8123/db of a ClickHouse server")
    database: str = Field("riskcockpit", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    path: Path | None = Field(None, description="folder of the embedded store (chdb); default: data_dir/chdb")

    @model_validator(mode="after")
    def _database_from_url(self):
        # A URL that names a database wins: operators write one URL, not two settings.
        path = urlparse(self.url).path.strip("/") if self.url else ""
        if path:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", path):
                raise ValueError(f"database {path!r} in the URL is not a plain identifier")
            object.__setattr__(self, "database", path)
        return self

    @property
    def embedded(self) -> bool:
        return not self.url

    @property
    def chdb_path(self) -> Path:
        return Path(self.path or ".data/chdb").resolve()
