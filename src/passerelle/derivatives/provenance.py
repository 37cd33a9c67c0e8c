"""W3C PROV-JSON per session, written with the ``prov`` library.

The published document is deterministic: rules, exact commands (paths relative to the work
area), parameters, entities with sha256 and the software agents. Start and end times and the
host name change on every run, so they go to a second document kept in the private work area.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prov.model import ProvDocument

from passerelle import __version__
from passerelle.derivatives.layout import DEFACE, RAW, SEG
from passerelle.fsutil import sha256_file

_NS = {
    "passerelle": "https://example.org/passerelle#",
    RAW: f"bids:{RAW}:",
    "deface": f"bids:{DEFACE}:",
    "seg": f"bids:{SEG}:",
}


def command(rule: str, args: dict[str, str]) -> str:
    """The command the rule ran, with work-area paths as WORK/... (no user names)."""
    return " ".join(
        ["python -m passerelle", rule, *(f"--{k} {v}" for k, v in sorted(args.items()))]
    )


def session_document(
    activities: list[dict[str, Any]],
    software: dict[str, str],
    site: str,
    timed: bool,
) -> ProvDocument:
    """activities: {id, rule, command, parameters, used: {qname: path}, generated: {...},
    started, ended, host}."""
    doc = ProvDocument()
    for prefix, uri in _NS.items():
        doc.add_namespace(prefix, uri)
    site_agent = doc.agent(
        "passerelle:site", {"prov:type": "prov:Organization", "prov:label": site}
    )
    tool = doc.agent(
        f"passerelle:passerelle-{__version__}",
        {"prov:type": "prov:SoftwareAgent", "prov:label": f"passerelle {__version__}"},
    )
    doc.actedOnBehalfOf(tool, site_agent)
    engines = [
        doc.agent(
            f"passerelle:{name}-{ver}",
            {"prov:type": "prov:SoftwareAgent", "prov:label": f"{name} {ver}"},
        )
        for name, ver in sorted(software.items())
    ]
    entities: dict[str, Any] = {}

    def entity(qname: str, path: Path) -> Any:
        if qname not in entities:
            entities[qname] = doc.entity(qname, {"passerelle:sha256": sha256_file(path)})
        return entities[qname]

    for act in activities:
        attrs: dict[str, Any] = {
            "passerelle:rule": act["rule"],
            "passerelle:command": act["command"],
            "passerelle:parameters": json.dumps(act["parameters"], sort_keys=True),
        }
        if timed:
            attrs["passerelle:host"] = act["host"]
        a = doc.activity(
            f"passerelle:{act['id']}",
            act["started"] if timed else None,
            act["ended"] if timed else None,
            attrs,
        )
        doc.wasAssociatedWith(a, tool)
        for eng in engines:
            doc.wasAssociatedWith(a, eng)
        for qname, path in sorted(act["used"].items()):
            doc.used(a, entity(qname, path))
        for qname, path in sorted(act["generated"].items()):
            out = entity(qname, path)
            doc.wasGeneratedBy(out, a)
            for src in sorted(act["used"]):
                doc.wasDerivedFrom(out, entities[src])
    return doc


def serialize(doc: ProvDocument) -> str:
    # Re-dump with sorted keys: the library's own order follows insertion and set iteration.
    return json.dumps(json.loads(doc.serialize(format="json")), indent=2, sort_keys=True) + "\n"
