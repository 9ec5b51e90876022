"""Drive Dash callbacks over HTTP the way a browser does, against a test client or a live server."""

from __future__ import annotations

import json
from typing import Any

import requests


class LiveServer:
    """The Flask test client's small interface, over real HTTP to a running cockpit."""

    class _Response:
        def __init__(self, response: requests.Response):
            self.status_code = response.status_code
            self._response = response

        def get_json(self):
            return self._response.json()

        def get_data(self, as_text: bool = False):
            return self._response.text if as_text else self._response.content

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")

    def get(self, path: str):
        return self._Response(requests.get(self.base_url + path, timeout=30))

    def post(self, path: str, json=None):
        return self._Response(requests.post(self.base_url + path, json=json, timeout=60))


def _ids(node: Any) -> list[Any]:
    """Every component id in a /_dash-layout tree."""
    found = []
    if isinstance(node, dict):
        if "props" in node and "id" in node["props"]:
            found.append(node["props"]["id"])
        for value in node.values():
            found += _ids(value)
    elif isinstance(node, list):
        for value in node:
            found += _ids(value)
    return found


def _split(output: str) -> list[tuple[Any, str]]:
    parts = output[2:-2].split("...") if output.startswith("..") else [output]
    result = []
    for part in parts:
        ident, prop = part.rsplit(".", 1)
        result.append((json.loads(ident) if ident.startswith("{") else ident, prop))
    return result


def _output_spec(ident: Any, prop: str, layout_ids: list[Any]) -> Any:
    if not isinstance(ident, dict):
        return {"id": ident, "property": prop}
    # A wildcard output: the browser sends one entry per matching component.
    return [{"id": i, "property": prop} for i in layout_ids if isinstance(i, dict) and i.keys() == ident.keys()]


def call(http, output_contains: str, values: dict[str, Any]) -> dict[str, Any]:
    """POST the callback whose output mentions ``output_contains``; ``values`` by ``"id.prop"``."""
    deps = http.get("/_dash-dependencies").get_json()
    dep = next(d for d in deps if output_contains in d["output"])
    layout_ids = _ids(http.get("/_dash-layout").get_json())

    def with_value(item: dict) -> dict:
        return {**item, "value": values.get(f"{item['id']}.{item['property']}")}

    inputs = [with_value(i) for i in dep["inputs"]]
    outputs = [_output_spec(ident, prop, layout_ids) for ident, prop in _split(dep["output"])]
    body = {
        "output": dep["output"],
        "outputs": outputs if dep["output"].startswith("..") else outputs[0],
        "inputs": inputs,
        "state": [with_value(s) for s in dep["state"]],
        "changedPropIds": [f"{i['id']}.{i['property']}" for i in inputs if i["value"] is not None],
    }
    response = http.post("/_dash-update-component", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["response"]
