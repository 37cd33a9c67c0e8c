"""`passerelle reintegrate DIR`: one test per rejection rule, then an accepted submission."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from passerelle.archive import ledger
from passerelle.archive.submission import check

from .conftest import effective_config, git, make_submission, tags, write_json
from .steps import passerelle

pytestmark = pytest.mark.slow


@pytest.fixture
def good(history, tmp_path):
    return make_submission(history.archive, tmp_path / "submission")


def _problems(history, root):
    return check(root, history.archive, "lab-lesion-masks").problems


def _anat(root):
    return next(root.glob("sub-*/ses-*/anat"))


def _edit_json(path, **changes):
    doc = json.loads(path.read_text())
    for k, v in changes.items():
        if v is None:
            doc.pop(k, None)
        else:
            doc[k] = v
    path.write_text(json.dumps(doc))


def test_good_submission_passes_every_rule(history, good):
    assert _problems(history, good) == []


def test_layout_rule(history, good):
    (good / "notes.txt").write_text("to do\n")
    (_anat(good) / "lesion.nii.gz").write_bytes(b"")
    problems = _problems(history, good)
    assert any(p.startswith("layout: notes.txt: unexpected file at the top") for p in problems)
    assert any(
        p.startswith("layout: ") and "lesion.nii.gz: file name is not a BIDS name" in p
        for p in problems
    )


def test_description_needs_generated_by(history, good):
    _edit_json(good / "dataset_description.json", GeneratedBy=None)
    assert _problems(history, good) == [
        "description: dataset_description.json: GeneratedBy missing "
        "(a list of {Name, Version, ...})"
    ]


def test_sources_must_resolve_in_the_archive(history, good):
    side = next(_anat(good).glob("*_mask.json"))
    _edit_json(side, Sources=["bids:raw:sub-000000000000/ses-00000000/anat/x_T1w.nii.gz"])
    measurements = next(_anat(good).glob("*_measurements.json"))
    _edit_json(measurements, Sources=None)
    problems = _problems(history, good)
    assert len(problems) == 2, problems
    assert problems[0].endswith("is not in the archive") and problems[0].startswith("sources: ")
    assert "Sources missing" in problems[1]


def test_producers_described(history, good):
    write_json(good / "producers.json", {"people": [{"name": "Ada Lovelace", "role": "rater"}]})
    assert _problems(history, good) == [
        "producers: producers.json: people[0].institution missing",
        'producers: producers.json: funding missing (a list; ["none"] if unfunded)',
    ]


def test_licence_required(history, good):
    _edit_json(good / "dataset_description.json", License=None)
    assert _problems(history, good) == [
        "licence: dataset_description.json: no License (nor a LICENSE file)"
    ]


def test_phi_nifti_header_text_and_extension(history, good):
    mask = next(_anat(good).glob("*_mask.nii.gz"))
    img = nib.Nifti1Image(np.zeros((4, 4, 4), dtype=np.uint8), np.eye(4))
    img.header["descrip"] = b"Dr Martin 05/03/2024"
    img.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"comment"))
    nib.save(img, mask)
    problems = [p for p in _problems(history, good) if mask.name in p]
    assert any("header.descrip: a word that introduces a person" in p for p in problems)
    assert any("header.descrip: a date in clear" in p for p in problems)
    assert any("NIfTI header extension" in p for p in problems)


def test_phi_text_values(history, good):
    measurements = next(_anat(good).glob("*_measurements.json"))
    _edit_json(
        measurements, Comment="seen with Mme Dupont", ScanDate="2024-03-05", Ref="IPP 20240305123"
    )
    problems = _problems(history, good)
    assert any("Comment: a word that introduces a person" in p for p in problems)
    assert any("ScanDate: a date in clear" in p for p in problems)
    assert any("Ref: a long number that may be an identifier" in p for p in problems)
    assert all(p.startswith("phi: ") for p in problems), problems


def test_phi_labels_not_in_the_archive(history, good):
    src = next(good.glob("sub-*"))
    fake = good / "sub-1234567AB"
    shutil.copytree(src, fake)
    for path in sorted(fake.rglob("*"), reverse=True):
        path.rename(path.with_name(path.name.replace(src.name, "sub-1234567AB")))
    problems = _problems(history, good)
    assert any(
        p.startswith("phi: sub-1234567AB: subject label not in the archive") for p in problems
    )


def test_phi_dicom_refused(history, good, testdata):
    dicom = next((testdata / "ge_siemens_epi/In/20180918Si/mr_0003").iterdir())
    target = next(_anat(good).glob("*_mask.nii.gz")).with_name(
        next(_anat(good).glob("*_mask.nii.gz")).name.replace("_mask.nii.gz", "_scan.dcm")
    )
    shutil.copy(dicom, target)
    problems = _problems(history, good)
    assert any("DICOM is not accepted in a submission" in p for p in problems)


def test_rejection_archives_nothing_and_says_each_problem(history, good, fresh_copy):
    archive = fresh_copy()
    _edit_json(good / "dataset_description.json", License=None, GeneratedBy=None)
    proc = passerelle(
        "reintegrate",
        str(good),
        "--config",
        str(effective_config(history)),
        "--set",
        f"archive={archive}",
    )
    assert proc.returncode == 2
    assert proc.stdout.splitlines() == [
        "rejected: description: dataset_description.json: GeneratedBy missing "
        "(a list of {Name, Version, ...})",
        "rejected: licence: dataset_description.json: no License (nor a LICENSE file)",
    ]
    assert (
        proc.stderr.strip()
        == "passerelle: error: submission rejected: 2 problem(s), nothing archived"
    )
    assert len(tags(archive)) == 1 and not (archive / "derivatives").exists()


def test_accepted_submission_is_a_version_and_a_register_entry(history, contributed):
    archive = contributed
    assert len(tags(archive)) == len(tags(history.archive)) + 1
    target = archive / "derivatives" / "lab-lesion-masks"
    assert (target / ".git").exists() and "lab-lesion-masks" in (
        archive / ".gitmodules"
    ).read_text()
    mask = next(target.glob("sub-*/ses-*/anat/*_mask.nii.gz"))
    assert mask.is_symlink()  # annexed in the subdataset
    assert (
        git(target, "status", "--porcelain") == "" and git(archive, "status", "--porcelain") == ""
    )
    entry = json.loads(
        (archive / ".passerelle" / "contributions.jsonl").read_text().splitlines()[-1]
    )
    assert entry["kind"] == "reintegration" and entry["version"] == tags(archive)[-1]
    assert entry["who"] == [
        {"name": "Ada Lovelace", "institution": "Lab of imaging", "role": "rater"}
    ]
    assert entry["funding"] == ["Research agency grant 42"] and entry["sources"] == 1
    assert entry["on"] == [f"{mask.parts[-4]}/{mask.parts[-3]}"]
    rows = [r for r in ledger.load(archive).values() if r.dataset == "derivatives/lab-lesion-masks"]
    assert [(r.generated_by, r.retention_until) for r in rows] == [
        ("manual-lesion 1.0", "2031-12-31")
    ]
