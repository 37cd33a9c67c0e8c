#!/usr/bin/env python3
"""Seconds per volume and peak RSS of defacing and segmentation on the largest test volume.

Each step runs in a fresh child process (so its peak RSS is its own), three times; the
median time is printed. The peer is pydeface itself (FSL FLIRT), run the same way when
FSLDIR is set and the pydeface command is on PATH; otherwise the script says so.

Run: ``.venv/bin/python scripts/bench_derivatives.py [--repeat 3] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAD = (
    REPO.parent
    / "shared"
    / "testdata"
    / "head_t1w_face"
    / ("ds000031_sub-01_ses-006_run-001_T1w.nii.gz")
)

STEP = {
    "deface": (
        "from pathlib import Path; import sys\n"
        "from passerelle.derivatives.deface import deface_image\n"
        "from passerelle.derivatives.registration import RegParams\n"
        "deface_image(Path(sys.argv[1]), Path(sys.argv[2]) / 'd.nii.gz',"
        " Path(sys.argv[2]) / 'm.nii.gz', RegParams(threads=int(sys.argv[3])))\n"
    ),
    "segment": (
        "from pathlib import Path; import sys\n"
        "from passerelle.derivatives.segment import SegParams, segment_image\n"
        "from passerelle.derivatives.registration import RegParams\n"
        "o = Path(sys.argv[2])\n"
        "segment_image(Path(sys.argv[1]), {'mask': o / 'b.nii.gz', 'dseg': o / 's.nii.gz'},"
        " RegParams(threads=int(sys.argv[3])), SegParams())\n"
    ),
}


def _child(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.execv(argv[0], argv)
    _, status, usage = os.wait4(pid, 0)
    took = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(argv[:3])}")
    return took, usage.ru_maxrss / 1024


def quality() -> None:
    """The figures the tests assert on, printed: Dice ranges, brain voxels removed."""
    import numpy as np

    from passerelle.derivatives import nifti
    from passerelle.derivatives.checks import dice, moved, random_affine
    from passerelle.derivatives.deface import face_mask
    from passerelle.derivatives.registration import RegParams
    from passerelle.derivatives.segment import (
        SegParams,
        brain_mask,
        mni_path,
        mni_probability,
        segment,
    )  # fmt: skip

    p = RegParams()
    img = nifti.load(HEAD)
    base = face_mask(img, p).face
    scores = [
        dice(face_mask(moved(img, random_affine(np.random.default_rng(s))), p).face, base)
        for s in range(10)
    ]
    print(f"defacing Dice on 10 known transforms: {min(scores):.4f}-{max(scores):.4f}")
    brain, _ = brain_mask(nifti.to_sitk(img), p)
    print(f"brain voxels removed: {int((brain & base).sum())} of {int(brain.sum())}")
    gm, wm = mni_probability("gm"), mni_probability("wm")
    mni = moved(nifti.load(mni_path("t1")), random_affine(np.random.default_rng(1)))
    seg = segment(mni, p, SegParams())
    ref = np.zeros(gm.shape, np.uint8)
    ref[seg.brain] = 1
    ref[gm > 0.5], ref[wm > 0.5] = 2, 3
    ref[~seg.brain] = 0
    per = {n: dice(seg.dseg == k, ref == k) for k, n in ((1, "CSF"), (2, "GM"), (3, "WM"))}
    print("segmentation Dice vs MNI152 maps: " + ", ".join(f"{k} {v:.3f}" for k, v in per.items()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quality", action="store_true", help="also print the quality figures")
    args = ap.parse_args()
    if args.quality:
        quality()
    import nibabel as nib

    img = nib.load(HEAD)
    print(f"volume: {HEAD.name}, {'x'.join(map(str, img.shape))} voxels, "
          f"{'x'.join(f'{z:.2f}' for z in img.header.get_zooms())} mm; "
          f"{args.threads} thread(s), median of {args.repeat}")  # fmt: skip
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, code in STEP.items():
            runs = [
                _child([sys.executable, "-c", code, str(HEAD), tmp, str(args.threads)])
                for _ in range(args.repeat)
            ]
            secs = statistics.median(r[0] for r in runs)
            peak = max(r[1] for r in runs)
            results[name] = secs
            print(f"{name:8s} {secs:6.1f} s/volume   peak RSS {peak:6.0f} MB")
        if os.environ.get("FSLDIR") and shutil.which("pydeface"):
            out = Path(tmp) / "p.nii.gz"
            secs, peak = _child(
                [shutil.which("pydeface"), str(HEAD), "--outfile", str(out), "--force"]
            )
            print(f"pydeface {secs:6.1f} s/volume   peak RSS {peak:6.0f} MB   "
                  f"(ratio passerelle/pydeface {results['deface'] / secs:.2f})")  # fmt: skip
        else:
            print("pydeface: not compared (FSL is not installed: FSLDIR is unset)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
