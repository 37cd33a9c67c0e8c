"""An outside segmentation model configured in `derivatives.models` runs through the DAG: its
own job (group `models`), its checked output published as a derivative with provenance."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from .helpers import jobs_run, run_workflow, work

pytestmark = pytest.mark.slow

# A stand-in segmenter: voxels above the mean are "head". Same grid as its input, as a real
# model's output must be.
MODEL = """\
import sys
import nibabel as nib
import numpy as np
img = nib.load(sys.argv[1])
data = np.asanyarray(img.dataobj)
nib.save(nib.Nifti1Image((data > data.mean()).astype(np.uint8), img.affine), sys.argv[2])
"""


def _derivatives(script: Path) -> str:
    model = {
        "name": "thresh",
        "command": f"{sys.executable} {script} {{input}} {{output}}",
        "outputs": {"dseg": "{output}"},
        "labels": {"0": "background", "1": "head"},
    }
    # Built-in defacing and segmentation off: the model is what this test is about. (Values
    # given with --config arrive as text, so the model keeps its default resources.)
    return "derivatives=" + json.dumps({"suffixes": [], "segment_suffixes": [], "models": [model]})


def test_outside_model_runs_as_its_own_job_and_is_published(
    testdata: Path, key_file: Path, tmp_path: Path
) -> None:
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    os.symlink(testdata / "siemens_xa30_exam" / "In" / "5_anat-T1w_acq-tfl", inbox / "t1w")
    script = tmp_path / "thresh.py"
    script.write_text(MODEL)
    config = _derivatives(script)

    proc = run_workflow(inbox, out, key_file, config)
    assert jobs_run(proc, "model_session") == 1
    made = sorted((out / "bids" / "derivatives").rglob("*_desc-thresh_dseg.nii.gz"))
    assert len(made) == 1, sorted(p.name for p in (out / "bids" / "derivatives").rglob("*"))
    raw = next((out / "bids").glob("sub-*/ses-*/anat/*_T1w.nii.gz"))
    got, ref = nib.load(made[0]), nib.load(raw)
    assert got.shape == ref.shape[:3] and np.allclose(got.affine, ref.affine)
    assert set(np.unique(np.asanyarray(got.dataobj)).tolist()) == {0, 1}
    side = json.loads(made[0].with_name(made[0].name.replace(".nii.gz", ".json")).read_text())
    assert side["Sources"] == [f"bids:raw:{raw.relative_to(out / 'bids').as_posix()}"]
    # The session's provenance names the model's step and command.
    prov = next((work(out) / "derivatives" / "prov").glob("sub-*_ses-*.json"))
    assert "run-model" in prov.read_text() and "thresh" in prov.read_text()

    again = run_workflow(inbox, out, key_file, config)
    assert jobs_run(again, "model_session") == 0
