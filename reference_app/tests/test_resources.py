"""Resource manager: temp files, weak references, callbacks, context manager, exit."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from reference_app.resources import ResourceManager


def test_cleanup_deletes_temp_files_and_runs_callbacks(tmp_path: Path) -> None:
    calls: list[str] = []
    a = tmp_path / "a.wav"
    b = tmp_path / "b.wav"
    a.write_bytes(b"x")
    b.write_bytes(b"y")
    with ResourceManager() as resources:
        resources.add_temp_file(a)
        resources.add_temp_file(b)
        resources.release_temp_file(b)  # handed over: must survive
        handle = resources.add_cleanup_callback(lambda: calls.append("cb"), "cb")
        resources.add_cleanup_callback(lambda: 1 / 0, "boom")  # logged, does not stop others
        resources.add_temp_file(tmp_path / "never-created.wav")
        assert resources.info().temp_files == 2
    assert not a.exists() and b.exists()
    assert calls == ["cb"]
    assert handle.name == "cb"
    assert resources.info().files_deleted == 1


def test_callbacks_removed_by_handle(tmp_path: Path) -> None:
    calls: list[int] = []
    resources = ResourceManager()
    h = resources.add_cleanup_callback(lambda: calls.append(1))
    assert resources.remove_cleanup_callback(h) is True
    assert resources.remove_cleanup_callback(h) is False
    resources.cleanup()
    assert calls == []
    resources.close()


def test_weak_references_do_not_keep_objects_alive() -> None:
    class Thing:
        pass

    resources = ResourceManager()
    thing = Thing()
    ref = resources.track(thing)
    assert resources.info().alive_objects == 1
    del thing
    gc.collect()
    assert ref() is None
    resources.cleanup()
    assert resources.info().tracked_objects == 0
    resources.close()


def test_delete_now(tmp_path: Path) -> None:
    f = tmp_path / "t.wav"
    f.write_bytes(b"")
    resources = ResourceManager()
    resources.add_temp_file(f)
    assert resources.delete_temp_file(f) is True
    assert resources.delete_temp_file(f) is False
    resources.close()


def test_cleans_up_at_interpreter_exit(tmp_path: Path) -> None:
    leftover = tmp_path / "left.wav"
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from reference_app.resources import ResourceManager
        p = Path({str(leftover)!r}); p.write_bytes(b"x")
        manager = ResourceManager()
        manager.add_temp_file(p)
        manager.add_cleanup_callback(lambda: print("callback at exit"))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "callback at exit"
    assert not leftover.exists()


@pytest.mark.no_leaks(warmup=1, runs=4)
def test_managers_are_not_kept_alive_by_the_exit_hook() -> None:
    import weakref

    manager = ResourceManager()
    manager.add_cleanup_callback(lambda: None)
    ref = weakref.ref(manager)
    del manager
    gc.collect()
    assert ref() is None
