"""The pictures reviewers look at, drawn from the release as published (after remedies).

PNG via matplotlib's Agg backend with no Software or date metadata, so the same release gives
byte-identical files.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from passerelle.fsutil import write_if_changed
from passerelle.risk.metrics import Record, classes
from passerelle.risk.remedies import REMOVED, is_suppressed

PICTURES = ("age_pyramid", "sites", "frequencies", "class_sizes")
SMALL, FINE = "#c0392b", "#2e86c1"


def _save(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, metadata={"Software": None})
    plt.close(fig)
    write_if_changed(path, buf.getvalue())


def _band_key(band: str) -> tuple[int, str]:
    head = band.split("-")[0].rstrip("+")
    return (int(head), band) if head.isdigit() else (10**6, band)


def age_pyramid(records: Sequence[Record], path: Path) -> None:
    bands = sorted({str(r["age"]) for r in records}, key=_band_key)
    male = Counter(str(r["age"]) for r in records if r["sex"] == "M")
    female = Counter(str(r["age"]) for r in records if r["sex"] == "F")
    other = Counter(str(r["age"]) for r in records if r["sex"] not in ("M", "F"))
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(bands) + 1.5))
    y = range(len(bands))
    ax.barh(y, [-male[b] for b in bands], color=FINE, label="M")
    ax.barh(y, [female[b] for b in bands], color="#af7ac5", label="F")
    if any(other.values()):
        ax.barh(y, [other[b] for b in bands], left=[female[b] for b in bands],
                color="#aaaaaa", label="other / removed")  # fmt: skip
    ax.set_yticks(list(y), ["removed" if b == REMOVED else b for b in bands])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("subjects (M left, F right)")
    ax.set_title("Age band by sex, as released")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    _save(fig, path)


def _bars(ax: Any, counts: Counter[str], k: int, title: str) -> None:
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
    names = ["removed" if n == REMOVED else n for n, _ in items] or ["(none)"]
    values = [v for _, v in items] or [0]
    ax.barh(range(len(names)), values, color=[SMALL if v < k else FINE for v in values])
    ax.set_yticks(range(len(names)), names, fontsize="small")
    ax.invert_yaxis()
    ax.axvline(k, color=SMALL, linestyle="--", linewidth=0.8)
    ax.set_title(title, fontsize="medium")


def sites(records: Sequence[Record], k: int, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3))
    _bars(ax, Counter(str(r.get("site", "n/a")) for r in records), k,
          f"Subjects per site or region (red: fewer than k={k})")  # fmt: skip
    fig.tight_layout()
    _save(fig, path)


def frequencies(records: Sequence[Record], k: int, path: Path) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    _bars(a, Counter(str(r.get("body_part", "n/a")) for r in records), k, "Body part")
    _bars(b, Counter(str(r.get("model", "n/a")) for r in records), k, "Scanner model")
    fig.suptitle(f"Frequencies as released (red: fewer than k={k} subjects)")
    fig.tight_layout()
    _save(fig, path)


def class_sizes(records: Sequence[Record], qis: Sequence[str], k: int, path: Path) -> None:
    # Suppressed records join no class (they match anybody), as in the figures.
    kept = [r for r in records if not is_suppressed(r, qis)]
    sizes = Counter(classes(kept, qis).values())
    xs = sorted(sizes)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar([str(x) for x in xs], [sizes[x] for x in xs],
           color=[SMALL if x < k else FINE for x in xs])  # fmt: skip
    ax.set_xlabel("class size (subjects sharing every quasi-identifier)")
    ax.set_ylabel("classes")
    ax.yaxis.get_major_locator().set_params(integer=True)
    gone = len(records) - len(kept)
    ax.set_title(
        f"Class sizes against target k={k} (red: below k)"
        + (f"; {gone} suppressed" if gone else ""),
        fontsize="medium",
    )
    fig.tight_layout()
    _save(fig, path)


def draw_all(result: dict[str, Any], folder: Path) -> list[Path]:
    records, k, qis = result["released"], result["target_k"], result["quasi_identifiers"]
    folder.mkdir(parents=True, exist_ok=True)
    age_pyramid(records, folder / "age_pyramid.png")
    sites(records, k, folder / "sites.png")
    frequencies(records, k, folder / "frequencies.png")
    class_sizes(records, qis, k, folder / "class_sizes.png")
    return [folder / f"{name}.png" for name in PICTURES]
