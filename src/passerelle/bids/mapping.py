"""Declarative series-to-BIDS rules (config/bids_map.yaml): the first rule that matches wins."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from passerelle.bids.paths import sanitize_label

_TEMPLATE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?:\|([A-Za-z0-9]*))?\}")
NUMERIC_FIELDS = {"EchoTime", "RepetitionTime", "InversionTime", "FlipAngle"}


@dataclass(frozen=True)
class Alternatives:
    """A field that matches when any of its options matches."""

    options: list[str]

    def __str__(self) -> str:
        return self.options[0] if self.options else ""


@dataclass(frozen=True)
class Target:
    rule: str
    datatype: str
    suffix: str
    entities: dict[str, str] = field(default_factory=dict)
    echo_suffix: bool = False
    intended_for: tuple[str, ...] = ()
    task_name: str | None = None


def match_fields(attrs: dict[str, Any], n_files: int) -> dict[str, Any]:
    """The values rules can test: header attributes plus a few derived ones."""
    fields = dict(attrs)
    fields["NumberOfFiles"] = n_files
    fields["Description"] = Alternatives(
        [v for v in (attrs.get("SeriesDescription"), attrs.get("ProtocolName")) if v]
    )
    return fields


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "\\".join(str(v) for v in value)
    return "" if value is None else str(value)


def _search(pattern: str, value: Any, groups: dict[str, str]) -> bool:
    # Alternatives (Description: SeriesDescription or ProtocolName) match when any member does;
    # multi-valued attributes such as ImageType match on their backslash-joined form.
    candidates = value.options if isinstance(value, Alternatives) else [value]
    for candidate in candidates:
        m = re.search(pattern, _text(candidate))
        if m:
            groups.update({k: v for k, v in m.groupdict().items() if v})
            return True
    return False


def _number(value: Any) -> float | None:
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _equals(expected: Any, value: Any) -> bool:
    if isinstance(expected, int | float) and not isinstance(expected, bool):
        return _number(value) == float(expected)  # 3000 equals a RepetitionTime of 3000.0
    return _text(value).strip().lower() == str(expected).lower()


def condition_holds(cond: Any, value: Any, groups: dict[str, str]) -> bool:
    if isinstance(value, Alternatives) and not value.options:
        value = None  # neither SeriesDescription nor ProtocolName: the field is absent
    if isinstance(cond, bool):
        return bool(value) == cond
    if isinstance(cond, int | float):
        return _number(value) == float(cond)
    if isinstance(cond, str):
        return value is not None and _search(cond, value, groups)
    ok = True
    if "present" in cond:
        ok &= (value not in (None, "", [])) == cond["present"]
    if "regex" in cond:
        ok &= value is not None and _search(cond["regex"], value, groups)
    if "equals" in cond:
        options = value.options if isinstance(value, Alternatives) else [value]
        ok &= any(_equals(cond["equals"], v) for v in options)
    listed = value.options if isinstance(value, Alternatives) else value
    members = {str(v).upper() for v in (listed if isinstance(listed, list) else [listed]) if v}
    if "all" in cond:
        ok &= all(v.upper() in members for v in cond["all"])
    if "any" in cond:
        ok &= any(v.upper() in members for v in cond["any"])
    if "none" in cond:
        ok &= not any(v.upper() in members for v in cond["none"])
    if "min" in cond or "max" in cond:
        n = _number(value)
        ok &= n is not None and cond.get("min", n) <= n <= cond.get("max", n)
    return ok


def _render(template: str, groups: dict[str, str], fields: dict[str, Any]) -> str:
    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2) or ""
        value = groups.get(name) or fields.get(name)
        text = sanitize_label(_text(value)) if value is not None else ""
        return text or default

    return sanitize_label(_TEMPLATE.sub(sub, template))


def map_series(rules: list[dict[str, Any]], fields: dict[str, Any]) -> Target | None:
    for rule in rules:
        groups: dict[str, str] = {}
        if all(condition_holds(c, fields.get(k), groups) for k, c in rule["match"].items()):
            entities = {
                k: v
                for k, t in rule.get("entities", {}).items()
                if (v := _render(t, groups, fields))
            }
            if rule["datatype"] == "func" and not entities.get("task"):
                continue  # BIDS requires a task for functional data: try later rules
            return Target(
                rule=rule["name"],
                datatype=rule["datatype"],
                suffix=rule["suffix"],
                entities=entities,
                echo_suffix=rule.get("echo_suffix", False),
                intended_for=tuple(rule.get("intended_for", ())),
                task_name=rule.get("task_name"),
            )
    return None
