"""Where things live in the archive, and how its datasets are created."""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path

from passerelle.archive.tools import datalad_api, git
from passerelle.fsutil import sha256_file, write_text

# Archive-own records, in git: versions, ledger, contributions register, configurations.
META = ".passerelle"
LEDGER = f"{META}/ledger.tsv"
REGISTER = f"{META}/contributions.jsonl"
VERSIONS = f"{META}/versions"
CONFIGS = f"{META}/config"
CHANGES = "CHANGES"
DERIVATIVES = "derivatives"
SOURCEDATA = "sourcedata/dicom"
# Small text stays in git; imaging and anything large is annexed. SHA256E keys carry the
# sha256 of the content, so the checksums taken while staging are checked against them.
_TEXT = (
    "*.json",
    "*.jsonl",
    "*.tsv",
    "*.txt",
    "*.md",
    "*.bval",
    "*.bvec",
    "*.html",
    "*.yaml",
    "README*",
    "CHANGES*",
    "LICENSE*",
    ".bidsignore",
)
# .gitattributes values cannot hold spaces: the expression is built from parentheses only.
LARGEFILES = "(largerthan=2mb)or(not(" + "or".join(f"(include={g})" for g in _TEXT) + "))"
GITATTRIBUTES = (
    "* annex.backend=SHA256E\n"
    f"* annex.largefiles={LARGEFILES}\n"
    "**/.git* annex.largefiles=nothing\n"
    f"{META}/** annex.largefiles=nothing\n"
)
_KEY = re.compile(r"^SHA256E?-s(\d+)--([0-9a-f]{64})")


def control_dir(archive: Path) -> Path:
    """Private scratch of the archive (staging, transaction journal): inside .git, so it is
    on the same file system as the work tree, never versioned, and never published."""
    return archive / ".git" / "passerelle"


def lock_path(archive: Path) -> Path:
    # Beside the archive, so it exists before the archive does.
    return archive.with_name(f".{archive.name}.lock")


def is_archive(archive: Path) -> bool:
    return (archive / ".datalad" / "config").is_file() and (archive / ".git").is_dir()


def derivative_names(root: Path) -> list[str]:
    folder = root / DERIVATIVES
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def subdatasets(archive: Path) -> list[str]:
    """Relative paths of the derivatives subdatasets present in the work tree."""
    return [
        f"{DERIVATIVES}/{n}"
        for n in derivative_names(archive)
        if (archive / DERIVATIVES / n / ".git").exists()
    ]


def annex_key_sha256(path: Path) -> str | None:
    """sha256 recorded in an annexed file's key (a symlink into .git/annex), else None."""
    if not path.is_symlink():
        return None
    m = _KEY.match(os.path.basename(os.readlink(path)))
    return m.group(2) if m else None


def content_sha256(path: Path) -> str:
    """sha256 of a work-tree file: from its annex key when annexed (content may be dropped)."""
    return annex_key_sha256(path) or sha256_file(path)


def _init_dataset(path: Path, description: str) -> None:
    dl = datalad_api()
    # The annex description is stored in the dataset: give it the site name, never the
    # default user@host:path.
    dl.create(path=str(path), description=description, result_renderer="disabled")
    write_text(path / ".gitattributes", GITATTRIBUTES)


def create_archive(archive: Path, description: str) -> None:
    """Create the top dataset in a sibling folder, then rename it into place (atomic)."""
    tmp = archive.with_name(f".{archive.name}.creating")
    remove_tree(tmp)
    archive.parent.mkdir(parents=True, exist_ok=True)
    _init_dataset(tmp, description)
    git(tmp, "add", ".gitattributes")
    git(tmp, "commit", "-q", "-m", "passerelle: archive layout (annex rules)")
    os.replace(tmp, archive)


def create_subdataset(archive: Path, rel: str, description: str) -> None:
    """A new derivatives subdataset, left unregistered: the version's one save registers it."""
    path = archive / rel
    _init_dataset(path, description)
    git(path, "add", ".gitattributes")
    git(path, "commit", "-q", "-m", "passerelle: derivatives layout (annex rules)")


def remove_tree(path: Path) -> None:
    """rmtree that also removes git-annex's write-protected object folders."""
    if path.is_symlink() or path.is_file():
        path.unlink()
        return
    if not path.exists():
        return
    for folder, dirs, _files in os.walk(path):
        for d in dirs:
            p = os.path.join(folder, d)
            if not os.path.islink(p):
                os.chmod(p, os.stat(p).st_mode | stat.S_IWUSR | stat.S_IXUSR)
    shutil.rmtree(path)
