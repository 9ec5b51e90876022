"""The indicator catalog: what each registered indicator looks for, its parameters and its state.

Everything comes from the registry (``riskcockpit.indicators.base.REGISTRY``): class attributes, the pydantic
params model (defaults, bounds, field descriptions) and the docstring (description, example).
``docs/indicators.md`` is generated from it::

    python -m riskcockpit.catalog > docs/indicators.md

and a test fails when the committed file differs from :func:`render_markdown`.

"State kept" is an indicator's ``state_doc`` class attribute when it has one. Otherwise it is
derived: an indicator whose state stays empty after learning a complete transaction is
stateless; for the others the class docstring's prose describes what is kept, and the
parameters that bound the state (caps, memories) are listed.
"""

from __future__ import annotations

import ast
import functools
import inspect
import json
import random
import sys
import textwrap
from collections import Counter
from typing import Any

from pydantic import BaseModel, BeforeValidator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

import riskcockpit.indicators  # noqa: F401  (registers the library)
from riskcockpit.ground.durations import parse_duration_ms
from riskcockpit.indicators.base import ENTITY_FIELDS, REGISTRY, Indicator, tx_at

CONTRACT_REQUIRED = ("tx_id", "ts", "account_id", "amount")
REGENERATE = "python -m riskcockpit.catalog > docs/indicators.md"
# pydantic's Field(gt=…, ge=…, lt=…, le=…) become annotated_types metadata named after the bound
_BOUNDS = (("Gt", "gt", ">"), ("Ge", "ge", ">="), ("Lt", "lt", "<"), ("Le", "le", "<="))
_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000))


def format_duration(ms: int) -> str:
    """600000 → ``10m``; the largest unit that divides exactly.

    >>> format_duration(600_000), format_duration(5_400_000), format_duration(86_400_000), format_duration(1500)
    ('10m', '90m', '1d', '1500ms')
    """
    for unit, size in _UNITS:
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _is_duration(info: FieldInfo) -> bool:
    return any(isinstance(m, BeforeValidator) and m.func is parse_duration_ms for m in info.metadata)


def _type_name(info: FieldInfo) -> str:
    if _is_duration(info):
        return "duration"
    annotation = info.annotation
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _bounds(info: FieldInfo) -> str:
    parts = []
    for meta in info.metadata:
        for kind, attr, symbol in _BOUNDS:
            if type(meta).__name__ == kind and hasattr(meta, attr):
                value = getattr(meta, attr)
                parts.append(f"{symbol} {format_duration(value) if _is_duration(info) else value}")
    return ", ".join(parts)


def params_of(model: type, prefix: str = "") -> list[dict[str, Any]]:
    """One dict per parameter: name, type, default (as written in indicators.yaml), bounds, description.

    Nested settings models are flattened to dotted names (``anomaly.hst.n_trees``).
    """
    rows = []
    for name, info in model.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            rows += params_of(info.annotation, f"{prefix}{name}.")
            continue
        default = info.default if info.default is not PydanticUndefined else None
        shown = format_duration(default) if _is_duration(info) and isinstance(default, int) else default
        rows.append({"name": prefix + name, "type": _type_name(info), "default": shown, "bounds": _bounds(info),
                     "description": info.description or ""})
    return rows


