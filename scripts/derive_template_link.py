#!/usr/bin/env python3
"""Derive the fixed affine from pydeface's template space to MNI152 space, once.

On the real whole head in ../shared/testdata, the pydeface template and the skull-stripped MNI
T1 are each registered to the head (the MNI on the head core, then on the brain found, as
`segment.brain_mask` did before this link existed); the link is M_head->MNI @ inv(M_head->tpl).
Segmentation then starts every brain registration from the robust head-to-head (defacing)
registration composed with this link, instead of a brain-to-head registration from scratch.

Run: ``.venv/bin/python scripts/derive_template_link.py`` (writes src/passerelle/data/).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from passerelle.derivatives import nifti
from passerelle.derivatives.deface import _template
from passerelle.derivatives.registration import RegParams, refine, register
from passerelle.derivatives.segment import LINK, _mni

REPO = Path(__file__).resolve().parents[1]
HEAD = REPO.parent / "shared/testdata/head_t1w_face/ds000031_sub-01_ses-006_run-001_T1w.nii.gz"


def main() -> int:
    p = RegParams()
    fixed = nifti.to_sitk(nifti.load(HEAD))
    tpl, _ = _template()
    t1, brain = _mni()
    to_tpl = register(fixed, tpl, p)
    to_mni = register(fixed, t1, p, brain_only=True)
    first = sitk.Resample(brain, fixed, to_mni.transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    near = sitk.BinaryDilate(sitk.Cast(first > 0.5, sitk.sitkUInt8), [10, 10, 10])
    to_mni = refine(fixed, t1, to_mni, near, p)
    link = np.asarray(to_mni.matrix()) @ np.linalg.inv(np.asarray(to_tpl.matrix()))
    LINK.write_text(json.dumps({
        "description": "pydeface template (LPS mm) to MNI152 2009a (LPS mm), 4x4",
        "derived_by": "scripts/derive_template_link.py on OpenNeuro ds000031 sub-01 T1w",
        "matrix": np.round(link, 6).tolist(),
    }, indent=2) + "\n")  # fmt: skip
    print(f"wrote {LINK.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
