"""The cockpit's settings (section ``cockpit`` of ``riskcockpit.yaml``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from riskcockpit.ground.settings import Section


class CockpitSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8050, ge=1, le=65535)
    refresh_seconds: float = Field(2.0, gt=0)
    language: Literal["en", "zh"] = "en"
    table_rows: int = Field(200, ge=1, le=5000)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"
