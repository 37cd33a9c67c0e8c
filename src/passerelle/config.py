"""Load and validate every configuration file before any job starts.

Errors name the file, the key and what was expected, in one line.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from passerelle.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = REPO_ROOT / "workflow" / "schemas"


@cache
def _schema(name: str) -> dict[str, Any]:
    with (SCHEMA_DIR / f"{name}.schema.yaml").open() as fh:
        return yaml.safe_load(fh)


def _where(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    return path or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        return f"unknown key; expected one of: {allowed}"
    if error.validator == "required":
        return error.message.replace("is a required property", "is required")
    if error.validator == "enum":
        return f"expected one of {error.validator_value}, got {error.instance!r}"
    if error.validator == "type":
        got = f"{type(error.instance).__name__} {error.instance!r}"
        return f"expected {error.validator_value}, got {got}"
    if error.validator == "oneOf":
        form = error.schema.get("description", "see the schema")
        form = error.schema.get("description", "see the schema")
        return f"value {error.instance!r} matches no allowed form ({form})"
    return error.message


def validate(data: Any, schema_name: str, source: str) -> dict[str, Any]:
    """Validate against a schema, filling defaults; raise ConfigError naming file and key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at top level, got {type(data).__name__}")
    schema = _schema(schema_name)
    validator_cls = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_cls(schema).iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = _where(err)
        if err.validator == "additionalProperties":
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            prefix = "" if where == "(top level)" else f"{where}."
            where = prefix + (extra[0] if extra else "?")
        raise ConfigError(f"{source}: key {where}: {_describe(err)}")
    _fill_defaults(data, schema)
    return data


def _fill_defaults(data: dict[str, Any], schema: dict[str, Any]) -> None:
    for key, sub in schema.get("properties", {}).items():
        if key not in data and "default" in sub:
            data[key] = yaml.safe_load(yaml.safe_dump(sub["default"]))
        if isinstance(data.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(data[key], sub)


def load_yaml(path: Path) -> Any:
    try:
        with path.open() as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(
            f"{path}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})"
        ) from None


def default_work(output: Path) -> Path:
    return output.with_name(output.name + ".work")


def _check_regex(pattern: str, source: str, where: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"{source}: key {where}: invalid regular expression ({exc})") from None


@dataclass(frozen=True)
class Settings:
    """The validated run configuration with every path resolved."""

    raw: dict[str, Any]
    inbox: Path
    output: Path
    work: Path
    key_file: str | None
    bids_map_path: Path
    bids_map: dict[str, Any]
    deid_path: Path
    deid: dict[str, Any]
    archive: Path | None = None

    @property
    def bids_dir(self) -> Path:
        return self.output / "bids"

    @property
    def reports_dir(self) -> Path:
        return self.output / "reports"

    @property
    def convert(self) -> dict[str, Any]:
        return self.raw["convert"]

    @property
    def archiving(self) -> dict[str, Any]:
        return self.raw["archiving"]


def _check_archive(archive: Path, others: dict[str, Path], source: str) -> None:
    """The archive is shared with research: never inside the clinical side, nor the reverse."""
    for name, path in others.items():
        a, b = archive.resolve(), path.resolve()
        if a == b or b in a.parents or a in b.parents:
            raise ConfigError(
                f"{source}: key archive: {archive} overlaps the {name} folder {path}; "
                "give the archive a folder of its own"
            )


def settings_from(raw: dict[str, Any], source: str, base: Path) -> Settings:
    """Validate a config mapping (as Snakemake merged it) and resolve relative paths."""
    data = validate(copy.deepcopy(dict(raw)), "config", source)
    _check_regex(data["convert"]["localizer_pattern"], source, "convert.localizer_pattern")

    def resolve(value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (base / p)

    output = resolve(data["output"])
    # The private work area sits beside the output, not in it: it holds inbox paths.
    work = resolve(data["work"]) if data.get("work") else default_work(output)
    map_path = resolve(data["bids_map"])
    bids_map = validate(load_yaml(map_path), "bids_map", str(map_path))
    for i, rule in enumerate(bids_map["rules"]):
        for field, cond in rule["match"].items():
            pattern = (
                cond
                if isinstance(cond, str)
                else (cond.get("regex") if isinstance(cond, dict) else None)
            )
            if pattern is not None:
                _check_regex(pattern, str(map_path), f"rules.{i}.match.{field}")
    deid_path = resolve(data["deid"]) if data.get("deid") else REPO_ROOT / "config" / "deid.yaml"
    deid = validate(load_yaml(deid_path), "deid", str(deid_path))
    bands, shift = deid["age_bands"], deid["date_shift_days"]
    if not bands["bottom"] < bands["top"]:
        raise ConfigError(f"{deid_path}: key age_bands: bottom must be below top")
    if not shift["min"] <= shift["max"]:
        raise ConfigError(f"{deid_path}: key date_shift_days: min must not exceed max")
    from passerelle.risk.remedies import check_config

    check_config(data["risk"], bands, source)
    if not data["linkage"]["non_match"] < data["linkage"]["match"]:
        raise ConfigError(f"{source}: key linkage.non_match: must be below linkage.match")
    inbox = resolve(data["inbox"])
    if not inbox.is_dir():
        raise ConfigError(f"{source}: key inbox: folder {inbox} does not exist")
    archive = resolve(data["archive"]) if data.get("archive") else None
    if archive is not None:
        from passerelle.archive.records import check_tag_scheme

        _check_archive(archive, {"inbox": inbox, "output": output, "work": work}, source)
        check_tag_scheme(data["archiving"]["tag"], source)
    return Settings(
        raw=data,
        inbox=inbox,
        output=output,
        work=work,
        key_file=data.get("key_file"),
        bids_map_path=map_path,
        bids_map=bids_map,
        deid_path=deid_path,
        deid=deid,
        archive=archive,
    )


def load_settings(path: Path, overrides: dict[str, Any] | None = None) -> Settings:
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at top level")
    _merge(raw, overrides or {})
    return settings_from(raw, str(path), Path.cwd())


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
