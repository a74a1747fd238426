"""The documentation stays true to the code it describes."""

from __future__ import annotations

from pathlib import Path

from ptl.fields import fields_markdown
from ptl.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [env for env, _default, _doc in Settings.documented() if f"`{env}`" not in readme]
    assert missing == []


def test_field_reference_is_generated_from_the_code() -> None:
    assert fields_markdown() in (ROOT / "docs" / "FIELDS.md").read_text()


def test_quick_start_shows_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
