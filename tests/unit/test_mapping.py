"""Series-to-BIDS rules: the shipped config/bids_map.yaml and the condition semantics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from passerelle.bids.mapping import (
    Alternatives,
    Target,
    condition_holds,
    map_series,
    match_fields,
)
from passerelle.dicom.reader import Header, read_header

from .dicom_copies import GE_EPI, PHILIPS, SI_MOSAIC_AP, XA30, dicoms

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    with (REPO / "config" / "bids_map.yaml").open() as fh:
        return yaml.safe_load(fh)["rules"]


def mr(description: str, protocol: str | None = None, **attrs: Any) -> dict[str, Any]:
    return {
        "Modality": "MR",
        "SeriesDescription": description,
        "ProtocolName": protocol if protocol is not None else description,
        **attrs,
    }


def target_of(rules: list[dict[str, Any]], attrs: dict[str, Any], n: int = 10) -> Target | None:
    return map_series(rules, match_fields(attrs, n))


# --- the shipped rules -----------------------------------------------------------------

SHIPPED = [
    (
        "xa30-t1w",
        mr("anat-T1w_acq-tfl", ImageType=["ORIGINAL", "PRIMARY", "M", "NONE"]),
        ("anat", "T1w", {"acq": "tfl"}),
    ),
    (
        "xa30-bold",
        mr("func-bold_task-fa_run-1", ImageType=["ORIGINAL", "PRIMARY", "FMRI", "NONE"]),
        ("func", "bold", {"task": "fa", "run": "1"}),
    ),
    (
        "ge-bold",
        mr(
            "Axial EPI-FMRI (Interleaved I to S)",
            "DCM2NIIX regression test",
            ScanningSequence=["EP", "GR"],
            ImageType=["ORIGINAL", "PRIMARY", "EPI", "NONE"],
        ),
        ("func", "bold", {"task": "rest", "acq": "InterleavedItoS"}),
    ),
    (
        "si-epi-fmap",
        mr("EPI PE=AP", ScanningSequence="EP", ImageType=["ORIGINAL", "PRIMARY", "M", "MOSAIC"]),
        ("fmap", "epi", {"dir": "AP"}),
    ),
    (
        "gre-phase",
        mr("gre_field_mapping", ImageType=["ORIGINAL", "PRIMARY", "P", "NONE"]),
        ("fmap", "phasediff", {}),
    ),
    (
        "gre-magnitude",
        mr("gre_field_mapping", ImageType=["ORIGINAL", "PRIMARY", "M", "NONE"]),
        ("fmap", "magnitude", {}),
    ),
    ("dwi-pa", mr("DWI_dir80_PA"), ("dwi", "dwi", {"dir": "PA"})),
    ("dwi-ap", mr("DWI_dir80_AP"), ("dwi", "dwi", {"dir": "AP"})),
    (
        "philips-mprage",
        mr("ADNI_Sag3D MPRAGE", "WIP ADNI_Sag3D MPRAGE", ScanningSequence="GR"),
        ("anat", "T1w", {}),
    ),
    ("t2-tse", mr("t2_tse_tra"), ("anat", "T2w", {})),
    ("flair", mr("FLAIR"), ("anat", "FLAIR", {})),
    ("t2-flair", mr("t2_flair_tra"), ("anat", "FLAIR", {})),
]


@pytest.mark.parametrize(
    ("attrs", "expected"), [c[1:] for c in SHIPPED], ids=[c[0] for c in SHIPPED]
)
def test_shipped_rules(rules, attrs, expected):
    target = target_of(rules, attrs)
    assert target is not None
    assert (target.datatype, target.suffix, target.entities) == expected


def test_magnitude_uses_echo_suffix_and_fieldmaps_point_at_func(rules):
    magnitude = target_of(rules, mr("gre_field_mapping", ImageType=["ORIGINAL", "M"]))
    phase = target_of(rules, mr("gre_field_mapping", ImageType=["ORIGINAL", "P"]))
    assert magnitude is not None and phase is not None
    assert magnitude.echo_suffix is True
    assert phase.echo_suffix is False
    assert "func" in magnitude.intended_for and "func" in phase.intended_for


@pytest.mark.parametrize(
    "attrs",
    [
        mr("asl_2d_tra", ImageType=["ORIGINAL", "PRIMARY", "ASL", "NONE"]),
        {**mr("anat-T1w_acq-tfl"), "Modality": "CT"},
        {"Modality": "MR"},
    ],
    ids=["asl", "ct", "no-description"],
)
def test_shipped_rules_leave_unknown_series_unmapped(rules, attrs):
    assert target_of(rules, attrs) is None


def test_epi_fieldmap_needs_epi_sequence(rules):
    # Without ScanningSequence EP the PE=AP series is not an EPI fieldmap.
    target = target_of(rules, mr("EPI PE=AP", ScanningSequence="GR"))
    assert target is None or target.suffix != "epi"


# Real headers through the reader, then the shipped rules.
REAL = [
    ("5_anat-T1w_acq-tfl", ("anat", "T1w", {"acq": "tfl"})),
    ("7_func-bold_task-fa_run-1", ("func", "bold", {"task": "fa", "run": "1"})),
    ("8_gre_field_mapping", ("fmap", "magnitude", {})),
    ("9_gre_field_mapping", ("fmap", "phasediff", {})),
    ("10_DWI_dir80_PA", ("dwi", "dwi", {"dir": "PA"})),
    ("17_DWI_dir80_AP", ("dwi", "dwi", {"dir": "AP"})),
    ("25_asl_2d_tra", None),
]


@pytest.mark.parametrize(("folder", "expected"), REAL, ids=[r[0] for r in REAL])
def test_real_xa30_headers(testdata, secret_key, rules, folder, expected):
    files = dicoms(testdata, f"{XA30}/{folder}")
    h = read_header(files[0], secret_key)
    assert isinstance(h, Header)
    target = target_of(rules, h.attrs, len(files))
    got = None if target is None else (target.datatype, target.suffix, target.entities)
    assert got == expected


@pytest.mark.parametrize(
    ("folder", "expected"),
    [
        (SI_MOSAIC_AP, ("fmap", "epi", {"dir": "AP"})),
        (GE_EPI, ("func", "bold", {"task": "rest", "acq": "InterleavedItoS"})),
        (PHILIPS, ("anat", "T1w", {})),
    ],
    ids=["siemens-mosaic", "ge-epi", "philips"],
)
def test_real_classic_headers(testdata, secret_key, rules, folder, expected):
    files = dicoms(testdata, folder)
    h = read_header(files[0], secret_key)
    assert isinstance(h, Header)
    target = target_of(rules, h.attrs, len(files))
    assert target is not None
    assert (target.datatype, target.suffix, target.entities) == expected


# --- match_fields ----------------------------------------------------------------------


def test_match_fields_adds_description_and_file_count():
    attrs = mr("series", "protocol", EchoTime=2.5)
    fields = match_fields(attrs, 7)
    assert fields["NumberOfFiles"] == 7
    assert fields["Description"] == Alternatives(["series", "protocol"])
    assert fields["EchoTime"] == 2.5
    assert "NumberOfFiles" not in attrs  # the header attributes are not modified
    assert match_fields({"ProtocolName": "only"}, 1)["Description"].options == ["only"]
    assert match_fields({}, 1)["Description"].options == []


# --- condition semantics on synthetic rules --------------------------------------------


def rule(name: str, match: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "match": match, "datatype": "anat", "suffix": "T1w", **extra}


def first(rules: list[dict[str, Any]], attrs: dict[str, Any], n: int = 1) -> str | None:
    target = map_series(rules, match_fields(attrs, n))
    return None if target is None else target.rule


def test_string_condition_is_a_regex_search():
    rules = [rule("r", {"SeriesDescription": "(?i)^t1_mp"})]
    assert first(rules, {"SeriesDescription": "T1_MPRAGE_sag"}) == "r"
    assert first(rules, {"SeriesDescription": "sag_t1_mprage"}) is None
    assert first(rules, {}) is None  # absent field never matches a regex


def test_regex_on_list_field_joins_with_backslash():
    rules = [rule("r", {"ImageType": {"regex": r"PRIMARY\\M\\"}})]
    assert first(rules, {"ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"]}) == "r"
    assert first(rules, {"ImageType": ["ORIGINAL", "PRIMARY", "P", "ND"]}) is None


def test_description_matches_series_description_or_protocol():
    rules = [rule("r", {"Description": "(?i)mprage"})]
    assert first(rules, {"SeriesDescription": "x", "ProtocolName": "MPRAGE"}) == "r"
    assert first(rules, {"SeriesDescription": "MPRAGE", "ProtocolName": "x"}) == "r"
    assert first(rules, {"SeriesDescription": "x", "ProtocolName": "y"}) is None


def test_named_groups_fill_entity_templates():
    rules = [
        rule(
            "r",
            {"Description": r"task-(?P<task>[a-z]+)(?:_run-(?P<run>\d+))?"},
            datatype="func",
            suffix="bold",
            entities={"task": "{task}", "run": "{run}", "acq": "{acq|std}"},
        )
    ]
    target = map_series(rules, match_fields({"SeriesDescription": "bold_task-nback_run-02"}, 1))
    assert target is not None
    assert target.entities == {"task": "nback", "run": "02", "acq": "std"}
    target = map_series(rules, match_fields({"SeriesDescription": "task-rest"}, 1))
    assert target is not None
    assert target.entities == {"task": "rest", "acq": "std"}


def test_entity_values_are_sanitised_to_alphanumerics():
    rules = [
        rule(
            "r",
            {"Description": r"acq-(?P<acq>\S+)"},
            entities={"acq": "{acq}"},
        )
    ]
    target = map_series(rules, match_fields({"SeriesDescription": "acq-hi_res.v2"}, 1))
    assert target is not None
    assert target.entities["acq"] == "hiresv2"
    assert target.entities["acq"].isalnum()


def test_func_without_task_falls_through_to_later_rules():
    rules = [
        rule("bold", {"Description": "bold"}, datatype="func", suffix="bold"),
        rule("fallback", {"Description": "bold"}),
    ]
    assert first(rules, {"SeriesDescription": "bold"}) == "fallback"
    rules[0]["entities"] = {"task": "rest"}
    assert first(rules, {"SeriesDescription": "bold"}) == "bold"


def test_first_matching_rule_wins():
    rules = [rule("a", {"Modality": "MR"}), rule("b", {"Modality": "MR"})]
    assert first(rules, {"Modality": "MR"}) == "a"
    assert first(list(reversed(rules)), {"Modality": "MR"}) == "b"


def test_every_condition_of_a_rule_must_hold():
    rules = [rule("r", {"Modality": "MR", "ScanningSequence": "EP"})]
    assert first(rules, {"Modality": "MR", "ScanningSequence": ["EP", "GR"]}) == "r"
    assert first(rules, {"Modality": "MR", "ScanningSequence": "GR"}) is None
    assert first(rules, {"Modality": "CT", "ScanningSequence": "EP"}) is None


@pytest.mark.parametrize(
    ("cond", "value", "expected"),
    [
        ({"any": ["P", "PHASE"]}, ["ORIGINAL", "PRIMARY", "P"], True),
        ({"any": ["P", "PHASE"]}, ["ORIGINAL", "PRIMARY", "M"], False),
        ({"any": ["m"]}, ["original", "primary", "M"], True),  # case-insensitive
        ({"any": ["EP"]}, "EP", True),  # single values count as one member
        ({"any": ["P"]}, ["ORIGINAL", "PRIMARY", "PHASE_MAP"], False),  # members, not substrings
        ({"all": ["ORIGINAL", "M"]}, ["ORIGINAL", "PRIMARY", "M"], True),
        ({"all": ["ORIGINAL", "P"]}, ["ORIGINAL", "PRIMARY", "M"], False),
        ({"none": ["DERIVED", "MOSAIC"]}, ["ORIGINAL", "PRIMARY", "M"], True),
        ({"none": ["DERIVED", "MOSAIC"]}, ["ORIGINAL", "PRIMARY", "MOSAIC"], False),
        ({"none": ["DERIVED"]}, None, True),
        ({"any": ["M"]}, None, False),
        ({"min": 2, "max": 3}, 2.41, True),
        ({"min": 2, "max": 3}, 3.0, True),
        ({"min": 2, "max": 3}, 3.01, False),
        ({"min": 2}, 1.99, False),
        ({"max": 100}, 30, True),
        ({"min": 0}, None, False),
        ({"min": 0}, "not a number", False),
        ({"min": 1000, "max": 3000}, [2000.0, 2500.0], True),  # first value of a list
        ({"equals": "mr"}, "MR", True),
        ({"equals": "MR"}, " MR ", True),
        ({"equals": "MR"}, "MRI", False),
        ({"equals": 2}, 2, True),
        ({"equals": 3000}, 3000.0, True),
        ({"equals": 2.5}, 2.5, True),
        ({"equals": 2.5}, 2.6, False),
        ({"equals": True}, True, True),
        ({"present": True}, "x", True),
        ({"present": True}, "", False),
        ({"present": True}, None, False),
        ({"present": True}, [], False),
        ({"present": False}, None, True),
        ({"present": False}, "x", False),
        ({"present": True}, 0, True),
        ({"regex": "^EP$"}, "EP", True),
        ({"regex": "^EP$"}, None, False),
        ({"regex": "EP", "any": ["GR"]}, ["EP", "GR"], True),
        ({"regex": "EP", "any": ["SE"]}, ["EP", "GR"], False),
        (2, 2.0, True),
        (2, 2.1, False),
        (2, None, False),
        (True, "x", True),
        (True, None, False),
        (False, None, True),
        (False, "x", False),
        ("(?i)ep", "SE\\EP", True),
        ("(?i)ep", None, False),
    ],
)
def test_condition_semantics(cond, value, expected):
    assert condition_holds(cond, value, {}) is expected


def test_conditions_on_description_alternatives():
    both = match_fields({"SeriesDescription": "s", "ProtocolName": "p"}, 1)["Description"]
    only_protocol = match_fields({"ProtocolName": "p"}, 1)["Description"]
    neither = match_fields({}, 1)["Description"]
    assert condition_holds({"equals": "p"}, both, {})
    assert condition_holds({"equals": "s"}, both, {})
    assert not condition_holds({"equals": "x"}, both, {})
    assert condition_holds({"any": ["P"]}, both, {})
    assert condition_holds({"present": True}, only_protocol, {})
    assert condition_holds({"present": True}, neither, {}) is False
    assert condition_holds({"present": False}, neither, {}) is True
    assert condition_holds(False, neither, {}) is True
    assert condition_holds("p", neither, {}) is False


def test_regex_groups_are_collected():
    groups: dict[str, str] = {}
    assert condition_holds(r"dir-(?P<dir>AP|PA)(?P<unused>x)?", "dwi_dir-PA", groups)
    assert groups == {"dir": "PA"}  # unmatched optional groups are left out


def test_numeric_range_on_real_rule_fields():
    rules = [
        rule("short", {"EchoTime": {"max": 10}}),
        rule("long", {"EchoTime": {"min": 10}}, suffix="T2w"),
    ]
    assert first(rules, {"EchoTime": 2.41}) == "short"
    assert first(rules, {"EchoTime": 90.0}) == "long"
    assert first(rules, {}) is None


def test_number_of_files_is_matchable():
    rules = [rule("many", {"NumberOfFiles": {"min": 100}}), rule("few", {"Modality": "MR"})]
    assert first(rules, {"Modality": "MR"}, n=150) == "many"
    assert first(rules, {"Modality": "MR"}, n=3) == "few"
