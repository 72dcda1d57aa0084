"""Optional-value options next to test paths: the pure rewrite of the command line."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from pytest_memwatch.config.cmdline import OptionalValue, looks_like_test_path, rescue_test_paths


def is_repeat(token: str) -> bool:
    parts = token.split(":")
    return len(parts) == 2 and all(p.isdigit() for p in parts)


REPEAT = OptionalValue("--memwatch-repeat", is_repeat)


def test_a_path_after_the_option_becomes_a_path(tmp_path: Path) -> None:
    args = ["--memwatch-repeat", "tests/test_unit.py", "-q"]
    assert rescue_test_paths(args, [REPEAT], str(tmp_path)) == ["tests/test_unit.py"]
    assert args == ["--memwatch-repeat=", "tests/test_unit.py", "-q"]


def test_a_value_after_the_option_stays_its_value(tmp_path: Path) -> None:
    args = ["--memwatch-repeat", "2:5", "tests/test_unit.py"]
    assert rescue_test_paths(args, [REPEAT], str(tmp_path)) == []
    assert args == ["--memwatch-repeat", "2:5", "tests/test_unit.py"]


def test_the_equals_form_and_everything_after_double_dash_are_left_alone(tmp_path: Path) -> None:
    args = ["--memwatch-repeat=x.py", "--", "--memwatch-repeat", "y.py"]
    assert rescue_test_paths(args, [REPEAT], str(tmp_path)) == []
    assert args == ["--memwatch-repeat=x.py", "--", "--memwatch-repeat", "y.py"]


def test_an_existing_directory_is_a_path_and_a_plain_word_is_not(tmp_path: Path) -> None:
    (tmp_path / "suite").mkdir()
    assert looks_like_test_path("suite", str(tmp_path))
    assert looks_like_test_path("test_x.py::TestA::test_b", str(tmp_path))
    assert not looks_like_test_path("lots", str(tmp_path))
    assert not looks_like_test_path("-q", str(tmp_path))
    assert not looks_like_test_path("a\0b", str(tmp_path))


TOKENS = st.one_of(
    st.sampled_from(["--memwatch-repeat", "--", "-q", "2:5", "x.py", "a::b", "word", ""]),
    st.text(max_size=12),
)


@given(st.lists(TOKENS, max_size=8))
def test_the_rewrite_only_ever_adds_an_equals_sign(args: list[str]) -> None:
    before = list(args)
    moved = rescue_test_paths(args, [REPEAT], "/nonexistent-dir-for-memwatch-tests")
    assert len(args) == len(before)
    changed = [(a, b) for a, b in zip(before, args, strict=True) if a != b]
    assert all(b == a + "=" and a == "--memwatch-repeat" for a, b in changed)
    # Each rewritten option is followed by the path it no longer takes.
    assert len(changed) == len(moved)
    for path in moved:
        assert path in args
        assert not is_repeat(path)
