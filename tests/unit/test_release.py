"""Release level public: defaced images take the raw anatomy's place; nothing undefaced stays."""

from __future__ import annotations

from pathlib import Path

from passerelle.derivatives.dataset import _release_public, derivatives_dir
from passerelle.derivatives.layout import DEFACE, SEG


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_public_release_replaces_or_removes_raw_anatomy(tmp_path: Path) -> None:
    bids, ses = tmp_path / "bids", "sub-a/ses-b"
    raw_ok = _write(bids / ses / "anat" / "sub-a_ses-b_run-1_T1w.nii.gz", b"face")
    raw_bad = _write(bids / ses / "anat" / "sub-a_ses-b_run-2_T1w.nii.gz", b"face too")
    _write(raw_bad.with_name("sub-a_ses-b_run-2_T1w.json"), b"{}")
    bold = _write(bids / ses / "func" / "sub-a_ses-b_task-x_bold.nii.gz", b"epi")
    rows = ["anat/sub-a_ses-b_run-1_T1w.nii.gz", "anat/sub-a_ses-b_run-2_T1w.nii.gz",
            "func/sub-a_ses-b_task-x_bold.nii.gz"]  # fmt: skip
    tsv = "filename\tacq_time\n" + "".join(f"{r}\tn/a\n" for r in rows)
    _write(bids / ses / "sub-a_ses-b_scans.tsv", tsv.encode())
    dicom = _write(bids / "sourcedata" / "dicom" / ses / "1" / "x.dcm", b"dicom")
    defaced = f"{ses}/anat/sub-a_ses-b_run-1_desc-defaced_T1w.nii.gz"
    _write(derivatives_dir(bids) / DEFACE / defaced, b"no face")
    summary = {
        "images": [
            {"dataset": DEFACE, "source": raw_ok.relative_to(bids).as_posix(),
             "state": "defaced", "outputs": [defaced]},
            {"dataset": DEFACE, "source": raw_bad.relative_to(bids).as_posix(),
             "state": "quarantined", "outputs": []},
            {"dataset": SEG, "source": raw_ok.relative_to(bids).as_posix(),
             "state": "segmented", "outputs": []},
        ]
    }  # fmt: skip
    _release_public(bids, "a", "b", summary, ["T1w", "T2w", "FLAIR"])
    assert raw_ok.read_bytes() == b"no face"
    assert not raw_bad.exists() and not raw_bad.with_name("sub-a_ses-b_run-2_T1w.json").exists()
    assert bold.read_bytes() == b"epi"
    scans = (bids / ses / "sub-a_ses-b_scans.tsv").read_text()
    assert "run-2" not in scans and "run-1" in scans and "bold" in scans
    assert not dicom.exists()