def _doc(cls: type) -> tuple[str, str]:
    """(prose, example) of a class docstring: the example starts at the first ``>>>`` line."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    lines = doc.splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith(">>>")), len(lines))
    prose = "\n".join(lines[:start]).strip()
    example = textwrap.dedent("\n".join(lines[start:])).strip()
    return prose, example


_SAMPLE = dict(currency="CNY", direction="debit", channel="card", counterparty_id="C1", merchant_id="M1",
               mcc="5411", country="CN", device_id="D1", ip="10.0.0.1", lat=31.2, lon=121.5, status="approved")


def _sample_state(cls: type[Indicator]) -> dict | None:
    """The state after learning a few varied, complete transactions; None if that cannot be run."""
    try:
        indicator, state = cls(), {}
        for minute, amount in enumerate((1.5, 100.0, 47_500.0, 2.0, 60_000.0)):
            indicator.evaluate(state, tx_at(minute, amount, **{
                **_SAMPLE, "direction": ("credit", "debit")[minute % 2], "counterparty_id": f"C{minute}",
                "status": ("approved", "declined")[minute % 2]}))
    except Exception:  # an indicator without defaults for every parameter, or one that needs richer input
        return None
    return state


STRESS_EVENTS = 3000
STRESS = f"largest seen over {STRESS_EVENTS:,} varied transactions at the defaults, bursts of 300 in 18 s among them"


@functools.cache
def stress_state(cls: type[Indicator], events: int = STRESS_EVENTS) -> tuple[dict, int]:
    """(final state, largest JSON size in bytes seen) of one entity after ``events`` varied
    transactions at default parameters: bursts and days-long gaps, 5 % up to an hour late, every
    counterparty, merchant, device, channel, country and network new, as a bound on the state
    an entity can build up (caps and windows must hold it).

    Each thousand events open with a burst of 300 in 18 seconds, amounts just under the default
    reporting threshold among them: without it a velocity window never filled to its cap, and
    structuring's state stayed empty, so the catalog stated bounds that were not bounds."""
    rng = random.Random(7)
    indicator, state, minute, largest = cls(), {}, 0.0, 0
    for i in range(events):
        minute += 0.001 if i % 1000 < 300 else rng.choice([0.01, 0.2, 3, 60, 300])
        late = rng.random() < 0.05
        fields = dict(_SAMPLE, direction=rng.choice(["credit", "debit"]), channel=f"ch{i % 40}",
                      counterparty_id=f"C{i}", merchant_id=f"M{i}", mcc=f"{i % 10_000:04d}",
                      country=["CN", "HK", "SG", "US", "RU", "KP"][i % 6] if i % 3 else f"X{chr(65 + i % 26)}",
                      device_id=f"D{i}", ip=f"{i % 223 + 1}.{i % 256}.{i // 256 % 256}.7",
                      lat=rng.uniform(-80, 80), lon=rng.uniform(-179, 179),
                      account_id=f"A{i % 97}", status=rng.choice(["approved", "declined"]))
        tx = tx_at(minute - (rng.uniform(0, 60) if late else 0), rng.choice([1.0, 7.5, 2_500.0, 47_500.0, 60_000.0]),
                   tx_id=f"x{i}", **fields)
        indicator.evaluate(state, tx)
        if i % 7 == 0:
            indicator.learn_label(state, tx, i % 2 == 0)
        if i % 50 == 0 or i == events - 1:
            largest = max(largest, len(json.dumps(state, separators=(",", ":"))))
    return state, largest


def _learns_nothing(cls: type[Indicator]) -> bool:
    """True when ``learn_one``'s body is only ``pass`` / a docstring / ``return``: a stateless indicator."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls.learn_one)))
    except (OSError, TypeError, SyntaxError):
        return False
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.FunctionDef) else [None]
    return all(isinstance(node, ast.Pass) or (isinstance(node, ast.Return) and node.value is None)
               or (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) for node in body)


def _shape(value: Any, top: bool = True) -> str:
    """JSON shape: the state's own keys by name; keys further down are data (countries, hours…), so by type."""
    if isinstance(value, dict):
        if top:
            return "{" + ", ".join(f"{k}: {_shape(v, False)}" for k, v in value.items()) + "}"
        kinds = sorted({_shape(v, False) for v in value.values()})
        return "map of str to " + (kinds[0] if len(kinds) == 1 else " | ".join(kinds) if kinds else "any")
    if isinstance(value, list | tuple):
        kinds = sorted({_shape(v, False) for v in value})
        if not kinds:
            return "list"
        if len(kinds) == 1 and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value) \
                and len(value) > 4:
            return f"list of {len(value)} {kinds[0]}"
        if len(kinds) == 1 and all(isinstance(v, list | tuple) for v in value):
            return f"list of {kinds[0]}"
        return "[" + ", ".join(_shape(v, False) for v in value) + "]"
    return {bool: "bool", int: "int", float: "float", str: "str", type(None): "null"}.get(type(value), type(value).__name__)


def state_kept(cls: type[Indicator]) -> tuple[str, str]:
    """(text, origin) where origin is ``state_doc`` or ``derived``.

    Derived: the JSON shape of the state after two transactions, plus the parameters that bound it.
    """
    explicit = getattr(cls, "state_doc", None)
    if explicit:
        return " ".join(inspect.cleandoc(explicit).split()), "state_doc"
    if _learns_nothing(cls):
        return "none (stateless)", "derived"
    state = _sample_state(cls)
    bounded = [f"`{p['name']}` ({p['description']})" for p in params_of(cls.Params)
               if p["name"] in ("cap", "memory", "max_count")
               or any(w in p["description"] for w in ("kept per", "bounds state", "remembered"))]
    text = f"per {cls.entity}, JSON `{_shape(state)}`" if state \
        else f"per {cls.entity} (shape not observed on sample transactions)"
    text += "; see the description for what it means"
    if bounded:
        text += "; bounded by " + ", ".join(bounded)
    return text + ".", "derived"


