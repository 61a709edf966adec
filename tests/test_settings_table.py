"""The README's configuration table is the one generated from the Settings class."""

from __future__ import annotations

from deploy.settings_table import BEGIN, END, render
from tests.harness import ROOT


def test_readme_settings_table_is_generated_from_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    start, end = readme.index(BEGIN), readme.index(END) + len(END)
    assert readme[start:end] == render(), "run `python -m deploy.settings_table` into README"


def test_every_setting_is_in_the_table() -> None:
    table = render()
    for name in ("REDIS_URL", "V1_SESSION_SECRET", "V1_PROBE_INTERVAL", "LEASE_SECONDS"):
        assert f"| `{name}` |" in table
