"""The run report: one HTML page saying what came in, what became of it, and why."""

from __future__ import annotations

import html
import json
from typing import Any

from passerelle.config import Settings
from passerelle.fsutil import write_text

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem}
th{background:#f3f3f3;text-align:left}.bad{color:#a40000}.ok{color:#146c2e}
"""


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def write_run_report(
    settings: Settings, summary: dict[str, Any], validation: dict[str, Any]
) -> None:
    files = summary["files"]
    total = sum(files.values())
    verdict = (
        '<p class="ok">BIDS validator: 0 errors</p>'
        if validation.get("errors") == 0
        else f'<p class="bad">BIDS validator: {validation.get("errors")} errors</p>'
    )
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Passerelle run</title>"
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Passerelle run {html.escape(summary['run_id'])}</h1>",
        f"<p>passerelle {html.escape(summary['passerelle'])}: "
        f"{summary['sessions_processed']} sessions processed in this run; the dataset holds "
        f"{summary['sessions_in_dataset']} sessions of "
        f"{summary['subjects_in_dataset']} subjects.</p>",
        "<h2>Every input file</h2>",
        _table(
            ["state", "files", "share"],
            [[k, v, f"{100 * v / total:.1f}%"] for k, v in files.items()] if total else [],
        ),
        "<h2>Set aside or kept as source, and why</h2>",
        _table(
            ["state", "reason", "files"],
            [[r["state"], r["reason"], r["files"]] for r in summary["reasons"]],
        ),
        "<h2>Validation</h2>",
        verdict,
        _table(
            ["severity", "code", "location"],
            [
                [i["severity"], i["code"], i.get("location") or ""]
                for i in validation.get("issues", [])[:200]
            ],
        ),
        *_risk_section(settings),
        "<p>The file-by-file manifest is <code>manifest.tsv</code> beside this report.</p>",
        "</body></html>",
    ]
    write_text(settings.reports_dir / "run_report.html", "\n".join(parts) + "\n")


def _risk_section(settings: Settings) -> list[str]:
    """k before and after the remedies, the remedies, the attacker risks and the pictures."""
    path = settings.reports_dir / "risk.json"
    if not path.is_file():
        return []
    risk = json.loads(path.read_text())
    before, after = risk["before"], risk["after"]
    verdict = risk["verdict"]
    css = "ok" if verdict == "meets target" else "bad"
    parts = [
        "<h2>Re-identification risk</h2>",
        f'<p class="{css}">k = {after["k"]} after remedies (target {risk["target_k"]}; '
        f"{before['k']} as recorded): {html.escape(verdict)}. "
        f"{after['records_below_k']} of {after['records']} subjects are in classes below k.</p>",
        f"<p>Quasi-identifiers: {html.escape(', '.join(risk['quasi_identifiers']))}.</p>",
    ]
    if risk.get("accepted_below_k"):
        parts.append(
            f'<p class="bad">Released below target k, accepted: '
            f"{html.escape(risk['accepted_below_k'])}</p>"
        )
    described = zip(risk["quasi_identifiers"], risk["remedy"]["described"], strict=False)
    parts.append(
        _table(
            ["remedy", "records changed"],
            [[line, risk["remedy"]["values_changed"].get(q, "")] for q, line in described]
            + [["local suppression", risk["remedy"]["suppressed_records"]]],
        )
    )
    parts.append(
        _table(
            ["attacker (ARX)", "highest", "average", "records at risk"],
            [
                [name, f"{after[name]['highest']:.3f}", f"{after[name]['average']:.3f}",
                 f"{after[name]['records_at_risk']:.1%}"]
                for name in ("prosecutor", "journalist")
            ]
            + [["marketer", "", f"{after['marketer']:.3f}", ""]],
        )
    )  # fmt: skip
    if after["l_diversity"]:
        parts.append(
            _table(
                ["sensitive attribute", "distinct l", "entropy l", "t (EMD)"],
                [
                    [c, v["distinct"], f"{v['entropy']:.2f}", f"{after['t_closeness'][c]:.3f}"]
                    for c, v in after["l_diversity"].items()
                ],
            )
        )
    for name, title in (
        ("age_pyramid", "Age band by sex"),
        ("sites", "Subjects per site or region"),
        ("frequencies", "Body part and model frequencies"),
        ("class_sizes", "Class sizes against k"),
    ):
        if (settings.reports_dir / "risk" / f"{name}.png").is_file():
            parts.append(
                f'<figure><img src="risk/{name}.png" alt="{title}"><figcaption>{title}'
                "</figcaption></figure>"
            )
    parts.append("<p>Every remedy is listed in <code>risk_audit.tsv</code> beside this report.</p>")
    return parts
