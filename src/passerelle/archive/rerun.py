"""`passerelle rerun VERSION`: regenerate a version from the same inbox, into a fresh archive,
with the configuration that version recorded, and compare every output file.

Files are compared by their git object in each archive's tree: for an annexed file that is
its symlink to the SHA256E key, so equal objects mean identical annex keys (same bytes).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from passerelle import __version__
from passerelle.archive import records
from passerelle.archive.layout import remove_tree
from passerelle.archive.tools import git
from passerelle.config import REPO_ROOT, Settings
from passerelle.errors import PasserelleError

# Files describing the archive itself (versions, ledger, CHANGES), not outputs of the run.
_NOT_OUTPUTS = (".passerelle/", ".datalad/", ".git", "CHANGES")


def tree(archive: Path, ref: str) -> dict[str, str]:
    """{path: git object} of every file at ref, subdatasets included."""
    out: dict[str, str] = {}
    for line in git(archive, "ls-tree", "-r", ref).splitlines():
        meta, path = line.split("\t", 1)
        _mode, kind, sha = meta.split()
        if kind == "commit":  # a subdataset, pinned at this commit
            for sub_path, sub_sha in tree(archive / path, sha).items():
                out[f"{path}/{sub_path}"] = sub_sha
        elif not path.startswith(_NOT_OUTPUTS) and "/.datalad/" not in path:
            out[path] = sha
    return out


def _session(path: str) -> str | None:
    parts = path.split("/")
    for i, part in enumerate(parts[:-1]):
        if part.startswith("sub-") and i + 1 < len(parts) - 1 and parts[i + 1].startswith("ses-"):
            return f"{part}/{parts[i + 1]}"
    return None


@dataclass
class Comparison:
    identical: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra_sessions: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not (self.different or self.missing)

    def as_dict(self) -> dict[str, Any]:
        return {
            "identical": len(self.identical),
            "different": self.different,
            "missing": self.missing,
            "extra_sessions": sorted(self.extra_sessions),
        }


def compare(version: dict[str, str], regenerated: dict[str, str]) -> Comparison:
    """Session files of the version against the regenerated ones; dataset-level files are
    compared too, unless the regenerated run holds sessions the version does not."""
    c = Comparison()
    sessions = {_session(p) for p in version} - {None}
    c.extra_sessions = {_session(p) for p in regenerated} - {None} - sessions
    for path, obj in sorted(version.items()):
        if _session(path) is None and c.extra_sessions:
            continue  # participants.tsv and the like list the extra sessions too
        if path not in regenerated:
            c.missing.append(path)
        elif regenerated[path] == obj:
            c.identical.append(path)
        else:
            c.different.append(path)
    return c


def rerun(settings: Settings, tag: str, cores: int = 2) -> tuple[Comparison, Path]:
    archive = settings.archive
    record = records.read_version(archive, tag)
    if record.get("kind") != "run":
        raise PasserelleError(f"{archive.name}: {tag} is not a version made by a workflow run")
    if record["passerelle"] != __version__:
        print(
            f"passerelle: warning: {tag} was made by passerelle {record['passerelle']}, this "
            f"is {__version__}; differences may come from the software",
            file=sys.stderr,
        )
    doc = yaml.safe_load(git(archive, "show", f"{tag}:{record['config_file']}"))
    place = settings.work / "rerun" / tag
    remove_tree(place)
    place.mkdir(parents=True)
    (place / "bids_map.yaml").write_text(yaml.safe_dump(doc["bids_map"]))
    (place / "deid.yaml").write_text(yaml.safe_dump(doc["deid"]))
    config = dict(doc["config"])
    config.update(
        inbox=str(settings.inbox),
        output=str(place / "output"),
        work=None,
        key_file=str(settings.key_file),
        archive=str(place / "archive"),
        bids_map=str(place / "bids_map.yaml"),
        deid=str(place / "deid.yaml"),
    )
    (place / "config.yaml").write_text(yaml.safe_dump(config))
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO_ROOT / "Snakefile"),
        "--cores",
        str(cores),
        "--configfile",
        str(place / "config.yaml"),
    ]
    with (place / "workflow.log").open("w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise PasserelleError(
            f"rerun of {tag}: the workflow failed (exit {proc.returncode}); "
            f"log: {place / 'workflow.log'}"
        )
    fresh = place / "archive"
    return compare(tree(archive, tag), tree(fresh, "HEAD")), fresh
