"""The synthetic-inbox generator: identities, UID remapping, determinism, session grouping."""

from __future__ import annotations

import gzip
import hashlib
import io
import warnings
from collections import defaultdict
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from passerelle import synth
from passerelle.config import settings_from
from passerelle.plan import prepare
from passerelle.synth import STANDARD_UID_ROOT, build_synthetic_inbox, main

REPO = Path(__file__).resolve().parents[2]
SOURCE = "ge_siemens_epi/In/20180918Si"  # 4 Siemens mosaic series, 8 files, 1.5 MB
PATIENTS, STUDIES = 2, 2
# UI attributes that name a class or scheme: kept as they are, by design.
KEPT_KEYWORDS = {"TransferSyntaxUID", "CodingSchemeUID", "ImplementationClassUID"}

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _load(path: Path) -> Dataset:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data))


def _uids(ds: Dataset, path: str = "") -> list[tuple[str, str]]:
    """(element path, value) of every UI value at any depth, in dataset order."""
    found: list[tuple[str, str]] = []
    for elem in ds:
        if elem.VR == "SQ":
            for n, item in enumerate(elem.value):
                found += _uids(item, f"{path}{elem.keyword}[{n}]>")
        elif elem.VR == "UI" and elem.value:
            values = elem.value if isinstance(elem.value, MultiValue | list) else [elem.value]
            name = elem.keyword or str(elem.tag)
            found += [(path + name, str(v)) for v in values]
    return found


def _all_uids(path: Path) -> list[tuple[str, str]]:
    ds = _load(path)
    return _uids(ds.file_meta, "meta>") + _uids(ds)


def _is_class(name: str, value: str) -> bool:
    leaf = name.rsplit(">", 1)[-1]
    return value.startswith(STANDARD_UID_ROOT) or leaf.endswith("ClassUID") or leaf in KEPT_KEYWORDS


def _files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def _digests(root: Path) -> dict[str, str]:
    return {rel: hashlib.sha256(p.read_bytes()).hexdigest() for rel, p in _files(root).items()}


@pytest.fixture(scope="module")
def source(testdata: Path) -> Path:
    return testdata / SOURCE


