"""One contract = one recorded interaction, read from and written to a JSON file.

The file format is described in `contracts/__init__.py`; this module only
loads, saves and fills in templates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DOCUMENTED",
    "RECORDED",
    "Contract",
    "ContractFileError",
    "Request",
    "Response",
    "fill",
    "load_contract",
    "load_contracts",
    "parse_contract",
    "references_in",
    "save_contract",
    "select",
]

RECORDED = Path(__file__).parent / "recorded"
"""Where the project's contracts live (shipped inside the wheel)."""

_TEMPLATE = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")

AUTH_CHOICES = ("valid", "invalid", "none", "partner", "partner_without_shop", "public")
DOCUMENTED = "documented"  # `behaviour` of a contract whose answer Postscript's docs state


class ContractFileError(ValueError):
    """A contract file that cannot be read as a contract."""


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]] = field(default_factory=dict)
    json: Any = None
    # the shop's key ("valid"), a wrong one ("invalid"), none, a partner key with the shop's
    # token ("partner") or without ("partner_without_shop"), or the shop's public key
    auth: str = "valid"


@dataclass(frozen=True)
class Response:
    status: int
    body: Any


@dataclass(frozen=True)
class Contract:
    name: str
    description: str
    provenance: dict[str, str]
    given: dict[str, Any]
    request: Request
    response: Response
    matchers: dict[str, dict[str, Any]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    live: dict[str, Any] = field(default_factory=dict)
    replay: dict[str, Any] = field(default_factory=dict)
    # "documented", or the choice the answer follows (docs/design/emulator-choices.md)
    behaviour: str = ""
    path: Path | None = None

    @property
    def documented(self) -> bool:
        return self.behaviour == DOCUMENTED

    @property
    def live_skip_reason(self) -> str | None:
        """Why this contract cannot run against a live shop, or None when it can."""
        reason = self.live.get("skip")
        return str(reason) if reason else None

    @property
    def replay_skip_reason(self) -> str | None:
        """Why the client's tests need not exercise this contract, or None when they must."""
        reason = self.replay.get("skip")
        return str(reason) if reason else None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "provenance": self.provenance,
            "given": self.given,
            "refs": self.refs,
            "request": {
                "method": self.request.method,
                "path": self.request.path,
                "query": self.request.query,
                "json": self.request.json,
            },
            "response": {"status": self.response.status, "body": self.response.body},
            "matchers": self.matchers,
        }
        if self.behaviour:
            doc["behaviour"] = self.behaviour
        if self.request.auth != "valid":
            doc["request"]["auth"] = self.request.auth
        if self.live:
            doc["live"] = self.live
        if self.replay:
            doc["replay"] = self.replay
        return doc


def parse_contract(doc: Mapping[str, Any], path: Path | None = None) -> Contract:
    """A `Contract` from the JSON object of one file; raises ContractFileError."""
    where = str(path) if path else "contract"
    try:
        request = doc["request"]
        response = doc["response"]
        query = {
            key: [str(v) for v in (value if isinstance(value, list) else [value])]
            for key, value in (request.get("query") or {}).items()
        }
        auth = request.get("auth", "valid")
        if auth not in AUTH_CHOICES:
            raise ContractFileError(f"{where}: request.auth must be one of {AUTH_CHOICES}")
        return Contract(
            name=str(doc["name"]),
            description=str(doc.get("description", "")),
            provenance=dict(doc["provenance"]),
            given=dict(doc.get("given") or {}),
            request=Request(
                method=str(request["method"]).upper(),
                path=str(request["path"]),
                query=query,
                json=request.get("json"),
                auth=auth,
            ),
            response=Response(status=int(response["status"]), body=response.get("body")),
            matchers=dict(doc.get("matchers") or {}),
            refs=dict(doc.get("refs") or {}),
            live=dict(doc.get("live") or {}),
            replay=dict(doc.get("replay") or {}),
            behaviour=str(doc.get("behaviour", "")),
            path=path,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ContractFileError(
            f"{where}: missing or malformed field {exc}; see contracts/__init__.py"
        ) from exc


def load_contract(path: Path) -> Contract:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ContractFileError(f"{path}: not valid JSON ({exc})") from exc
    return parse_contract(doc, path)


def load_contracts(folder: Path | None = None) -> list[Contract]:
    """Every `*.json` contract in `folder` (the project's own by default), sorted by name."""
    folder = folder or RECORDED
    contracts = [load_contract(path) for path in sorted(folder.glob("*.json"))]
    names = [c.name for c in contracts]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ContractFileError(f"{folder}: contract names must be unique, repeated: {duplicates}")
    return sorted(contracts, key=lambda c: c.name)


def select(contracts: list[Contract], names: tuple[str, ...] | list[str]) -> list[Contract]:
    """The contracts called `names`, in that order; raises KeyError naming any unknown one."""
    by_name = {c.name: c for c in contracts}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise KeyError(f"no contract named {unknown}; `pslab contracts list` shows them")
    return [by_name[n] for n in names]


def save_contract(contract: Contract, folder: Path) -> Path:
    """Write `contract` as `<folder>/<name>.json`, pretty-printed for review in a diff."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{contract.name}.json"
    text = json.dumps(contract.to_json(), indent=2, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def fill(template: Any, values: Mapping[str, str]) -> Any:
    """`template` with every `{{ref}}` replaced by `values[ref]` (in strings, lists, dicts)."""
    if isinstance(template, str):

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in values:
                raise KeyError(
                    f"reference {{{{{name}}}}} has no value; bind it in `given` or `refs`"
                )
            return values[name]

        return _TEMPLATE.sub(substitute, template)
    if isinstance(template, list):
        return [fill(item, values) for item in template]
    if isinstance(template, dict):
        return {key: fill(value, values) for key, value in template.items()}
    return template


def references_in(template: Any) -> set[str]:
    """The reference names a template mentions."""
    if isinstance(template, str):
        return set(_TEMPLATE.findall(template))
    if isinstance(template, list):
        return set().union(*(references_in(item) for item in template)) if template else set()
    if isinstance(template, dict):
        return references_in(list(template.values()))
    return set()
