"""docs/reference.md documents every option, ini key, environment variable,
marker and fixture, and the README links every page of docs/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_memwatch.markers import SCHEMAS
from pytest_memwatch.settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = (ROOT / "docs" / "reference.md").read_text()


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.option)
def test_every_option_has_its_ini_key_and_variable_in_the_reference(setting):
    row = next((line for line in REFERENCE.splitlines() if f"`{setting.option}" in line), None)
    assert row is not None, f"{setting.option} is not in docs/reference.md"
    assert f"`{setting.ini_key}`" in row
    if setting.env:
        assert f"`{setting.env}`" in row


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_marker_has_a_section_with_its_signature(name):
    assert f"### `{SCHEMAS[name].signature()}`" in REFERENCE


def test_fixture_members_are_documented():
    from pytest_memwatch.fixture import MemwatchHandle

    public = [m for m in vars(MemwatchHandle) if not m.startswith("_") and m != "finish"]
    for member in public:
        assert f"`{member}" in REFERENCE, member


def test_readme_links_every_docs_page():
    readme = (ROOT / "README.md").read_text()
    linked = set(re.findall(r"\(docs/([\w.-]+\.md)", readme))
    pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert pages <= linked, f"not linked from README: {sorted(pages - linked)}"
