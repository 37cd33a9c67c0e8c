"""QC pictures: deterministic PNGs (fixed size, no timestamp or software metadata)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
from matplotlib.colors import ListedColormap

from passerelle.fsutil import atomic_write_bytes

_META = {"Software": None}
_TISSUE = ListedColormap(
    [(0, 0, 0, 0), (0.2, 0.4, 1, 0.5), (0.2, 0.8, 0.2, 0.5), (1, 0.9, 0.1, 0.5)]
)


def _canonical(path: Path) -> np.ndarray:
    return np.asanyarray(nib.as_closest_canonical(nib.load(path)).dataobj, dtype=np.float32)


def _slices(vol: np.ndarray, centre: tuple[int, int, int]) -> list[np.ndarray]:
    x, y, z = centre
    return [vol[x, :, :].T, vol[:, y, :].T, vol[:, :, z].T]


def _centre(mask: np.ndarray) -> tuple[int, int, int]:
    idx = np.argwhere(mask)
    if idx.size == 0:
        return tuple(s // 2 for s in mask.shape)  # type: ignore[return-value]
    return tuple(int(v) for v in np.median(idx, axis=0))  # type: ignore[return-value]


def _save(fig: plt.Figure, out: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, metadata=_META)
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())


def _grid(rows: int, title: str) -> tuple[plt.Figure, np.ndarray]:
    fig, axes = plt.subplots(max(rows, 1), 3, figsize=(9, 3 * max(rows, 1)), squeeze=False)
    fig.suptitle(title)
    for ax in axes.ravel():
        ax.set_axis_off()
    return fig, axes


def _empty(axes: np.ndarray, text: str) -> None:
    axes[0, 1].text(0.5, 0.5, text, ha="center", va="center", transform=axes[0, 1].transAxes)


def deface_mosaic(rows: list[tuple[str, Path, Path, Path]], out: Path, show_source: bool) -> None:
    """rows: (label, source, defaced, face mask). Removed region outlined in red."""
    fig, axes = _grid(len(rows), "Defacing: removed region in red")
    if not rows:
        _empty(axes, "no defaced image in this session")
    for r, (label, src, defaced, mask) in enumerate(rows):
        img = _canonical(src if show_source else defaced)
        face = _canonical(mask) > 0
        # Cut through the face's centre in x, and mid-head elsewhere, so the mask shows.
        cx, _, _ = _centre(face)
        _, cy, cz = _centre(img > np.percentile(img, 60))
        vmax = float(np.percentile(img, 99.5)) or 1.0
        for c, (sl, fm) in enumerate(
            zip(_slices(img, (cx, cy, cz)), _slices(face, (cx, cy, cz)), strict=True)
        ):
            ax = axes[r, c]
            ax.imshow(sl, cmap="gray", origin="lower", vmin=0, vmax=vmax)
            if fm.any():
                ax.contour(fm.astype(float), levels=[0.5], colors="red", linewidths=0.8)
        axes[r, 0].set_title(label, fontsize=7, loc="left")
    _save(fig, out)


def segment_mosaic(rows: list[tuple[str, Path, Path, Path]], out: Path) -> None:
    """rows: (label, source, dseg, brain mask)."""
    fig, axes = _grid(len(rows), "Segmentation: CSF blue, GM green, WM yellow")
    if not rows:
        _empty(axes, "no segmented image in this session")
    for r, (label, src, dseg, mask) in enumerate(rows):
        img, lab, brain = _canonical(src), _canonical(dseg), _canonical(mask) > 0
        centre = _centre(brain)
        vmax = float(np.percentile(img[brain], 99.5)) if brain.any() else 1.0
        for c, (sl, ls, bm) in enumerate(
            zip(_slices(img, centre), _slices(lab, centre), _slices(brain, centre), strict=True)
        ):
            ax = axes[r, c]
            ax.imshow(sl, cmap="gray", origin="lower", vmin=0, vmax=vmax)
            ax.imshow(ls, cmap=_TISSUE, origin="lower", vmin=0, vmax=3, interpolation="nearest")
            if bm.any():
                ax.contour(bm.astype(float), levels=[0.5], colors="white", linewidths=0.5)
        axes[r, 0].set_title(label, fontsize=7, loc="left")
    _save(fig, out)


def volume_plot(volumes: list[dict[str, float]], out: Path) -> None:
    """One point per image and class; x jitter from the row order, so it is reproducible."""
    fig, ax = plt.subplots(figsize=(6, 4))
    classes = ["CSF", "GM", "WM", "Brain"]
    for i, name in enumerate(classes):
        ys = [v[name] for v in volumes if name in v]
        xs = i + np.linspace(-0.15, 0.15, len(ys)) if len(ys) > 1 else [i] * len(ys)
        ax.scatter(xs, ys, s=12)
    ax.set_xticks(range(len(classes)), classes)
    ax.set_ylabel("volume (mL)")
    ax.set_title(f"Tissue volumes, {len(volumes)} segmented image(s)")
    fig.tight_layout()
    _save(fig, out)
