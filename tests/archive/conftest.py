"""One real archive, built by the real workflow (Snakemake, dcm2niix, DataLad, git-annex).

Three synthetic patients are made from real Siemens mosaics; the first run sees one, the
second run the same inbox again, the third a second patient. Later tests read that history
or work on copies of it (the archive after the first version is kept as a snapshot).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from passerelle.synth import build_synthetic_inbox
from tests.workflow.helpers import REPO, run_workflow, work

SOURCE = "ge_siemens_epi/In/20180918Si"


# git-annex comes from the wheel beside this python, as in every passerelle process.
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, env=ENV
    ).stdout


def tags(archive: Path) -> list[str]:
    return git(archive, "tag", "--list", "--sort=creatordate").split()


def copy_archive(src: Path, dst: Path) -> Path:
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)
    return dst


@dataclass
class History:
    base: Path
    pool: Path
    inbox: Path
    output: Path
    archive: Path
    key_file: Path
    snapshot_v1: Path  # the archive right after its first version
    runs: list[subprocess.CompletedProcess[str]]

    @property
    def work(self) -> Path:
        return work(self.output)

    def patients(self) -> list[str]:
        return sorted(p.name for p in self.pool.iterdir())

    def add(self, patient: str) -> None:
        os.symlink(self.pool / patient, self.inbox / patient)

    def run(self, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_workflow(
            self.inbox,
            self.output,
            self.key_file,
            f"archive={self.archive}",
            *extra,
            "--configfile",
            str(REPO / "config" / "config.yaml"),
            str(self.base / "archiving.yaml"),
            check=check,
        )


@pytest.fixture(scope="session")
def history(testdata: Path, key_file: Path, tmp_path_factory: pytest.TempPathFactory) -> History:
    base = tmp_path_factory.mktemp("archive")
    pool = base / "pool"
    build_synthetic_inbox([testdata / SOURCE], pool, patients=3, studies=1, seed=5)
    (base / "inbox").mkdir()
    h = History(
        base,
        pool,
        base / "inbox",
        base / "out",
        base / "archive",
        key_file,
        base / "snapshot-v1",
        [],
    )
    # The first patient's delivery is kept until 2030; the others follow the project (no end).
    (base / "archiving.yaml").write_text(
        "archiving:\n  retention:\n    deliveries:\n"
        "      - {name: cohort-a, match: 'P00001/*', until: '2030-01-01'}\n"
    )
    first = h.patients()[0]
    h.add(first)
    h.runs.append(h.run())
    copy_archive(h.archive, h.snapshot_v1)
    h.runs.append(h.run())  # nothing new
    h.add(h.patients()[1])
    h.runs.append(h.run())
    return h


@pytest.fixture
def fresh_copy(history: History, tmp_path: Path):
    """A private copy of the archive at its first version, for tests that break things."""

    def make(name: str = "copy") -> Path:
        return copy_archive(history.snapshot_v1, tmp_path / name)

    return make


def effective_config(history: History) -> Path:
    return history.work / "config.effective.json"


def last_run_id(history: History) -> str:
    done = sorted((history.work / "runs").glob("*.done"), key=lambda p: p.stat().st_mtime)
    return done[-1].name.removesuffix(".done")


def rmtree(path: Path) -> None:
    for root, dirs, _ in os.walk(path):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
    shutil.rmtree(path)


def write_json(path: Path, obj: object) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))


def make_submission(archive: Path, dest: Path) -> Path:
    """A lab's manual lesion masks and measurements for one archived session, done right."""
    import nibabel as nib
    import numpy as np

    from passerelle.archive import ledger

    row = sorted(
        (r for r in ledger.load(archive).values() if r.dataset == "."), key=lambda r: r.key
    )[0]
    sub, ses = row.subject, row.session
    raw = sorted((archive / f"sub-{sub}" / f"ses-{ses}").glob("*/*.nii.gz"))[0]
    source = f"bids:raw:{raw.relative_to(archive).as_posix()}"
    write_json(
        dest / "dataset_description.json",
        {
            "Name": "Lab lesion masks",
            "BIDSVersion": "1.10.0",
            "DatasetType": "derivative",
            "GeneratedBy": [
                {
                    "Name": "manual-lesion",
                    "Version": "1.0",
                    "Description": "manual lesion outlines drawn in ITK-SNAP",
                }
            ],
            "License": "CC-BY-4.0",
        },
    )
    write_json(
        dest / "producers.json",
        {
            "people": [{"name": "Ada Lovelace", "institution": "Lab of imaging", "role": "rater"}],
            "funding": ["Research agency grant 42"],
            "retention_until": "2031-12-31",
        },
    )
    anat = dest / f"sub-{sub}" / f"ses-{ses}" / "anat"
    anat.mkdir(parents=True)
    mask = anat / f"sub-{sub}_ses-{ses}_desc-lesion_mask.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), dtype=np.uint8), np.eye(4)), mask)
    write_json(mask.with_name(mask.name.replace(".nii.gz", ".json")), {"Sources": [source]})
    write_json(
        anat / f"sub-{sub}_ses-{ses}_desc-lesion_measurements.json",
        {"Sources": [source], "LesionVolume_mm3": 1234.5, "Rater": "rater-1"},
    )
    return dest


@pytest.fixture(scope="session")
def contributed(history: History, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole history's archive plus one accepted outside submission."""
    from .steps import passerelle

    base = tmp_path_factory.mktemp("contributed")
    archive = copy_archive(history.archive, base / "archive")
    submission = make_submission(archive, base / "submission")
    proc = passerelle(
        "reintegrate",
        str(submission),
        "--config",
        str(effective_config(history)),
        "--set",
        f"archive={archive}",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return archive
