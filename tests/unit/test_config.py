"""Configuration: one-line errors naming file, key and expectation; defaults; shipped files."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from passerelle.config import load_settings, load_yaml, settings_from
from passerelle.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SHIPPED_MAP = REPO / "config" / "bids_map.yaml"
SOURCE = "site/config.yaml"


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


@pytest.fixture
def raw(tmp_path: Path, inbox: Path) -> dict[str, Any]:
    return {
        "inbox": str(inbox),
        "output": str(tmp_path / "out"),
        "key_file": str(tmp_path / "k.key"),
        "bids_map": str(SHIPPED_MAP),
        "dataset": {"name": "x"},
    }


@pytest.fixture
def shipped_map() -> dict[str, Any]:
    with SHIPPED_MAP.open() as fh:
        return yaml.safe_load(fh)


def config_error(raw: dict[str, Any], base: Path, source: str = SOURCE) -> str:
    with pytest.raises(ConfigError) as info:
        settings_from(raw, source, base)
    message = str(info.value)
    assert "\n" not in message, message
    assert "Traceback" not in message
    return message


def write_map(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "map.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# --- errors ----------------------------------------------------------------------------


def test_unknown_top_level_key(raw, tmp_path):
    message = config_error({**raw, "ouptut_dir": "x"}, tmp_path)
    assert message.startswith(f"{SOURCE}:")
    assert "ouptut_dir" in message
    assert "output" in message.replace("ouptut_dir", "")  # the allowed keys are listed


def test_unknown_nested_key(raw, tmp_path):
    message = config_error({**raw, "convert": {"thread": 4}}, tmp_path)
    assert SOURCE in message
    assert "convert" in message and "thread" in message
    assert "threads" in message  # the allowed spelling is offered


def test_wrong_type(raw, tmp_path):
    message = config_error({**raw, "validate": "yes"}, tmp_path)
    assert SOURCE in message
    assert "key validate" in message
    assert "expected boolean" in message and "'yes'" in message


def test_wrong_nested_type(raw, tmp_path):
    message = config_error({**raw, "convert": {"threads": "four"}}, tmp_path)
    assert "convert.threads" in message
    assert "expected integer" in message


def test_value_below_minimum(raw, tmp_path):
    message = config_error({**raw, "convert": {"mem_mb": 10}}, tmp_path)
    assert "convert.mem_mb" in message and "256" in message


@pytest.mark.parametrize("key", ["inbox", "output", "key_file", "bids_map", "dataset"])
def test_missing_required_key(raw, tmp_path, key):
    del raw[key]
    message = config_error(raw, tmp_path)
    assert SOURCE in message
    assert f"'{key}'" in message and "required" in message


def test_missing_required_nested_key(raw, tmp_path):
    message = config_error({**raw, "dataset": {"license": "CC0"}}, tmp_path)
    assert "dataset" in message and "'name'" in message and "required" in message


def test_missing_inbox_folder(raw, tmp_path):
    message = config_error({**raw, "inbox": str(tmp_path / "nowhere")}, tmp_path)
    assert SOURCE in message and "inbox" in message and "nowhere" in message


def test_bids_map_unknown_datatype(raw, tmp_path, shipped_map):
    bad = copy.deepcopy(shipped_map)
    bad["rules"][2]["datatype"] = "spectro"
    path = write_map(tmp_path, bad)
    message = config_error({**raw, "bids_map": str(path)}, tmp_path)
    assert str(path) in message
    assert "rules.2.datatype" in message
    assert "'spectro'" in message and "anat" in message


@pytest.mark.parametrize(
    ("where", "mutate"),
    [
        ("sub", lambda r: r["rules"][0]["entities"].update(sub="x")),
        ("rules.1.match.EchoTime", lambda r: r["rules"][1]["match"].update(EchoTime={"lt": 3})),
        ("rules.3", lambda r: r["rules"][3].pop("suffix")),
        ("rules.4.suffix", lambda r: r["rules"][4].update(suffix="T2w_bad")),
        ("rules", lambda r: r.update(rules=[])),
        ("extra", lambda r: r.update(extra=1)),
    ],
)
def test_bids_map_schema_errors(raw, tmp_path, shipped_map, where, mutate):
    bad = copy.deepcopy(shipped_map)
    mutate(bad)
    path = write_map(tmp_path, bad)
    message = config_error({**raw, "bids_map": str(path)}, tmp_path)
    assert message.startswith(f"{path}:"), message
    assert where in message.removeprefix(f"{path}:")


def test_bids_map_missing_file(raw, tmp_path):
    path = tmp_path / "absent.yaml"
    message = config_error({**raw, "bids_map": str(path)}, tmp_path)
    assert str(path) in message and "not found" in message


def test_bids_map_not_a_mapping(raw, tmp_path):
    path = tmp_path / "map.yaml"
    path.write_text("- just\n- a list\n")
    message = config_error({**raw, "bids_map": str(path)}, tmp_path)
    assert str(path) in message and "mapping" in message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("inbox: [a, b\noutput: out\n", 2),
        ("inbox: in\noutput: out\n\tkey_file: k\n", 3),
        ("dataset:\n  name: x\n name: y\n", 3),
    ],
)
def test_malformed_yaml(tmp_path, text, line):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:")
    assert f"line {line}" in message
    assert "not valid YAML" in message


def test_malformed_bids_map_yaml(raw, tmp_path):
    path = tmp_path / "map.yaml"
    path.write_text("rules:\n  - name: [unclosed\n")
    message = config_error({**raw, "bids_map": str(path)}, tmp_path)
    assert message.startswith(f"{path}:") and "not valid YAML" in message


def test_config_file_not_a_mapping(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("just a string\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_settings(path)


def test_load_yaml_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")


# --- defaults and path resolution ------------------------------------------------------


def test_defaults_are_filled(raw, tmp_path, inbox):
    settings = settings_from(raw, SOURCE, tmp_path)
    assert settings.raw["validate"] is True
    convert = settings.convert
    assert convert["threads"] == 2
    assert convert["mem_mb"] == 2000
    assert convert["runtime"] == 30
    assert convert["compress"] is True
    assert convert["skip_derived"] is True
    assert "localizer" in convert["localizer_pattern"]
    assert settings.work == settings.output.with_name(settings.output.name + ".work")
    assert settings.inbox == inbox
    assert settings.bids_dir == settings.output / "bids"
    assert settings.reports_dir == settings.output / "reports"


def test_given_values_override_defaults(raw, tmp_path):
    raw = {**raw, "validate": False, "convert": {"threads": 8}, "work": str(tmp_path / "w")}
    settings = settings_from(raw, SOURCE, tmp_path)
    assert settings.raw["validate"] is False
    assert settings.convert["threads"] == 8
    assert settings.convert["mem_mb"] == 2000  # the other defaults are still filled
    assert settings.work == tmp_path / "w"


def test_relative_paths_resolve_against_base(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "map.yaml").write_text(SHIPPED_MAP.read_text())
    raw = {
        "inbox": "in",
        "output": "out",
        "key_file": "k.key",
        "bids_map": "cfg/map.yaml",
        "dataset": {"name": "x"},
    }
    settings = settings_from(raw, SOURCE, tmp_path)
    assert settings.inbox == tmp_path / "in"
    assert settings.output == tmp_path / "out"
    assert settings.bids_map_path == tmp_path / "cfg" / "map.yaml"
    assert settings.key_file == "k.key"


def test_shipped_config_and_bids_map_validate(inbox):
    with (REPO / "config" / "config.yaml").open() as fh:
        raw = yaml.safe_load(fh)
    raw["inbox"] = str(inbox)
    settings = settings_from(raw, "config/config.yaml", REPO)
    assert settings.bids_map_path == SHIPPED_MAP
    rules = settings.bids_map["rules"]
    assert rules and all({"name", "match", "datatype", "suffix"} <= set(r) for r in rules)
    names = [r["name"] for r in rules]
    assert len(names) == len(set(names))
    assert settings.raw["dataset"]["name"]
    assert settings.convert["compress"] is True


def test_load_settings_with_overrides(tmp_path, inbox):
    path = tmp_path / "config.yaml"
    path.write_text((REPO / "config" / "config.yaml").read_text())
    overrides = {"inbox": str(inbox), "output": str(tmp_path / "o"), "bids_map": str(SHIPPED_MAP)}
    settings = load_settings(path, overrides)
    assert settings.inbox == inbox
    assert settings.output == tmp_path / "o"


# --- regular expressions are compiled at validation time -----------------------------


def test_bids_map_invalid_regex_is_a_config_error(raw, tmp_path, shipped_map):
    bad = copy.deepcopy(shipped_map)
    bad["rules"][1]["match"]["Description"] = "(unclosed"
    path = write_map(tmp_path, bad)
    message = config_error({**raw, "bids_map": str(path)}, tmp_path)
    assert "rules.1.match.Description" in message


def test_invalid_localizer_pattern_is_a_config_error(raw, tmp_path):
    message = config_error({**raw, "convert": {"localizer_pattern": "[scout"}}, tmp_path)
    assert "convert.localizer_pattern" in message


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"risk": {"target_k": "five"}}, "key risk.target_k: expected integer"),
        ({"risk": {"remedies": {"model": 7}}}, "key risk.remedies.model: level 7 does not exist"),
        ({"risk": {"remedies": {"height": 1}}}, "key risk.remedies.height: unknown key"),
        ({"risk": {"accept": {"reason": "ok"}}}, "key risk.accept.reason"),
        (
            {"risk": {"hierarchies": {"age": [{"width": 10, "bottom": 70, "top": 30}]}}},
            "key risk.hierarchies.age.0: bottom must be below top",
        ),
        ({"linkage": {"match": 0.2, "non_match": 0.5}}, "key linkage.non_match: must be below"),
        ({"linkage": {"columns": {"dx": {}}}}, "key linkage.columns.dx: 'description' is required"),
    ],
)
def test_risk_and_linkage_errors_are_one_line(raw, tmp_path, section, expected):
    message = config_error({**raw, **section}, tmp_path)
    assert SOURCE in message and expected in message
    assert "\n" not in message
