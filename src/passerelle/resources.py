"""Cluster resources of the heavy per-session steps, read from the step's config section.

Every heavy rule takes threads, mem_mb and runtime (minutes) from ``config[step]``, and gpu
when the section names one. Memory and time grow with each retry (``attempt``), so a job
that Slurm or a Dask worker killed for exceeding them comes back with more; a run without
retries (the local default) always asks for the configured amounts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["keyed_resources", "step_resources"]

# Resources that grow with the attempt number; the others are asked for as configured.
SCALED = ("mem_mb", "runtime")
FIXED = ("gpu",)


def _scaled(base: int) -> Callable[[Any, int], int]:
    def amount(wildcards: Any, attempt: int) -> int:  # Snakemake passes these by name
        return base * attempt

    return amount


def step_resources(section: Mapping[str, Any]) -> dict[str, Any]:
    """The ``resources:`` of a rule whose step is configured by ``section``."""
    out: dict[str, Any] = {k: _scaled(int(section[k])) for k in SCALED if k in section}
    out.update({k: int(section[k]) for k in FIXED if section.get(k)})
    return out


def keyed_resources(
    sections: Mapping[str, Mapping[str, Any]], wildcard: str, defaults: Mapping[str, int]
) -> dict[str, Any]:
    """The ``resources:`` of a rule whose section a wildcard picks (one per outside model)."""

    def amount(key: str) -> Callable[[Any, int], int]:
        def pick(wildcards: Any, attempt: int) -> int:  # Snakemake passes these by name
            value = int(sections[getattr(wildcards, wildcard)].get(key, defaults[key]))
            return value * attempt if key in SCALED else value

        return pick

    return {key: amount(key) for key in defaults}
