"""docs/reference.md documents every option, ini key, environment variable,
marker and fixture, and the README links every page of docs/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_memwatch.config.markers import SCHEMAS
from pytest_memwatch.config.settings import SETTINGS

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


GUIDE = ROOT / "docs" / "guide.md"


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize("page", ["README.md", "docs/guide.md"])
def test_the_pages_a_new_user_reads_hold_only_valid_python(page):
    for block in _python_blocks(ROOT / page):
        compile(block, page, "exec")


def _guide_block(needle: str) -> str:
    found = [b for b in _python_blocks(GUIDE) if needle in b]
    assert len(found) == 1, f"docs/guide.md: expected one python example with {needle!r}"
    return found[0]


def test_the_guides_leak_example_is_caught_and_explained(runner):
    # The guide shows this file's output under --memwatch and --memwatch-repeat:
    # the leak must be caught, and the holder the guide points at must be named.
    runner.pytester.makepyfile(test_app=_guide_block("_seen = []"))
    plain = runner.sub("--memwatch", "-p", "no:cacheprovider")
    plain.assert_outcomes(passed=2)
    assert any("test_app.py::test_remember" in line for line in runner.section(plain))
    repeated = runner.sub("--memwatch-repeat", "-p", "no:cacheprovider")
    repeated.assert_outcomes(failed=1, passed=1)
    repeated.stdout.fnmatch_lines(["FAILED (memwatch) test_app.py::test_remember*"])
    section = runner.report_section(repeated, "test_remember", "memwatch attribution")
    attribution = "\n".join(section)
    assert "test_app.py:10:" in attribution
    assert "['_seen']" in attribution


def test_the_guides_marker_and_fixture_examples_pass(runner):
    runner.pytester.makepyfile(
        test_markers=_guide_block("@pytest.mark.no_leaks(warmup=2, runs=5)"),
        test_fixture=_guide_block("def test_decoder_reuse(memwatch):"),
    )
    result = runner.sub("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)


def test_the_guides_soak_example_is_skipped_unless_asked_for_and_runs_when_asked(runner):
    runner.pytester.makepyfile(test_soak=_guide_block("@pytest.mark.soak("))
    runner.sub("-p", "no:cacheprovider").assert_outcomes(skipped=1)
    capped = runner.sub("-p", "no:cacheprovider", "--memwatch-soak", "--memwatch-soak-duration=2s")
    # It ran as a soak: sampled from its start and judged. Over two seconds a
    # 1 MiB/h limit is half a kilobyte, below what the C heap moves by on a
    # loaded machine, so the verdict itself may go either way here.
    capped.stdout.fnmatch_lines(["memwatch soak test_soak.py::test_pipeline: 0.0s of 2.0s *"])
    outcomes = capped.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 1, outcomes
    if outcomes.get("failed"):
        capped.stdout.fnmatch_lines(["memwatch soak: * over the limit of +1.0 MiB/h"])


def _slug(heading: str) -> str:
    # GitHub's anchor for a heading: lower case, punctuation other than - and _ dropped,
    # spaces made hyphens; a repeated heading gets -1, -2, ...
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        heading = None if fenced else re.match(r"^#{1,6} (.*)", line)
        if heading:
            slug = _slug(heading.group(1))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            found.add(slug if n == 0 else f"{slug}-{n}")
    return found


@pytest.mark.parametrize(
    "page", ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]
)
def test_links_between_pages_reach_a_page_and_heading(page):
    source = ROOT / page
    broken = []
    for target, anchor in re.findall(r"\]\(([\w./-]*\.md|)(?:#([\w-]+))?\)", source.read_text()):
        path = (source.parent / target) if target else source
        if not path.exists():
            broken.append(f"{target}: no such page")
        elif anchor and anchor not in _anchors(path):
            broken.append(f"{target}#{anchor}: no such heading")
    assert not broken, f"{page}: {broken}"


# -- docs a user reads in ten minutes ---------------------------------------------

# The pages about the bundled reference application document the system under test,
# not the plugin; they are not part of the user's reading.
REFERENCE_APP_PAGES = {"reference-app.md", "reference-app-storage.md", "faults.md"}
WORDS_PER_MINUTE = 250


def _words(text: str) -> int:
    # As `wc -w` counts: whitespace-separated, code blocks included.
    return len(text.split())


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:] if end == -1 else text[start:end]


def _user_pages() -> list[Path]:
    docs = sorted(p for p in (ROOT / "docs").glob("*.md") if p.name not in REFERENCE_APP_PAGES)
    return [ROOT / "README.md", *docs]


def test_the_ten_minute_path_reads_in_ten_minutes():
    readme = _section((ROOT / "README.md").read_text(), "## Use it in your project")
    words = _words(readme) + _words(GUIDE.read_text())
    assert words <= 10 * WORDS_PER_MINUTE, (
        f"README's 'Use it in your project' and docs/guide.md hold {words} words, "
        f"more than ten minutes' reading ({10 * WORDS_PER_MINUTE})"
    )


def test_the_docs_stay_short():
    counts = {p.name: _words(p.read_text()) for p in _user_pages()}
    assert sum(counts.values()) <= 13_000, f"{sum(counts.values())} words: {counts}"


# Words that belong to how the project is worked on, not to its users. An option's
# name in a command (a benchmark's `--seeds`) is a name, not prose, and is not matched.
JARGON = ["seed", "seeds", "issue #", "wave", "waves", "helper", "helpers", "agent", "agents",
          "session's target", "the issue's", "previously"]


@pytest.mark.parametrize("page", _user_pages(), ids=lambda p: p.name)
def test_no_internal_jargon(page):
    text = page.read_text()
    found = [
        word for word in JARGON
        if re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text, flags=re.I)
    ]
    assert not found, f"{page.name}: internal jargon {found}"
