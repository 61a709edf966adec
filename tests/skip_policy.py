"""Under CI (`CI=true`, which `.ci/run` sets), a skipped test fails.

A skip is a claim nobody checked (a missing tool, a server that did not answer), and CI
must not pass over it. A test that may rightly skip says so with
`@pytest.mark.expected_skip(reason=...)`. Hooks loaded by `tests/conftest.py`.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

STRICT_ENV = "CI"


def strict() -> bool:
    return os.environ.get(STRICT_ENV, "").lower() in ("1", "true", "yes")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "expected_skip(reason): this test may skip, even under CI=true"
    )


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    reason = str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def _unexpected(report: pytest.TestReport | pytest.CollectReport) -> None:
    report.longrepr = (
        f"skipped under CI=true: {_reason(report)}\n"
        "Provide what the test needs (a dependency of the project) or drop the claim; "
        "a skip CI should accept is marked @pytest.mark.expected_skip(reason=...)."
    )
    report.outcome = "failed"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if (
        strict()
        and report.skipped
        and not hasattr(report, "wasxfail")  # an xfail is an expectation already
        and item.get_closest_marker("expected_skip") is None
    ):
        _unexpected(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """A whole module skipped at import (`pytest.importorskip`, module-level skip)."""
    report = yield
    if strict() and report.skipped:
        _unexpected(report)
    return report