@pytest.fixture(scope="module")
def inbox(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("synth") / "inbox"
    counts = build_synthetic_inbox([source], dest, PATIENTS, STUDIES, seed=7)
    assert counts["files"] == 8 * PATIENTS * STUDIES
    assert counts["skipped"] == 5  # the README-*.txt files
    return dest


def test_layout_and_identities(inbox: Path, source: Path):
    files = _files(inbox)
    source_dicoms = sorted(
        p.relative_to(source).as_posix() for p in source.rglob("*.dcm") if p.is_file()
    )
    sessions: dict[tuple[str, str], list[Dataset]] = defaultdict(list)
    for rel in files:
        patient, study, *rest = rel.split("/")
        assert "/".join(rest) in source_dicoms, rel
        sessions[(patient, study)].append(_load(files[rel]))
    assert sorted(sessions) == [
        (f"P{i:05d}", f"S{j:02d}") for i in range(1, PATIENTS + 1) for j in range(1, STUDIES + 1)
    ]
    ids, names, study_uids = set(), set(), set()
    for (patient, _), group in sessions.items():
        assert len(group) == len(source_dicoms)
        for attr in ("PatientID", "PatientName", "PatientBirthDate", "AccessionNumber"):
            assert len({str(ds[attr].value) for ds in group}) == 1, attr
        assert len({ds.StudyInstanceUID for ds in group}) == 1
        assert len({ds.StudyDate for ds in group}) == 1
        ids.add((patient, group[0].PatientID))
        names.add((patient, str(group[0].PatientName)))
        study_uids.add(group[0].StudyInstanceUID)
        assert "^" in str(group[0].PatientName)
        assert all(ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID for ds in group)
    assert len(ids) == len({i for _, i in ids}) == PATIENTS
    assert len(names) == len({n for _, n in names}) == PATIENTS
    assert len(study_uids) == PATIENTS * STUDIES
    original = _load(next(source.rglob("*.dcm")))
    assert original.PatientID not in {i for _, i in ids}
    assert original.StudyDate not in {ds.StudyDate for g in sessions.values() for ds in g}


def test_no_source_uid_survives(inbox: Path, source: Path):
    source_uids = {
        value
        for p in source.rglob("*.dcm")
        for name, value in _all_uids(p)
        if not _is_class(name, value)
    }
    assert source_uids
    for path in _files(inbox).values():
        ds = _load(path)
        # Standard elements only: private ones may be implicit-VR (UN) and are not UIDs to us.
        leaked = {
            value
            for name, value in _uids(ds.file_meta) + _uids(ds)
            if value in source_uids and not name.split(">")[-1].startswith("(")
        }
        assert not leaked, f"{path}: {leaked}"


def test_references_consistent(inbox: Path, source: Path):
    """Within one (patient, study) each source UID has exactly one new UID, and back."""
    files = _files(inbox)
    per_session: dict[tuple[str, str], dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    shared: dict[str, int] = defaultdict(int)  # files of P00001/S01 holding each source UID
    for rel, path in files.items():
        patient, study, tail = rel.split("/", 2)
        before, after = _all_uids(source / tail), _all_uids(path)
        assert [n for n, _ in before] == [n for n, _ in after]  # same structure
        for (name, old), (_, new) in zip(before, after, strict=True):
            if _is_class(name, old):
                assert new == old
            else:
                assert new.startswith("2.25.")
                per_session[(patient, study)][old].add(new)
        if (patient, study) == ("P00001", "S01"):
            for old in {old for name, old in before if not _is_class(name, old)}:
                shared[old] += 1
    all_new: list[set[str]] = []
    for mapping in per_session.values():
        assert all(len(news) == 1 for news in mapping.values())  # a function...
        news = {next(iter(n)) for n in mapping.values()}
        assert len(news) == len(mapping)  # ...and one-to-one
        all_new.append(news)
    # Sessions share no instance UID.
    assert sum(len(n) for n in all_new) == len(set().union(*all_new))
    # The check has teeth: the study UID is in every file, series UIDs in several.
    assert max(shared.values()) == len(files) // (PATIENTS * STUDIES)
    assert sum(1 for n in shared.values() if n >= 2) >= 4


def test_deterministic(inbox: Path, source: Path, tmp_path: Path, monkeypatch):
    # The fixture built serially; this build goes through the process pool.
    monkeypatch.setattr(synth, "PARALLEL_THRESHOLD", 1)
    again = tmp_path / "again"
    assert main(["--source", str(source), "--patients", "2", "--studies", "2", "--seed", "7",
                 str(again)]) == 0  # fmt: skip
    assert _digests(again) == _digests(inbox)
    other = tmp_path / "other"
    build_synthetic_inbox([source], other, 1, 1, seed=8)
    assert (
        _digests(other)["P00001/S01/mr_0003/epi_pe_ap-00001.dcm"]
        != (_digests(inbox)["P00001/S01/mr_0003/epi_pe_ap-00001.dcm"])
    )


def test_refuses_non_empty_dest(source: Path, tmp_path: Path):
    (tmp_path / "x").write_text("left over")
    with pytest.raises(FileExistsError):
        build_synthetic_inbox([source], tmp_path, 1, 1)


def test_gzip_round_trip(testdata: Path, tmp_path: Path):
    # One Philips slice in its own folder: gzipped in, gzipped out, still a valid instance.
    folder = tmp_path / "src"
    folder.mkdir()
    name = "1301_0001.dcm.gz"
    (folder / name).write_bytes((testdata / "philips_mprage_classic/In" / name).read_bytes())
    counts = build_synthetic_inbox([folder], tmp_path / "out", 1, 1)
    assert counts["files"] == 1
    out = tmp_path / "out/P00001/S01" / name
    assert out.read_bytes()[:2] == b"\x1f\x8b"
    ds = _load(out)
    assert ds.PatientID.startswith("SYN")
    assert ds.pixel_array.shape == (256, 256)


def test_index_groups_sessions(inbox: Path, secret_key, tmp_path: Path):
    raw = {
        "inbox": str(inbox),
        "output": str(tmp_path / "out"),
        "key_file": None,
        "bids_map": str(REPO / "config" / "bids_map.yaml"),
        "dataset": {"name": "x"},
    }
    plan = prepare(settings_from(raw, "test", tmp_path), secret_key)
    assert plan.files_read == 8 * PATIENTS * STUDIES
    assert len(plan.pending) == PATIENTS * STUDIES
    assert len({sub for sub, _ in plan.pending}) == PATIENTS
    assert plan.counts.get("quarantined", 0) == 0
