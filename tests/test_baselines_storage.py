"""Saved runs: machine id, storage creation, numbering, lookup, corrupt files, history."""

from __future__ import annotations

import os
import platform
import re
import threading
from pathlib import Path

import pytest
from _reports_sample import MiB, sample_doc, small_doc

from pytest_memwatch.reports import baselines
from pytest_memwatch.reports.baselines import (
    BaselineError,
    ensure_storage,
    find_run,
    list_runs,
    load_history,
    machine_id,
    resolve_storage,
    save_run,
)
from pytest_memwatch.reports.results_file import load_results

M = "Linux-CPython-3.11-64bit"


def test_machine_id_is_like_pytest_benchmarks() -> None:
    mid = machine_id()
    assert re.fullmatch(r"[A-Za-z]+-[A-Za-z]+-\d+\.\d+-\d+bit", mid), mid
    assert mid.startswith(f"{platform.system()}-{platform.python_implementation()}-")


def test_resolve_storage(tmp_path: Path) -> None:
    assert resolve_storage(".memwatch", tmp_path) == tmp_path / ".memwatch"
    assert resolve_storage(tmp_path / "abs", "/elsewhere") == tmp_path / "abs"


def test_ensure_storage_creates_gitignore_and_cachedir_tag(tmp_path: Path) -> None:
    storage = tmp_path / "sub" / ".memwatch"
    ensure_storage(storage)
    assert (storage / ".gitignore").read_text().splitlines()[-1] == "*"
    tag = (storage / "CACHEDIR.TAG").read_bytes()
    assert tag.startswith(b"Signature: 8a477f597d28d172789f06886806bc55")
    assert sorted(os.listdir(storage.parent)) == [".memwatch"]  # no temporary left
    ensure_storage(storage)  # idempotent


def test_ensure_storage_tolerates_losing_the_race(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    storage = tmp_path / ".memwatch"
    real_rename = Path.rename

    def rename_after_someone_else(self: Path, target: Path) -> Path:
        # Another process finishes first, between our is_dir() check and our rename.
        os.mkdir(target)
        (Path(target) / "x").write_text("theirs")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename_after_someone_else)
    ensure_storage(storage)
    assert os.listdir(storage) == ["x"]
    assert os.listdir(tmp_path) == [".memwatch"]


def test_save_numbers_runs_per_machine(tmp_path: Path) -> None:
    storage = tmp_path / ".memwatch"
    doc = sample_doc()
    p1 = save_run(doc, storage, "main", M)
    p2 = save_run(doc, storage, "feature-x", M)
    p3 = save_run(doc, storage, "main", "Darwin-CPython-3.12-64bit")
    assert p1 == storage / M / "0001_main.json"
    assert p2 == storage / M / "0002_feature-x.json"
    assert p3 == storage / "Darwin-CPython-3.12-64bit" / "0001_main.json"
    assert load_results(p1) == doc
    assert sorted(os.listdir(storage / M)) == ["0001_main.json", "0002_feature-x.json"]


def test_save_skips_numbers_taken_even_by_corrupt_files(tmp_path: Path) -> None:
    storage = tmp_path / ".memwatch"
    (storage / M).mkdir(parents=True)
    (storage / M / "0004_broken.json").write_text("{garbage")
    path = save_run(sample_doc(), storage, "main", M)
    assert path.name == "0005_main.json"
    assert (storage / M / "0004_broken.json").read_text() == "{garbage"


def test_save_never_overwrites_when_a_number_is_taken_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = tmp_path / ".memwatch"
    save_run(sample_doc(), storage, "main", M)
    real_link = os.link

    def link_racing(src: str, dst: str) -> None:
        if Path(dst).name == "0002_main.json" and not Path(dst).exists():
            Path(dst).write_text("other process")  # somebody took 0002 first
        real_link(src, dst)

    monkeypatch.setattr(baselines.os, "link", link_racing)
    path = save_run(sample_doc(), storage, "main", M)
    assert path.name == "0003_main.json"
    assert (storage / M / "0002_main.json").read_text() == "other process"


