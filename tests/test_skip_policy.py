"""Under CI=true a skipped test fails unless marked `expected_skip` (tests/skip_policy.py),
checked on a small suite run by a real pytest in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from testbed import ROOT

SUITE = {
    "test_a.py": """
import pytest

def test_passes():
    pass

def test_skips():
    pytest.skip("no such tool")

@pytest.mark.expected_skip(reason="optional by design")
def test_skips_as_expected():
    pytest.skip("optional")

@pytest.mark.xfail(reason="known", strict=True)
def test_known_failure():
    assert False
""",
    "test_b.py": """
import pytest

pytest.importorskip("no_such_module_anywhere")
""",
}


def _run(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    for name, body in SUITE.items():
        (tmp_path / name).write_text(body)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    # Only our plugin: the venv's other pytest plugins cost seconds to load.
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.skip_policy", "-p", "no:cacheprovider",
         "-q", "-rfEs", "--continue-on-collection-errors",
         "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_unexpected_skips_fail_under_ci(tmp_path: Path) -> None:
    run = _run(tmp_path, "true")
    assert run.returncode == 1, run.stdout + run.stderr
    summary = run.stdout.strip().splitlines()[-1]
    # test_skips fails, test_b.py fails to collect; the marked skip and the xfail stand.
    assert "1 failed, 1 passed, 1 skipped, 1 xfailed, 1 error" in summary, run.stdout
    assert "skipped under CI=true: no such tool" in run.stdout
    assert "skipped under CI=true: could not import 'no_such_module_anywhere'" in run.stdout


def test_skips_stay_skips_outside_ci(tmp_path: Path) -> None:
    run = _run(tmp_path, None)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed, 3 skipped, 1 xfailed" in run.stdout.strip().splitlines()[-1], run.stdout
