"""Benchmark options. `pytest bench/` measures; `--smoke` shrinks every benchmark to a quick
run that only proves it still works (what CI runs, with --benchmark-disable)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser):
    parser.addoption("--smoke", action="store_true", help="tiny sizes: check the benchmarks run, measure nothing")


@pytest.fixture(scope="session")
def smoke(request) -> bool:
    return request.config.getoption("--smoke")