def test_save_without_hard_links_falls_back_to_rename(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(src: str, dst: str) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(baselines.os, "link", no_links)
    path = save_run(sample_doc(), tmp_path / "s", "main", M)
    assert path.name == "0001_main.json"
    assert os.listdir(path.parent) == ["0001_main.json"]


def test_save_io_error_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = tmp_path / ".memwatch"
    ensure_storage(storage)

    def disk_full(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(baselines.os, "link", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_run(sample_doc(), storage, "main", M)
    assert os.listdir(storage / M) == []


@pytest.mark.parametrize("name", ["", "a/b", "a:b", ".hidden"])
def test_save_refuses_bad_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="bad name for a saved run"):
        save_run(sample_doc(), tmp_path, name, M)


def test_save_is_safe_from_threads(tmp_path: Path) -> None:
    storage = tmp_path / ".memwatch"
    doc = small_doc(("t.py::a", 1, 1))
    paths: list[Path] = []
    threads = [threading.Thread(target=lambda: paths.append(save_run(doc, storage, "ci", M)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths)) == 8
    assert sorted(p.name for p in paths) == [f"{n:04d}_ci.json" for n in range(1, 9)]


def _storage_with_runs(tmp_path: Path) -> Path:
    storage = tmp_path / ".memwatch"
    for name in ("main", "feature", "main"):
        save_run(small_doc(("t.py::a", MiB, MiB)), storage, name, M)
    (storage / M / "notes.txt").write_text("ignored")
    (storage / M / "12_short.json").write_text("{}")  # not NNNN_: ignored
    return storage


def test_list_runs_ignores_other_files(tmp_path: Path) -> None:
    storage = _storage_with_runs(tmp_path)
    assert [r.label for r in list_runs(storage)] == ["0001_main", "0002_feature", "0003_main"]
    assert list_runs(tmp_path / "missing") == []


@pytest.mark.parametrize(
    ("query", "label"),
    [("", "0003_main"), ("main", "0003_main"), ("feature", "0002_feature"),
     ("0001", "0001_main"), ("1", "0001_main"), ("0002_feature", "0002_feature"),
     ("nope", None), ("0009", None)],
)
def test_find_run(tmp_path: Path, query: str, label: str | None) -> None:
    storage = _storage_with_runs(tmp_path)
    found = find_run(storage, query, M)
    assert (found.label if found else None) == label


def test_find_run_falls_back_to_other_machines(tmp_path: Path) -> None:
    storage = _storage_with_runs(tmp_path)
    found = find_run(storage, "", "Windows-CPython-3.11-64bit")
    assert found is not None and found.machine == M and found.label == "0003_main"
    assert find_run(tmp_path / "empty", "", M) is None


def test_corrupt_saved_run_is_reported_and_left_untouched(tmp_path: Path) -> None:
    storage = _storage_with_runs(tmp_path)
    bad = storage / M / "0004_main.json"
    bad.write_text('{"schema_version": 1, "tool": "pytest-memwatch", "run": ')
    run = find_run(storage, "", M)
    assert run is not None and run.path == bad
    with pytest.raises(BaselineError) as info:
        run.load()
    assert str(info.value) == (
        f"saved run {bad}: not valid JSON (the file ends early: truncated?): Expecting value: "
        "line 1 column 57 (char 56); it was left untouched"
    )
    assert bad.read_text().endswith('"run": ')


def test_load_history_groups_by_machine_and_reports_bad_files(tmp_path: Path) -> None:
    storage = _storage_with_runs(tmp_path)
    save_run(small_doc(("t.py::a", MiB, MiB)), storage, "main", "Darwin-CPython-3.12-64bit")
    (storage / M / "0009_bad.json").write_text("[]")
    grouped, problems = load_history(storage)
    assert list(grouped) == ["Darwin-CPython-3.12-64bit", M]
    assert [r.label for r, _ in grouped[M]] == ["0001_main", "0002_feature", "0003_main"]
    assert problems == [
        f"saved run {storage / M / '0009_bad.json'}: not a pytest-memwatch results document "
        "(the top level is an array, not an object); it was left untouched"
    ]
    # One machine's directory works too.
    grouped, _ = load_history(storage / M)
    assert list(grouped) == [M]
