"""`make run`'s job on the demo inbox: valid BIDS, and no stamped identity anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from passerelle.demo import DEMO_IDENTITIES, DemoSourceError, build_demo_inbox

from .helpers import REPO, jobs_run, read_tsv, run_workflow, work
from .leaks import date_forms, fold, grep, leaks

pytestmark = pytest.mark.slow
CACHE = REPO / ".cache" / "demo-sources"


def _needles() -> list[str]:
    out: set[str] = set()
    for who in DEMO_IDENTITIES:
        for field, value in who.items():
            if field in ("folder", "sex"):
                continue
            for part in value.split(","):
                if field in ("birth_date", "study_dates"):
                    out |= set(date_forms(part))
                    continue
                out.add(fold(part))
                if "^" in part:
                    family, given = part.split("^", 1)
                    out |= {fold(family), fold(given), fold(f"{given} {family}")}
    return sorted(n for n in out if len(n) >= 4)


@pytest.fixture(scope="module")
def demo_run(key_file: Path, tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("demo")
    try:
        build_demo_inbox(base / "inbox", CACHE)
    except DemoSourceError as exc:
        pytest.skip(f"demo sources unavailable: {exc}")
    # With the derivatives the demo makes (`make run`): every T1w defaced and segmented.
    proc = run_workflow(
        base / "inbox", base / "out", key_file, "derivatives={suffixes: [T1w, T2w, FLAIR]}"
    )
    return base, proc


def test_demo_gives_valid_bids_and_accounts_for_every_file(demo_run) -> None:
    base, _ = demo_run
    validation = json.loads((base / "out" / "reports" / "bids_validation.json").read_text())
    assert validation["errors"] == 0, validation["issues"]
    bids = base / "out" / "bids"
    assert len(list(bids.glob("sub-*"))) == 2
    assert len(list(bids.glob("sub-*/ses-*"))) == 3
    assert len(list(bids.glob("sub-*/ses-*/anat/*_T1w.nii.gz"))) == 3
    inbox_files = {p.relative_to(base / "inbox").as_posix() for p in (base / "inbox").rglob("*")
                   if p.is_file()}  # fmt: skip
    rows = read_tsv(work(base / "out") / "manifest.tsv")
    assert {r["path"] for r in rows} == inbox_files


def test_demo_leaves_no_stamped_identity(demo_run) -> None:
    base, proc = demo_run
    needles = _needles()
    assert "dupont" in needles and "ipp-demo-0001" in needles and "2024-03-04" in needles
    assert leaks(base / "out", work(base / "out"), proc.stdout + proc.stderr, needles) == []
    assert grep(base / "inbox", needles)  # the identities were there to find


def test_demo_derivatives_name_existing_sources_and_keep_no_private_path(demo_run) -> None:
    base, _ = demo_run
    bids = base / "out" / "bids"
    deface, seg = (
        bids / "derivatives" / "passerelle-deface",
        bids / "derivatives" / "passerelle-seg",
    )
    assert len(list(deface.glob("sub-*/ses-*/anat/*_desc-defaced_T1w.nii.gz"))) == 3
    assert len(list(deface.glob("sub-*/ses-*/anat/*_desc-face_mask.nii.gz"))) == 3
    for pattern in ("*_desc-brain_mask.nii.gz", "*_dseg.nii.gz"):
        assert len(list(seg.glob(f"sub-*/ses-*/anat/{pattern}"))) == 3, pattern
    derived = [p for d in (deface, seg) for p in d.rglob("*.nii.gz")]
    for img in derived:
        side = json.loads(img.with_name(img.name.removesuffix(".nii.gz") + ".json").read_text())
        assert side["Parameters"]
        for uri in side["Sources"]:
            name, _, rel = uri.removeprefix("bids:").partition(":")
            assert name == "raw" and (bids / rel).is_file(), uri
    for ds in (deface, seg):
        desc = json.loads((ds / "dataset_description.json").read_text())
        assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Version"]
        assert (ds / desc["DatasetLinks"]["raw"] / "dataset_description.json").is_file()
    volumes = read_tsv(seg / "tissue_volumes.tsv")
    assert len(volumes) == 3 and all(900 < float(r["Brain_mL"]) < 2500 for r in volumes)
    # PROV documents: real activities and checksummed entities, no path of this machine.
    docs = sorted(deface.rglob("*_prov.json"))
    assert len(docs) == 3
    for doc in docs:
        text = doc.read_text()
        prov = json.loads(text)
        assert len(prov["activity"]) == 2 and all(
            len(e["passerelle:sha256"]) == 64 for e in prov["entity"].values()
        )
        assert str(base) not in text and "/root" not in text and "/home" not in text
    qc = sorted((work(base / "out") / "qc").glob("*.png"))
    assert len(qc) == 3 * 2 + 1


def test_a_new_release_level_reaches_published_sessions_without_rederiving(
    demo_run, key_file: Path
) -> None:
    # Last in this module: it turns the shared demo output into a public release.
    base, _ = demo_run
    bids = base / "out" / "bids"
    deface = bids / "derivatives" / "passerelle-deface"
    proc = run_workflow(
        base / "inbox",
        base / "out",
        key_file,
        "derivatives={suffixes: [T1w, T2w, FLAIR], release: public}",
    )
    for rule in ("pseudonymise_session", "convert_session", "deface_session", "segment_session"):
        assert jobs_run(proc, rule) == 0, rule
    assert jobs_run(proc, "finalize") == 1
    raw = sorted(bids.glob("sub-*/ses-*/anat/*_T1w.nii.gz"))
    assert len(raw) == 3
    for img in raw:
        rel = img.relative_to(bids)
        name = img.name.replace("_T1w.nii.gz", "_desc-defaced_T1w.nii.gz")
        assert img.read_bytes() == (deface / rel.parent / name).read_bytes(), rel
    assert not list((bids / "sourcedata" / "dicom").glob("sub-*/ses-*"))
    summary = json.loads((base / "out" / "reports" / "summary.json").read_text())
    assert summary["sessions_republished"] == 3
