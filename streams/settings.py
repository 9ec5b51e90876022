"""The settings of the streaming processes (sections ``worker``, ``sink`` and ``generator`` of
``riskcockpit.yaml``)."""

from __future__ import annotations

from pydantic import Field

from riskcockpit.ground.settings import Section


class WorkerSettings(Section):
    app_id: str = "riskcockpit"
    max_record_bytes: int = Field(65536, ge=1024)
    max_amount: float = Field(1e12, gt=0, allow_inf_nan=False,
                              description="larger amounts are a unit mistake and go to transactions.dlq")
    web_port: int | None = Field(None, description="Faust's own web/metrics port; empty disables it")
    decisions_kept: int = Field(200_000, ge=1, description="decisions per partition a label can still teach")


class SinkSettings(Section):
    group_id: str = "riskcockpit-sink"
    batch_size: int = Field(5000, ge=1)
    max_wait_ms: int = Field(500, ge=10)


class GeneratorSettings(Section):
    rate: float = Field(200.0, gt=0)
    accounts: int = Field(5000, ge=10)
    fraud_share: float = Field(0.01, ge=0, le=0.5)
    seed: int = 7
