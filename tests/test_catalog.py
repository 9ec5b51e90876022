"""The indicator catalog: ``riskcockpit indicators list|show`` and the generated docs/indicators.md."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest
import yaml
from click.testing import CliRunner
from pydantic import Field

from riskcockpit import catalog
from riskcockpit.cli import Context
from riskcockpit.cmd_offline import indicators_group
from riskcockpit.ground.durations import DurationMs
from riskcockpit.ground.settings import DEFAULT_CONFIG_DIR
from riskcockpit.indicators.base import REGISTRY, Indicator, Params

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "indicators.md"


@pytest.fixture(autouse=True)
def _clean_env(env):
    """No RISKCOCKPIT_* from the machine."""


@pytest.fixture
def config_dir(tmp_path) -> Path:
    """A config folder whose scoring config sets large_amount to 33 points and disables structuring."""
    folder = tmp_path / "config"
    folder.mkdir()
    shutil.copy(DEFAULT_CONFIG_DIR / "riskcockpit.yaml", folder / "riskcockpit.yaml")
    scoring = {"indicators": {"large_amount": {"weight": 33, "params": {"threshold": 20000}},
                              "structuring": {"weight": 60, "enabled": False},
                              "count_velocity": {"weight": 12.5}}}
    (folder / "indicators.yaml").write_text(yaml.safe_dump(scoring))
    return folder


def invoke(args, config_dir=None):
    return CliRunner().invoke(indicators_group, args, obj=Context(str(config_dir) if config_dir else None, {}))


def test_list_shows_every_indicator_with_the_active_weights(config_dir):
    result = invoke(["list"], config_dir)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["indicator", "family", "weight", "enabled", "typology"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == set(REGISTRY)
    assert rows["large_amount"].split()[1:4] == ["amount", "33", "yes"]
    assert rows["structuring"].split()[1:4] == ["amount", "60", "no"]
    assert rows["count_velocity"].split()[1:4] == ["velocity", "12.5", "yes"]
    assert rows["new_device"].split()[2:5] == ["-", "not", "configured"]
    assert REGISTRY["large_amount"].typology in rows["large_amount"]


def test_list_json(config_dir):
    result = invoke(["list", "--json"], config_dir)
    assert result.exit_code == 0, result.output
    entries = {e["name"]: e for e in json.loads(result.output)}
    assert set(entries) == set(REGISTRY)
    assert entries["large_amount"] == {"name": "large_amount", "family": "amount",
                                       "typology": REGISTRY["large_amount"].typology, "requires": [],
                                       "entity": "account", "state_bytes": entries["large_amount"]["state_bytes"],
                                       "configured": True, "weight": 33.0, "enabled": True}
    assert entries["large_amount"]["state_bytes"] < 100 and entries["fan_in"]["state_bytes"] > 100
    assert (entries["structuring"]["configured"], entries["structuring"]["enabled"]) == (True, False)
    new_device = entries["new_device"]
    assert (new_device["configured"], new_device["weight"], new_device["enabled"]) == (False, None, False)
    assert new_device["requires"] == ["device_id"]
    assert entries["merchant_compromise"]["entity"] == "merchant" and entries["device_shared"]["entity"] == "device"


def test_list_uses_the_repository_config_by_default():
    from riskcockpit.indicators.scoring import load_scoring_config

    entries = {e["name"]: e for e in json.loads(invoke(["list", "--json"]).output)}
    for name, item in load_scoring_config(DEFAULT_CONFIG_DIR).indicators.items():
        assert (entries[name]["weight"], entries[name]["enabled"]) == (item.weight, item.enabled)


def test_show_describes_one_indicator(config_dir):
    result = invoke(["show", "large_amount"], config_dir)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "family:             amount" in out
    assert f"typology targeted:  {REGISTRY['large_amount'].typology}" in out
    assert "fields required:    the contract's required fields (tx_id, ts, account_id, amount)" in out
    assert 'active config:      weight 33, enabled, params {"threshold": 20000}' in out
    assert "threshold  float    default 50000.0    hit at or above this amount (> 0)" in out
    assert ("in the score:       up to one unit of evidence by the rarity of its value on recent traffic "
            "(none below 1 in 20") in out
    assert "added to what the account's recent transactions carry (halving every 1h)" in out
    assert "from 20 confirmed frauds the supervised model takes a growing share (blended)" in out
    # other engineers document state with ``state_doc``; without one, the stateless indicator is recognised
    if getattr(REGISTRY["large_amount"], "state_doc", None):
        assert f"state kept: {' '.join(REGISTRY['large_amount'].state_doc.split())}" in out
    else:
        assert "state kept (derived: no state_doc): none (stateless)" in out
    assert ">>> LargeAmount(threshold=1000).evaluate({}, tx_at(0, 1500)).hit" in out


def test_show_durations_required_fields_and_derived_state(config_dir):
    velocity = invoke(["show", "count_velocity"], config_dir).output
    assert "window" in velocity and "duration default 10m" in velocity
    if not getattr(REGISTRY["count_velocity"], "state_doc", None):
        assert "per account, JSON `{e: list of [int]" in velocity and "bounded by `cap`" in velocity
    device = invoke(["show", "new_device"], config_dir).output
    assert "and device_id (else: not applicable)" in device
    assert "active config:      not configured (contributes nothing)" in device


def test_show_unknown_indicator_exits_2_listing_the_known_ones():
    result = invoke(["show", "nope"])
    assert result.exit_code == 2
    assert f"nope: unknown indicator; known: {', '.join(sorted(REGISTRY))}" in result.output


class _Documented(Indicator):
    """Counts an account's weekend payments.

    >>> 1 + 1
    2
    """

    name = "weekend_counter"
    family = "time"
    typology = "tests of the catalog"
    requires: ClassVar[tuple[str, ...]] = ("channel",)
    state_doc = """The number of weekend payments seen,
        one integer per account."""

    class Params(Params):
        window: DurationMs = Field(86_400_000, ge=60_000, description="how far back")

    def score_one(self, state, tx):
        return self.signal(None, False, "")

    def learn_one(self, state, tx):
        state["n"] = state.get("n", 0) + 1


def test_state_doc_wins_over_derivation_and_new_indicators_appear(monkeypatch):
    monkeypatch.setitem(REGISTRY, "weekend_counter", _Documented)
    entry = catalog.describe(_Documented)
    assert (entry["state"], entry["state_origin"]) == (
        "The number of weekend payments seen, one integer per account.", "state_doc")
    assert entry["params"] == [{"name": "window", "type": "duration", "default": "1d", "bounds": ">= 1m",
                                "description": "how far back"}]
    assert entry["example"] == ">>> 1 + 1\n2" and entry["summary"] == "Counts an account's weekend payments."
    markdown = catalog.render_markdown()
    assert "### weekend_counter" in markdown and "**State kept:** The number of weekend payments seen" in markdown
    assert "| `window` | duration | `1d` | >= 1m | how far back |" in markdown
    assert "weekend_counter" in invoke(["list"]).output


class _Stateless(Indicator):
    """Always quiet.

    >>> True
    True
    """

    name, family, typology = "quiet", "test", "nothing"

    def score_one(self, state, tx):
        return self.signal(0.0, False, "")

    def learn_one(self, state, tx):
        pass  # stateless


class _Undocumented(_Stateless):
    class Params(Params):
        cap: int = Field(10, ge=1, description="events kept per entity")

    def learn_one(self, state, tx):
        state.setdefault("e", []).append([tx.ts_ms, tx.country])
        state.setdefault("by_country", {})[tx.country] = 1


def test_state_kept_is_derived_when_an_indicator_does_not_document_it():
    assert catalog.state_kept(_Stateless) == ("none (stateless)", "derived")
    text, origin = catalog.state_kept(_Undocumented)
    assert origin == "derived"
    assert text == ("per account, JSON `{e: list of [int, str], by_country: map of str to int}`; see the description "
                    "for what it means; bounded by `cap` (events kept per entity).")


def test_every_indicator_is_documented_enough_for_the_catalog():
    missing = [f"{e['name']}: {what}" for e in catalog.catalog()
               for what, ok in (("family", e["family"]), ("typology", e["typology"]),
                                ("docstring", e["summary"]), ("docstring example", e["example"]))
               if not ok]
    assert not missing, "indicators lacking what the catalog shows:\n" + "\n".join(missing)


def test_docs_do_not_drift_from_the_registry():
    expected = catalog.render_markdown()
    actual = DOCS.read_text(encoding="utf-8") if DOCS.exists() else ""
    assert actual == expected, (f"{DOCS.relative_to(REPO)} is out of date with the indicator registry; "
                                f"regenerate it with: {catalog.REGENERATE}")


@pytest.mark.integration  # runs the module in a process of its own
def test_module_entry_point_prints_the_markdown():
    out = subprocess.run([sys.executable, "-m", "riskcockpit.catalog"], capture_output=True, text=True, cwd=REPO,
                         check=True).stdout
    assert out == catalog.render_markdown()
    assert out.startswith("# Indicators\n")
