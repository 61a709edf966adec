"""The README's configuration table, generated from `taskrecord.settings.Settings`.

`python -m deploy.settings_table` prints it; `tests/test_settings_table.py` fails when the
README's copy differs, so every variable is documented once, in the code.
"""

from __future__ import annotations

from pydantic import SecretStr

from taskrecord.settings import Settings

BEGIN = "<!-- settings-table:begin (generated: python -m deploy.settings_table) -->"
END = "<!-- settings-table:end -->"


def _default(name: str) -> str:
    field = Settings.model_fields[name]
    if isinstance(field.default, SecretStr):
        return "(development value)"
    value = field.get_default(call_default_factory=True)
    if value is None or value == [] or value == {}:
        return "unset" if value is None else "empty"
    if isinstance(value, dict):
        return "`" + ",".join(f"{k}:{v}" for k, v in value.items()) + "`"
    if isinstance(value, list):
        return "`" + ",".join(str(v) for v in value) + "`"
    return f"`{value}`"


def render() -> str:
    lines = [BEGIN, "| variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        description = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{name.upper()}` | {_default(name)} | {description} |")
    lines.append(END)
    return "\n".join(lines)


if __name__ == "__main__":
    print(render())
