"""Per-step cluster resources: configured amounts first, more memory and time per retry."""

from __future__ import annotations

from passerelle.resources import keyed_resources, step_resources


def test_memory_and_time_grow_with_each_attempt_threads_and_gpu_do_not() -> None:
    res = step_resources({"threads": 4, "mem_mb": 2000, "runtime": 30, "gpu": 1, "compress": True})
    assert set(res) == {"mem_mb", "runtime", "gpu"}
    assert [res["mem_mb"](None, attempt) for attempt in (1, 2, 3)] == [2000, 4000, 6000]
    assert [res["runtime"](None, attempt) for attempt in (1, 2)] == [30, 60]
    assert res["gpu"] == 1


def test_a_step_without_gpu_asks_for_none() -> None:
    assert "gpu" not in step_resources({"mem_mb": 500, "runtime": 5, "gpu": 0})


def test_each_model_gets_its_own_amounts_growing_with_attempts() -> None:
    class Wildcards:
        model = "synthseg"

    sections = {"synthseg": {"mem_mb": 16000, "gpu": 1}, "other": {"mem_mb": 100}}
    res = keyed_resources(sections, "model", {"mem_mb": 4000, "runtime": 30, "gpu": 0})
    assert [res["mem_mb"](Wildcards, a) for a in (1, 2)] == [16000, 32000]
    assert res["runtime"](Wildcards, 2) == 60  # the default, scaled
    assert [res["gpu"](Wildcards, a) for a in (1, 3)] == [1, 1]
