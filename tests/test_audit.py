"""The auditor's check of stored decisions: ``riskcockpit audit … --verify``."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from riskcockpit.audit import render, stored_configs, verify
from riskcockpit.cli import Context, audit
from riskcockpit.indicators.base import tx_at
from riskcockpit.indicators.scoring import Scorer, ScoringConfig

CONFIG = ScoringConfig.model_validate({
    "indicators": {"large_amount": {"weight": 40, "params": {"threshold": 1000}},
                   "round_amount": {"weight": 17}},
    "rules": [{"name": "sanctioned_country", "field": "country", "values": ["KP"], "min_tier": 3}],
    "models": {"anomaly": {"enabled": False}, "supervised": {"enabled": False}}})


def stored(record: dict) -> dict:
    """A decision as the store returns it: reasons as JSON text, the score as Float32."""
    return {**record, "reasons": json.dumps(record["reasons"]), "score": float(np.float32(record["score"]))}


def test_verify_marks_each_decision_ok_differing_or_of_another_config():
    scorer = Scorer(CONFIG)
    rows = [stored(scorer.score(tx_at(m, amount, **extra), {})) for m, amount, extra in
            [(0, 5000.0, {}), (1, 2345.67, {}), (2, 20.0, {"country": "KP"}), (3, 12.5, {})]]
    assert [(r["tier"], len(r["reasons"]) > 2) for r in rows] == [(1, True), (1, True), (3, True), (0, False)]
    assert rows[0]["score"] != 50.2  # 40 and 17 points: 50.2, which Float32 does not keep exactly
    edited = dict(rows[0], tier=3)  # a decision altered after the fact
    other = dict(rows[3], config_hash="0123456789ab")
    forged = dict(rows[3], reasons=json.dumps([{"indicator": "made_up", "value": 1.0}]))
    tally = verify([*rows, edited, other, forged], {CONFIG.hash: CONFIG})
    assert [r["recomputed"] for r in rows] == ["ok"] * 4
    assert edited["recomputed"] == "differs: score 50.2, tier 1"
    assert other["recomputed"] == "config 0123456789ab not at hand"
    assert forged["recomputed"] == f"differs: reason 'made_up' is not an indicator of config {CONFIG.hash}"
    assert tally == {"ok": 4, "differs": 2, "no config": 1}
    assert render([edited], "scores", "csv", extra=("recomputed",)).splitlines()[0].endswith(",scored_at,recomputed")


def test_stored_configs_load_by_hash_and_say_why_one_cannot_be_used():
    as_stored = {"config_hash": CONFIG.hash, "config": json.dumps(CONFIG.model_dump(mode="json"), sort_keys=True)}
    tampered = {"config_hash": "0123456789ab", "config": as_stored["config"]}
    retired = {"config_hash": "ba9876543210", "config": json.dumps({"indicators": {"retired_indicator": {"weight": 5}}})}
    usable, unusable = stored_configs([as_stored, tampered, retired])
    assert usable == {CONFIG.hash: CONFIG}
    assert unusable["0123456789ab"] == f"stored config 0123456789ab hashes to {CONFIG.hash}"
    assert unusable["ba9876543210"].startswith("stored config ba9876543210 does not load")
    row = stored(Scorer(CONFIG).score(tx_at(0, 5000.0), {})) | {"config_hash": "ba9876543210"}
    verify([row], usable, unusable)
    assert row["recomputed"] == unusable["ba9876543210"]


def test_verify_applies_to_decisions_only_and_config_needs_it():
    runner = CliRunner()
    dlq = runner.invoke(audit, ["dlq", "--verify"], obj=Context(None, {}))
    assert dlq.exit_code == 2 and "--verify and --config apply to alerts and scores, not dlq" in dlq.output
    alone = runner.invoke(audit, ["scores", "--config", __file__], obj=Context(None, {}))
    assert alone.exit_code == 2 and "--config needs --verify" in alone.output