def describe(cls: type[Indicator]) -> dict[str, Any]:
    prose, example = _doc(cls)
    state, origin = state_kept(cls)
    return {
        "name": cls.name,
        "family": getattr(cls, "family", ""),
        "typology": getattr(cls, "typology", ""),
        "requires": list(getattr(cls, "requires", ())),
        "entity": cls.entity,
        "summary": prose.split("\n\n")[0].replace("\n", " ") if prose else "",
        "description": prose,
        "params": params_of(cls.Params),
        "state": state,
        "state_origin": origin,
        "state_bytes": stress_state(cls)[1],
        "example": example,
    }


def catalog() -> list[dict[str, Any]]:
    """Every registered indicator, by family then name."""
    return sorted((describe(cls) for cls in REGISTRY.values()), key=lambda d: (d["family"], d["name"]))


def fields_required(entry: dict) -> str:
    extra = [f for f in entry["requires"] if f not in CONTRACT_REQUIRED]
    base = "the contract's required fields (tx_id, ts, account_id, amount)"
    return base + (" and " + ", ".join(extra) + " (else: not applicable)" if extra else "")


def _cell(value: Any) -> str:
    return str(value if value is not None else "").replace("|", "\\|").replace("\n", " ")


def _params_table(params: list[dict]) -> list[str]:
    if not params:
        return ["No parameters."]
    lines = ["| parameter | type | default | allowed | description |", "|---|---|---|---|---|"]
    lines += [f"| `{p['name']}` | {p['type']} | `{_cell(p['default'])}` | {_cell(p['bounds'])} | {_cell(p['description'])} |"
              for p in params]
    return lines


def render_markdown() -> str:
    entries = catalog()
    out = ["# Indicators", "",
           f"<!-- Generated from the indicator registry by `{REGENERATE}`; do not edit by hand. -->", "",
           "Every indicator scores a transaction against what it knows of one entity (the account, or the",
           "merchant, device or counterparty: the worker re-keys the stream for those), then learns from it.",
           "Weights and parameters are set per indicator in `config/indicators.yaml` (durations: 30s, 10m, 24h, 7d).",
           "`riskcockpit indicators list` shows them with the active configuration, "
           "`riskcockpit indicators show NAME` one of them.", "",
           "| indicator | family | state kept per | typology targeted | fields required beyond the contract |",
           "|---|---|---|---|---|"]
    for e in entries:
        out.append(f"| [`{e['name']}`](#{e['name']}) | {e['family']} | {e['entity']} | {_cell(e['typology'])} | "
                   f"{', '.join(e['requires']) or '—'} |")
    per_entity: Counter[str] = Counter()
    for e in entries:
        per_entity[e["entity"]] += e["state_bytes"]
    out += ["", "State per entity with every indicator enabled, the sum of each one's size below "
            f"({STRESS}): " + ", ".join(f"{entity} {size:,} bytes" for entity, size in per_entity.items()) + ". "
            "An account also keeps its last `dedup_memory` decisions (8 by default) to answer redeliveries, "
            "each as large as the record sent to `risk.scores`."]
    family = None
    for e in entries:
        if e["family"] != family:
            family = e["family"]
            out += ["", f"## {family}"]
        out += ["", f"### {e['name']}", "", f"**Typology targeted:** {e['typology']}", "",
                e["description"] or "(no description)", "",
                f"**Fields required:** {fields_required(e)}", "",
                f"**State kept per:** {e['entity']} (`{ENTITY_FIELDS[e['entity']]}`)", "",
                f"**State kept{'' if e['state_origin'] == 'state_doc' else ' (derived: no state_doc)'}:** "
                f"{e['state']}", "",
                f"**State size:** at most {e['state_bytes']:,} bytes of JSON per {e['entity']} ({STRESS})", "",
                "**Parameters:**", "", *_params_table(e["params"])]
        if e["example"]:
            out += ["", "**Example:**", "", "```python", e["example"], "```"]
    out += _models_section()
    return "\n".join(out) + "\n"


def _models_section() -> list[str]:
    """The scoring config's model settings (``models:`` in indicators.yaml), if it has any."""
    from riskcockpit.indicators.scoring import ScoringConfig

    for key, info in ScoringConfig.model_fields.items():
        model = info.annotation
        if key.startswith("model") and isinstance(model, type) and issubclass(model, BaseModel):
            module = sys.modules.get(model.__module__)
            prose = " ".join(_doc(module)[0].split("\n\n")[0].split()) if module and module.__doc__ else ""
            return ["", "## Models", "", f"`{key}:` in `config/indicators.yaml`. {prose}".rstrip(), "",
                    "**Parameters:**", "", *_params_table(params_of(model))]
    return []


if __name__ == "__main__":
    sys.stdout.write(render_markdown())
