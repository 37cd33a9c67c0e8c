"""Linkage of a warehouse table through keyed encodings only: deterministic on the subject
label, probabilistic with Fellegi-Sunter; undecided pairs to review; the column whitelist."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest

from passerelle.config import _fill_defaults, _schema
from passerelle.keys import SecretKey
from passerelle.labels import patient_key, subject_label
from passerelle.linkage.run import run_link

from .dicom_copies import PHILIPS, dicoms, load, save

pytestmark = pytest.mark.testdata
KEY = SecretKey(b"k" * 32)
FAMILIES = [
    "MARTIN",
    "BERNARD",
    "THOMAS",
    "PETIT",
    "ROBERT",
    "RICHARD",
    "DURAND",
    "DUBOIS",
    "MOREAU",
    "LAURENT",
    "SIMON",
    "MICHEL",
    "LEFEBVRE",
    "LEROY",
    "ROUX",
    "DAVID",
    "BERTRAND",
    "MOREL",
    "FOURNIER",
    "GIRARD",
    "BONNET",
    "DUPONT",
    "LAMBERT",
    "FONTAINE",
    "ROUSSEAU",
    "VINCENT",
    "MULLER",
    "LEFEVRE",
    "FAURE",
    "ANDRE",
    "MERCIER",
    "BLANC",
]
GIVEN = ["Camille", "Louise", "Léa", "Manon", "Chloé", "Inès", "Hugo", "Lucas", "Théo", "Jules",
         "Nathan", "Arthur", "Élodie", "Mathilde", "Gabriel", "Raphaël", "Zoé", "Clément",
         "Anaïs", "Quentin", "Margaux", "Antoine", "Julie", "Maxime"]  # fmt: skip
WHITELIST = {
    "diagnosis": {"description": "main diagnosis (ICD-10 chapter)"},
    "mmse": {"description": "mini-mental state examination", "units": "points"},
    "comment": {"description": "clinician's remark", "free_text": True},
}


def _typo(text: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(text) - 1)
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


@pytest.fixture(scope="module")
def site(testdata: Path, tmp_path_factory: pytest.TempPathFactory):
    """60 imaging subjects (real DICOM copies, planted identities) and the released side."""
    rng = random.Random(11)
    base = tmp_path_factory.mktemp("link")
    src = dicoms(testdata, PHILIPS, 1)[0]
    people = []
    seen = set()
    while len(people) < 58:
        p = (rng.choice(FAMILIES), rng.choice(GIVEN), f"{rng.randint(1935, 2004)}"
             f"{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}", rng.choice("MF"))  # fmt: skip
        if p[:2] not in seen:
            seen.add(p[:2])
            people.append(p)
    # Twins: same family, birth date and sex, given names one letter apart.
    people += [("GARNIER", "Jean", "19720304", "M"), ("GARNIER", "Jeanne", "19720304", "M")]
    ipps = [f"IPP{600100 + i}" for i in range(len(people))]
    labels = [subject_label(KEY, patient_key("", ipp)) for ipp in ipps]
    for (family, given, birth, sex), ipp, label in zip(people, ipps, labels, strict=True):
        ds = load(src)
        ds.PatientName, ds.PatientID = f"{family}^{given}", ipp
        ds.PatientBirthDate, ds.PatientSex = birth, sex
        rel = f"export/{ipp}/slice.dcm"
        save(ds, base / "inbox" / rel)
        spec = base / "work" / "specs" / f"sub-{label}" / "ses-01.json"
        spec.parent.mkdir(parents=True)
        spec.write_text(json.dumps({"series": [{"files": [[rel, 0, 0]]}]}))
    bids = base / "out" / "bids"
    bids.mkdir(parents=True)
    (bids / "participants.tsv").write_text(
        "participant_id\tsex\tage_band\n" + "".join(f"sub-{lb}\tn/a\tn/a\n" for lb in labels)
    )
    cfg = {"columns": WHITELIST}
    _fill_defaults(cfg, _schema("config")["properties"]["linkage"])
    settings = SimpleNamespace(
        raw={"linkage": cfg}, bids_dir=bids, work=base / "work", inbox=base / "inbox",
        output=base / "out",
    )  # fmt: skip
    return base, settings, people, ipps, labels


def _warehouse(base: Path, people, ipps, rng: random.Random) -> tuple[Path, dict[int, int]]:
    """The warehouse export in clear: 50 of the imaging patients (some with typos), 25 others.
    Returns the table and, for each data line, the index of the true imaging patient."""
    rows, truth = [], {}
    members = [*range(50), 58, 59]
    for i in members:
        family, given, birth, sex = people[i]
        if i < 50 and rng.random() < 0.3:
            family = _typo(family, rng)
        if i < 50 and rng.random() < 0.1:
            birth = birth[:6] + f"{(int(birth[6:]) % 28) + 1:02d}"  # a wrong day
        truth[len(rows) + 2] = i
        rows.append([ipps[i], family, given, f"{birth[6:]}/{birth[4:6]}/{birth[:4]}"[::1], sex])
    for n in range(25):
        rows.append([f"IPP9{n:05d}", rng.choice(FAMILIES) + "E", rng.choice(GIVEN),
                     f"{rng.randint(1, 28):02d}/01/19{rng.randint(30, 99)}", "F"])  # fmt: skip
    path = base / "dwh_export.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["IPP", "NOM", "PRENOM", "DDN", "SEXE", "diagnosis", "mmse", "comment", "phone"])
        for n, r in enumerate(rows):
            comment = "vu par le Dr Martin en consultation" if n == 3 else "stable"
            # The warehouse writes dates day first; the encoder reads digits as YYYYMMDD.
            d, m, y = r[3].split("/")
            w.writerow([*r[:3], f"{y}-{m}-{d}", r[4], "G30", 100 + n, comment, "0472112233"])
    return path, truth


def _encode(base: Path, table: Path, *args: str) -> Path:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "warehouse_encode", Path(__file__).resolve().parents[2] / "scripts" / "warehouse_encode.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    key_file = base / "project.key"
    key_file.write_bytes(KEY.material)
    key_file.chmod(0o600)
    out = base / f"keyed_{len(args)}.csv"
    assert mod.main(["--key", str(key_file), "--in", str(table), "--out", str(out), *args]) == 0
    return out


def test_probabilistic_links_on_encodings_and_sends_doubt_to_review(site):
    base, settings, people, ipps, labels = site
    table, truth = _warehouse(base, people, ipps, random.Random(5))
    keyed = _encode(base, table, "--family", "NOM", "--given", "PRENOM", "--birth-date", "DDN",
                    "--sex", "SEXE", "--ipp", "IPP")  # fmt: skip
    text = keyed.read_text()
    for family, given, birth, _ in people:
        assert family not in text and given not in text  # no identity in clear leaves
        assert f"{birth[:4]}-{birth[4:6]}-{birth[6:]}" not in text
    # The linker must not lean on the label: drop it, as a warehouse without IPPs would.
    rows = list(csv.DictReader(keyed.open()))
    with keyed.open("w", newline="") as fh:
        w = csv.DictWriter(fh, [c for c in rows[0] if c != "participant_id"], extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    review = base / "review.tsv"
    outcome = run_link(settings, KEY, keyed, "probabilistic", review)
    phenotype = (settings.bids_dir / "phenotype" / "clinical.tsv").read_text().splitlines()
    assert phenotype[0] == "participant_id\tdiagnosis\tmmse\tcomment"
    # Precision: every linked row went to its true subject (the test's mmse = 100 + row).
    linked = [r.split("\t") for r in phenotype[1:]]
    assert len(linked) == outcome.matched_rows >= 45  # recall: at least 45 of 52 members
    for label, _dx, mmse, _comment in linked:
        line = int(mmse) - 100 + 2
        assert line in truth, f"a non-member row was linked to {label}"
        assert label == f"sub-{labels[truth[line]]}"
    # The non-members (the last 25 lines) stay unmatched.
    assert outcome.unmatched >= 25
    # Doubt goes to review: the twins compete for each other's rows.
    lines = review.read_text().splitlines()
    assert lines[0].split("\t")[:3] == ["table_line", "candidate", "probability"]
    assert outcome.undecided == len(lines) - 1 >= 1
    twins = {f"sub-{labels[58]}", f"sub-{labels[59]}"}
    assert any(line.split("\t")[1] in twins for line in lines[1:]), lines
    # The whitelist: phone (and the encodings) never enter; free text screened.
    assert outcome.rejected == {"phone": "not in linkage.columns"}
    assert outcome.blanked == {"comment": 1}
    assert not any("Martin" in r for r in phenotype)
    meta = json.loads((settings.bids_dir / "phenotype" / "clinical.json").read_text())
    assert meta["mmse"] == {"Description": "mini-mental state examination", "Units": "points"}


def test_deterministic_joins_on_the_keyed_label(site):
    base, settings, people, ipps, _labels = site
    table, truth = _warehouse(base, people, ipps, random.Random(6))
    keyed = _encode(base, table, "--ipp", "IPP")
    outcome = run_link(settings, KEY, keyed, "deterministic", base / "review_det.tsv")
    assert outcome.matched_rows == len(truth)  # every member, typos or not
    assert outcome.subjects == len(truth)
    assert outcome.unmatched == 25
    assert outcome.undecided == 0
    # Identity columns the encoder did not consume are still not whitelisted: rejected.
    assert set(outcome.rejected) == {"NOM", "PRENOM", "DDN", "SEXE", "phone"}
    text = (settings.bids_dir / "phenotype" / "clinical.tsv").read_text()
    assert "NOM" not in text and "IPP" not in text


def test_undeclared_free_text_is_refused(site, tmp_path):
    _base, settings, _people, _ipps, labels = site
    table = tmp_path / "t.tsv"
    table.write_text(
        "participant_id\tdiagnosis\tnotes\n"
        f"sub-{labels[0]}\tG30\tpatient revu avec sa fille le mardi matin\n"
    )
    cfg = dict(settings.raw["linkage"], columns={**WHITELIST, "notes": {"description": "notes"}})
    s = SimpleNamespace(**{**vars(settings), "raw": {"linkage": cfg}})
    outcome = run_link(s, KEY, table, "deterministic", tmp_path / "r.tsv")
    assert outcome.rejected == {"notes": "free text, not declared free_text in linkage.columns"}


def test_a_small_table_still_links_exact_agreement():
    """EM cannot separate m from u on a handful of pairs: the priors keep it sensible."""
    from passerelle.linkage.encode import CLINICAL_FIELDS, encode_record
    from passerelle.linkage.fs import link

    people = [
        {"family": "Dupont", "given": "Jeanne", "birth_date": "19780512", "sex": "F"},
        {"family": "Moreau", "given": "Lucien", "birth_date": "19610923", "sex": "M"},
    ]
    other = {"family": "Durand", "given": "Paul", "birth_date": "19500101", "sex": "M"}
    left = [encode_record(KEY, p, CLINICAL_FIELDS) for p in [*people, other]]
    right = [encode_record(KEY, p, CLINICAL_FIELDS) for p in people]
    decisions, _model = link(left, right, CLINICAL_FIELDS)
    assert {(d.left, d.right) for d in decisions if d.status == "match"} == {(0, 0), (1, 1)}
