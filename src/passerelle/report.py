"""The run report: one HTML page saying what came in, what became of it, and why."""

from __future__ import annotations

import html
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
        "<h2>Derivatives of this run</h2>",
        _table(
            ["dataset and state", "images"],
            [[k, v] for k, v in summary.get("derivatives", {}).get("images", {}).items()],
        ),
        _table(
            ["quarantined derivative, and why"],
            [[line] for line in summary.get("derivatives", {}).get("quarantined", [])],
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
        "<p>The file-by-file manifest is <code>manifest.tsv</code> beside this report.</p>",
        "</body></html>",
    ]
    write_text(settings.reports_dir / "run_report.html", "\n".join(parts) + "\n")
