"""benchmarks/_table.py: the timing and table helpers the benchmark scripts share (no timing assertions:
only what the helpers compute and print)."""

from __future__ import annotations

import gc
import importlib.util
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "_table", Path(__file__).resolve().parent.parent / "benchmarks" / "_table.py")
assert _SPEC is not None and _SPEC.loader is not None
table = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(table)


def test_p50_p99_nearest_rank() -> None:
    assert table.p50_p99(list(range(100, 0, -1))) == (51, 100)  # sorted first
    assert table.p50_p99([7.0]) == (7.0, 7.0)
    assert table.p50_p99([1, 2, 3, 4]) == (3, 4)


def test_per_op_us_runs_every_call_with_gc_off_and_restores_it() -> None:
    seen = []
    median, best = table.per_op_us(lambda: seen.append(gc.isenabled()), n=7, rounds=3)
    assert len(seen) == 21 and not any(seen) and gc.isenabled()
    assert 0 < best <= median


def test_gc_is_back_on_when_the_timed_code_fails() -> None:
    def boom() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        table.seconds_per_call(boom, 3)
    assert gc.isenabled()


def test_print_table_aligns_columns(capsys: pytest.CaptureFixture[str]) -> None:
    table.print_table(("name", "us", "note"), [("seal", "93.3", "PASS"), ("open baseline", "7.1", "")],
                      right={1})
    assert capsys.readouterr().out.splitlines() == [
        "name             us  note",
        "-------------  ----  ----",
        "seal           93.3  PASS",
        "open baseline   7.1",
    ]
