"""How workflow jobs find Passerelle: the same code, whether run locally, on a cluster or in
a conda environment created by Snakemake."""

from __future__ import annotations

import os
import sys
from pathlib import Path

SRC_DIR = Path(__file__).resolve().parents[1]


def prepare_job_environment() -> None:
    """Jobs run `python -m passerelle`: put this interpreter first on PATH and this source tree
    on PYTHONPATH, so a job environment without the package installed still runs this code."""
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    paths = [str(SRC_DIR), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
